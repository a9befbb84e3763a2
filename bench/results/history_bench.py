"""Time the results history on N synthesized records: ingest (JSONL through read_records into Parquet), the same
ingest again (idempotent: nothing added), Parquet size against JSONL size, the checksum, and the median-tokens/s
query, over the history and, for reference, with DuckDB over the raw JSONL. `--scale K` also times the query
over K copies of the rows (the issue's target: median tokens/s by machine x model x backend x threads over 10^7
records in <= 2 s) over a history of K segments that hold every column, the whole record included: the bare
median query, the store's summary(keys=...) by the same keys (which adds runs, records and dates), and
`bench db query`'s (8 keys).

`--store postgresql://...` does the same for the PostgreSQL history: `bench db push` of the embedded history
(timed, then again: nothing added), the checksums compared, the queries at N, and, with --scale, at K x N rows
(copied inside the server, then VACUUM ANALYZE as autovacuum would). The database must hold no history: the
bench writes into it and leaves its rows there.

    python -m tritbench.results.history_bench [-n 1000000] [--files 10] [--scale 10] [--store URL] [--dir DIR]
                                              [--json]

The records are compact (~26 fields, ~0.7 kB a line, as in the fleet notes' measurement); real records are
9-15 kB (per-repetition samples, machine state), which makes the JSONL and the ingest larger but not the query,
which reads only the flattened columns."""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tritbench.errors import BenchError
from tritbench.results.history import FORMAT, MANIFEST, NAMES, Filters, ParquetStore, ingest_paths
from tritbench.results.records import SCHEMA
from tritbench.results.upgrade import CURRENT

MACHINES = [(f"{i:016x}", cpu, arch) for i, (cpu, arch) in enumerate(
    [("AMD EPYC 7763", "x86_64"), ("Intel Xeon 8380", "x86_64"), ("Cortex-A76", "aarch64"),
     ("Apple M2", "arm64")] * 4, start=0x8dc7352ca6a20000)]
MODELS = ["tiny", "small", "bitnet-b1.58-2B-4T", "falcon3-1b", "llama3-8b-1.58", "trilm-3.9b"]
FORMATS = ["tq1_0", "tq2_0", "i2_s", "f16"]
BACKENDS = [("llamacpp", "0.3.36"), ("onnx", "1.32.0"), ("numpy", "2.4.6")]
THREADS = [1, 2, 4, 8]
WORKLOADS = [("pp512", "pp", 512, 0), ("tg128", "tg", 0, 128), ("pp64", "pp", 64, 0), ("tg32", "tg", 0, 32)]
CASES_PER_RUN = 48
TARGET_KEYS = ("machine_id", "model_name", "backend_name", "n_threads")  # the target query


def synth_record(i: int, rng: random.Random) -> dict:
    """Record `i`: one run per CASES_PER_RUN records, each run on one machine and backend."""
    run = i // CASES_PER_RUN
    r = random.Random(run)
    machine, (backend, version) = r.choice(MACHINES), r.choice(BACKENDS)
    model, fmt, threads = rng.choice(MODELS), rng.choice(FORMATS), rng.choice(THREADS)
    name, kind, n_prompt, n_gen = rng.choice(WORKLOADS)
    tps = rng.lognormvariate(4, 1)
    day, second = divmod(run * 97, 86400)
    return {
        "schema": SCHEMA, "run_id": f"2026{day % 365:03d}-{second:05d}-{run:08x}",
        "case_id": hashlib.sha1(f"{run}/{i}".encode()).hexdigest()[:16], "status": "ok", "error": None,
        "timestamp": f"2026-{1 + day % 12:02d}-{1 + day % 28:02d}T{second // 3600:02d}:{second // 60 % 60:02d}:"
                     f"{second % 60:02d}+00:00",
        "backend": {"name": backend, "version": version},
        "model": {"name": model, "format": fmt, "sha256": hashlib.sha256(f"{model}/{fmt}".encode()).hexdigest(),
                  "n_params": 1_967_360, "bits_per_weight": 2.0625},
        "workload": {"name": name, "kind": kind, "n_prompt": n_prompt, "n_gen": n_gen},
        "settings": {"n_threads": threads, "n_ctx": 512, "n_batch": 512, "repetitions": 6},
        "metrics": {"tokens_per_s": {"n": 6, "median": tps, "q1": tps * 0.98, "q3": tps * 1.02},
                    "ttft_ms": {"median": 1000 / tps}, "peak_rss_bytes": rng.randrange(1 << 26, 1 << 32)},
        "machine": {"id": machine[0], "cpu_model": machine[1], "arch": machine[2]},
        "state": {}, "warnings": [],
    }


