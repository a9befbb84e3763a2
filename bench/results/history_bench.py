"""Time the results history on N synthesized records: ingest (JSONL through read_records into Parquet), the same
ingest again (idempotent: nothing added), Parquet size against JSONL size, the checksum, and the median-tokens/s
query, over the history and, for reference, with DuckDB over the raw JSONL. `--scale K` also times the query
over K copies of the rows (the issue's target: 10^7 records in <= 2 s).

    python -m tritbench.results.history_bench [-n 1000000] [--files 10] [--scale 10] [--dir DIR] [--json]

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

from tritbench.results.history import Filters, ParquetStore, ingest_paths
from tritbench.results.records import SCHEMA

MACHINES = [(f"{i:016x}", cpu, arch) for i, (cpu, arch) in enumerate(
    [("AMD EPYC 7763", "x86_64"), ("Intel Xeon 8380", "x86_64"), ("Cortex-A76", "aarch64"),
     ("Apple M2", "arm64")] * 4, start=0x8dc7352ca6a20000)]
MODELS = ["tiny", "small", "bitnet-b1.58-2B-4T", "falcon3-1b", "llama3-8b-1.58", "trilm-3.9b"]
FORMATS = ["tq1_0", "tq2_0", "i2_s", "f16"]
BACKENDS = [("llamacpp", "0.3.36"), ("onnx", "1.32.0"), ("numpy", "2.4.6")]
THREADS = [1, 2, 4, 8]
WORKLOADS = [("pp512", "pp", 512, 0), ("tg128", "tg", 0, 128), ("pp64", "pp", 64, 0), ("tg32", "tg", 0, 32)]
CASES_PER_RUN = 48


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


def run(n: int, files: int, scale: int, folder: Path) -> dict:
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
    segs = sorted(db.glob("seg-*.parquet"))
    out["parquet_bytes"] = _size(segs)
    out["checksum_s"], out["checksum"] = timed(store.checksum)
    out["summary_query_s"], rows = timed(store.summary, repeat=3)
    out["summary_rows"] = len(rows)
    query = ("SELECT machine_id, model_name, backend_name, n_threads, median(tokens_per_s) FROM read_parquet($f) "
             "WHERE status = 'ok' GROUP BY ALL")
    con = duckdb.connect()
    files_ = [str(s) for s in segs]
    out["target_query_s"], _ = timed(lambda: con.execute(query, {"f": files_}).fetchall(), repeat=3)
    one = MACHINES[0][0]
    out["history_records_one_machine_s"], recs = timed(lambda: store.records(Filters(machine=[one])))
    out["history_records_one_machine"] = len(recs)
    jq = ("SELECT machine.id, model.name, backend.name, settings.n_threads, median(metrics.tokens_per_s.median) "
          "FROM read_json($f, format = 'newline_delimited') WHERE status = 'ok' GROUP BY ALL")
    out["target_query_jsonl_s"], _ = timed(lambda: con.execute(jq, {"f": [str(p) for p in paths]}).fetchall())
    if scale > 1:
        big = folder / "scaled.parquet"
        t0 = time.perf_counter()
        con.execute(f"""COPY (SELECT * EXCLUDE (record) REPLACE (run_id || '.' || k AS run_id)
                              FROM read_parquet($f), range({int(scale)}) t(k))
                        TO '{big}' (FORMAT parquet, COMPRESSION zstd)""", {"f": files_})
        out["scaled_records"] = n * scale
        out["scaled_build_s"] = time.perf_counter() - t0
        out["scaled_parquet_bytes_without_record_column"] = big.stat().st_size
        out["scaled_target_query_s"], _ = timed(lambda: con.execute(query, {"f": [str(big)]}).fetchall(), repeat=3)
    con.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--records", type=int, default=1_000_000)
    ap.add_argument("--files", type=int, default=10, help="JSONL files to spread the records over")
    ap.add_argument("--scale", type=int, default=10, help="also time the query over this many copies of the rows")
    ap.add_argument("--dir", type=Path, help="work folder, kept (default: a temporary one, removed)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    if args.records < 1 or args.files < 1 or args.scale < 1:
        ap.error("-n, --files and --scale must be positive")
    folder = args.dir or Path(tempfile.mkdtemp(prefix="tritbench-history-bench-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the temporary folder is removed
    try:
        out = run(args.records, args.files, args.scale, folder)
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
          f"{out['target_query_jsonl_s']:.2f} s over the JSONL")
    print(f"bench db query (8 keys)      {out['summary_query_s']:.3f} s, {out['summary_rows']:,} rows")
    print(f"history_records, 1 machine   {out['history_records_one_machine_s']:.2f} s, "
          f"{out['history_records_one_machine']:,} records")
    if "scaled_records" in out:
        print(f"the same query over {out['scaled_records']:,} rows: {out['scaled_target_query_s']:.3f} s "
              f"(Parquet without the record column {out['scaled_parquet_bytes_without_record_column'] / mib:,.1f} "
              f"MiB, built in {out['scaled_build_s']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