def synthesize(folder: Path, n: int, files: int, seed: int = 0) -> list[Path]:
    """`n` records in `files` JSONL files (run-*.jsonl) under `folder`."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    per = -(-n // files)
    paths = []
    for f in range(files):
        path = folder / f"run-{f:04d}.jsonl"
        with open(path, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(synth_record(i, rng)) + "\n" for i in range(f * per, min(n, (f + 1) * per)))
        paths.append(path)
    return paths


def timed(fn: Callable[[], object], repeat: int = 1) -> tuple[float, object]:
    """(median seconds over `repeat` calls, the last result)."""
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _size(paths) -> int:
    return sum(Path(p).stat().st_size for p in paths)


class _Figures(dict):
    """The figures measured so far, each also printed to stderr as it comes: a run stopped early still tells."""

    def __setitem__(self, key: str, value: object) -> None:
        super().__setitem__(key, value)
        print(f"  {key} = {value}", file=sys.stderr, flush=True)


def scale_history(store: ParquetStore, folder: Path, scale: int) -> ParquetStore:
    """A history of `scale` copies of `store`'s rows, one segment each, run ids of copy k suffixed `.k`; every
    column kept, the record too (its JSON still names the original run: only the query columns matter here)."""
    import duckdb

    folder.mkdir(parents=True)
    files = [str(f) for f in sorted(store.folder.glob("seg-*.parquet"))]
    segments = []
    con = duckdb.connect()
    for k in range(scale):
        name = f"seg-{k + 1:06d}.parquet"
        run = "run_id" if k == 0 else f"run_id || '.{k}'"
        con.execute(f"""COPY (SELECT * REPLACE ({run} AS run_id) FROM read_parquet($f)
                              ORDER BY utc NULLS FIRST, run_id, case_id)
                        TO '{folder / name}' (FORMAT parquet, COMPRESSION zstd)""", {"f": files})
        segments.append(name)
    con.close()
    (folder / MANIFEST).write_text(json.dumps({"format": FORMAT, "record_schema": CURRENT, "next_segment": scale + 1,
                                               "segments": segments, "sources": []}))
    return ParquetStore(folder)


# The target query, as each store's engine runs it over the store's own tables (filtered as
# summary() filters: ok records with a tokens/s).
_TARGET = ("SELECT machine_id, model_name, backend_name, n_threads, {median} AS tokens_per_s FROM {rows} "
           "WHERE status = 'ok' AND tokens_per_s IS NOT NULL GROUP BY machine_id, model_name, backend_name, n_threads")


def parquet_target(store: ParquetStore) -> list[tuple]:
    """The target query with DuckDB over the history's segments (every column in them, the records too)."""
    import duckdb

    files = [str(f) for f in sorted(store.folder.glob("seg-*.parquet"))]
    with duckdb.connect() as con:
        return con.execute(_TARGET.format(median="median(tokens_per_s)", rows="read_parquet($f)"),
                           {"f": files}).fetchall()


def postgres_target(engine) -> list[tuple]:
    """The target query in PostgreSQL over tritbench_records (the index tritbench_records_tokens serves it)."""
    import sqlalchemy as sa

    with engine.connect() as conn:
        return conn.execute(sa.text(_TARGET.format(
            median="percentile_cont(0.5) WITHIN GROUP (ORDER BY tokens_per_s)", rows="tritbench_records"))).all()


def _vacuum(engine, tables: tuple[str, ...] = ("tritbench_records", "tritbench_record_json")) -> None:
    """VACUUM ANALYZE, as autovacuum would after a bulk load (statistics, and the visibility map that lets a
    query read an index alone)."""
    import sqlalchemy as sa

    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in tables:
            conn.execute(sa.text(f"VACUUM ANALYZE {table}"))


def scale_postgres(engine, scale: int) -> None:
    """`scale` - 1 more copies of the PostgreSQL history's rows (run ids suffixed .k), copied inside the server."""
    import sqlalchemy as sa

    for table, names in (("tritbench_records", [n for n in NAMES if n != "record"]),
                         ("tritbench_record_json", ["run_id", "case_id", "record"])):
        cols = ", ".join(f'"{n}"' for n in names)
        picked = ", ".join("run_id || '.' || k" if n == "run_id" else f'"{n}"' for n in names)
        with engine.begin() as conn:
            conn.execute(sa.text(f"INSERT INTO {table} ({cols}) SELECT {picked} FROM {table}, "
                                 f"generate_series(1, {scale - 1}) k"))
    _vacuum(engine)


def run_postgres(url: str, store: ParquetStore, scale: int, out: dict) -> None:
    """The PostgreSQL figures, into `out`."""
    import sqlalchemy as sa

    from tritbench.results.postgres import PostgresStore, push

    pg = PostgresStore(url)
    try:
        held = pg.info()["records"]
    except BenchError as exc:
        if "no results history" not in str(exc):
            raise
        held = 0
    if held:
        raise BenchError(f"{pg.location} holds a history of {held} records: the bench needs an empty database")
    out["pg_push_s"], counts = timed(lambda: push(store, pg))
    out["pg_push_added"] = counts.added
    out["pg_repush_s"], counts = timed(lambda: push(store, pg))
    out["pg_repush_added"] = counts.added
    out["pg_checksum_matches"] = pg.checksum() == out["checksum"]
    engine = sa.create_engine(pg.url, poolclass=sa.pool.NullPool)
    _vacuum(engine)
    out["pg_bytes"] = pg.info()["bytes"]
    out["pg_target_query_s"], _ = timed(lambda: postgres_target(engine), repeat=3)
    out["pg_store_target_s"], _ = timed(lambda: pg.summary(keys=TARGET_KEYS), repeat=3)
    out["pg_summary_query_s"], _ = timed(pg.summary, repeat=3)
    if scale > 1:
        out["pg_scaled_build_s"], _ = timed(lambda: scale_postgres(engine, scale))
        out["pg_scaled_records"] = pg.info()["records"]
        out["pg_scaled_bytes"] = pg.info()["bytes"]
        out["pg_scaled_target_query_s"], rows = timed(lambda: postgres_target(engine), repeat=3)
        out["pg_scaled_target_rows"] = len(rows)
        out["pg_scaled_store_target_s"], _ = timed(lambda: pg.summary(keys=TARGET_KEYS))
        out["pg_scaled_summary_s"], _ = timed(pg.summary)
    engine.dispose()


def run(n: int, files: int, scale: int, folder: Path, store_url: str | None = None) -> dict:
    import duckdb

    jsonl, db = folder / "jsonl", folder / "history"
    out = _Figures(records=n)
    out["synthesize_s"], paths = timed(lambda: synthesize(jsonl, n, files))
    out["jsonl_bytes"] = _size(paths)
    store = ParquetStore(db)

    def ingest():
        return ingest_paths(store, [jsonl], [])

    out["ingest_s"], counts = timed(ingest)
    out["ingest_added"] = counts.added
    out["reingest_s"], again = timed(ingest)
    out["reingest_added"] = again.added
    out["parquet_bytes"] = _size(sorted(db.glob("seg-*.parquet")))
    out["checksum_s"], out["checksum"] = timed(store.checksum)
    out["summary_query_s"], rows = timed(store.summary, repeat=3)
    out["summary_rows"] = len(rows)
    out["target_query_s"], _ = timed(lambda: parquet_target(store), repeat=3)
    out["store_target_s"], _ = timed(lambda: store.summary(keys=TARGET_KEYS), repeat=3)
    one = MACHINES[0][0]
    out["history_records_one_machine_s"], recs = timed(lambda: store.records(Filters(machine=[one])))
    out["history_records_one_machine"] = len(recs)
    jq = ("SELECT machine.id, model.name, backend.name, settings.n_threads, median(metrics.tokens_per_s.median) "
          "FROM read_json($f, format = 'newline_delimited') WHERE status = 'ok' GROUP BY ALL")
    with duckdb.connect() as con:
        out["target_query_jsonl_s"], _ = timed(lambda: con.execute(jq, {"f": [str(p) for p in paths]}).fetchall())
    if scale > 1:
        out["scaled_build_s"], big = timed(lambda: scale_history(store, folder / "scaled", scale))
        out["scaled_records"] = big.info()["records"]
        out["scaled_parquet_bytes"] = _size(sorted((folder / "scaled").glob("seg-*.parquet")))
        out["scaled_target_query_s"], rows = timed(lambda: parquet_target(big), repeat=3)
        out["scaled_target_rows"] = len(rows)
        out["scaled_store_target_s"], _ = timed(lambda: big.summary(keys=TARGET_KEYS))
        out["scaled_summary_s"], _ = timed(big.summary)
    if store_url:
        run_postgres(store_url, store, scale, out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--records", type=int, default=1_000_000)
    ap.add_argument("--files", type=int, default=10, help="JSONL files to spread the records over")
    ap.add_argument("--scale", type=int, default=10, help="also time the query over this many copies of the rows")
    ap.add_argument("--store", help="also time a PostgreSQL history: postgresql://... of an empty database")
    ap.add_argument("--dir", type=Path, help="work folder, kept (default: a temporary one, removed)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    if args.records < 1 or args.files < 1 or args.scale < 1:
        ap.error("-n, --files and --scale must be positive")
    folder = args.dir or Path(tempfile.mkdtemp(prefix="tritbench-history-bench-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the temporary folder is removed
    try:
        out = run(args.records, args.files, args.scale, folder, args.store)
    except BenchError as exc:
        print(f"history_bench: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if args.dir is None:
            shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    mib = 1 << 20
    print(f"records                      {out['records']:,}")
    print(f"JSONL                        {out['jsonl_bytes'] / mib:,.1f} MiB "
          f"(synthesized in {out['synthesize_s']:.1f} s)")
    print(f"ingest                       {out['ingest_s']:.1f} s ({out['ingest_added']:,} added)")
    print(f"ingest again                 {out['reingest_s']:.1f} s ({out['reingest_added']:,} added)")
    print(f"Parquet                      {out['parquet_bytes'] / mib:,.1f} MiB "
          f"({out['parquet_bytes'] / out['jsonl_bytes']:.1%} of the JSONL)")
    print(f"checksum                     {out['checksum_s']:.2f} s")
    print(f"median by machine x model x backend x threads: {out['target_query_s']:.3f} s over Parquet, "
          f"{out['target_query_jsonl_s']:.2f} s over the JSONL; with runs, records and dates (summary) "
          f"{out['store_target_s']:.3f} s")
    print(f"bench db query (8 keys)      {out['summary_query_s']:.3f} s, {out['summary_rows']:,} rows")
    print(f"history_records, 1 machine   {out['history_records_one_machine_s']:.2f} s, "
          f"{out['history_records_one_machine']:,} records")
    if "scaled_records" in out:
        print(f"over {out['scaled_records']:,} records: the median query {out['scaled_target_query_s']:.3f} s "
              f"({out['scaled_target_rows']:,} rows); with runs, records and dates {out['scaled_store_target_s']:.2f} "
              f"s; bench db query {out['scaled_summary_s']:.2f} s (Parquet {out['scaled_parquet_bytes'] / mib:,.1f} "
              f"MiB, built in {out['scaled_build_s']:.1f} s)")
    if "pg_push_s" in out:
        print(f"PostgreSQL: push {out['pg_push_s']:.1f} s ({out['pg_push_added']:,} added), again "
              f"{out['pg_repush_s']:.1f} s ({out['pg_repush_added']:,} added), checksum "
              f"{'matches' if out['pg_checksum_matches'] else 'DIFFERS'}, {out['pg_bytes'] / mib:,.0f} MiB")
        print(f"PostgreSQL: the median query {out['pg_target_query_s']:.3f} s; with runs, records and dates "
              f"{out['pg_store_target_s']:.3f} s; bench db query {out['pg_summary_query_s']:.3f} s")
    if "pg_scaled_records" in out:
        print(f"PostgreSQL over {out['pg_scaled_records']:,} records: the median query "
              f"{out['pg_scaled_target_query_s']:.3f} s ({out['pg_scaled_target_rows']:,} rows); with runs, records "
              f"and dates {out['pg_scaled_store_target_s']:.2f} s; bench db query {out['pg_scaled_summary_s']:.2f} s "
              f"({out['pg_scaled_bytes'] / mib:,.0f} MiB, copied in {out['pg_scaled_build_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
