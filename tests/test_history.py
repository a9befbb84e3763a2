"""The results history (tritbench.results.history, `bench db`): Parquet files queried with DuckDB, idempotent on
(run_id, case_id), rebuilt from its JSONL files with the same checksum; schema upgrades and golden records."""

from __future__ import annotations

import copy
import fcntl
import hashlib
import json
from pathlib import Path

import pytest

from tritbench.errors import BenchError
from tritbench.results.history import (
    Filters,
    ParquetStore,
    canonical,
    flatten,
    history_records,
    ingest_paths,
    open_store,
    parse_since,
    read_sources,
    utc_text,
)
from tritbench.results.records import SCHEMA, read_records
from tritbench.results.upgrade import CURRENT, SCHEMAS, UPGRADES, upgrade

from .conftest import REPO, one_line_error
from .conftest import bench_in_process as bench

duckdb = pytest.importorskip("duckdb")

GOLDEN = REPO / "tests" / "fixtures" / "records"


def rec(run: str, case: str, tps: float | None, *, machine: str = "m1", cpu: str = "AMD EPYC 7763",
        arch: str = "x86_64", model: str = "tiny", fmt: str = "tq2_0", backend: str = "llamacpp", threads: int = 1,
        workload: str = "tg16", ts: str = "2026-12-01T10:00:00+00:00", status: str = "ok") -> dict:
    """A small record of the shape the runner writes (tritbench.execute.runner)."""
    return {
        "schema": SCHEMA, "run_id": run, "case_id": case, "status": status,
        "error": None if status == "ok" else "child ended without measuring this workload",
        "backend": {"name": backend, "version": "0.3.36"},
        "model": {"name": model, "format": fmt, "sha256": f"sha-{model}-{fmt}"},
        "workload": {"name": workload, "kind": workload[:2]},
        "settings": {"n_threads": threads},
        "metrics": {"tokens_per_s": {"median": tps, "n": 6}} if tps is not None else {},
        "machine": {"id": machine, "cpu_model": cpu, "arch": arch},
        "state": {}, "warnings": [], "timestamp": ts,
    }


def write(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def ingest(store: ParquetStore, *paths, problems: list[str] | None = None):
    return ingest_paths(store, paths, problems if problems is not None else [])


@pytest.fixture()
def runs(tmp_path) -> Path:
    return two_runs(tmp_path)


def two_runs(tmp_path: Path) -> Path:
    """Two runs on two machines: run-a (m1, tiny and small, llamacpp) and run-b (m2, an ARM board, onnx too, one
    failed case)."""
    a = [rec("run-a", f"a{i}", tps, model=model, threads=t)
         for i, (tps, model, t) in enumerate([(10.0, "tiny", 1), (20.0, "tiny", 1), (40.0, "small", 2)])]
    b = [rec("run-b", "b0", 5.0, machine="m2", cpu="Cortex-A76", arch="aarch64", ts="2026-12-05T08:00:00+00:00"),
         rec("run-b", "b1", 7.0, machine="m2", cpu="Cortex-A76", arch="aarch64", backend="onnx", fmt="tern2",
             ts="2026-12-05T08:00:01+00:00"),
         rec("run-b", "b2", None, machine="m2", cpu="Cortex-A76", arch="aarch64", status="failed",
             ts="2026-12-05T08:00:02+00:00")]
    write(tmp_path / "results" / "run-a.jsonl", a)
    write(tmp_path / "results" / "run-b.jsonl", b)
    return tmp_path / "results"


def keys(records: list[dict]) -> list[tuple[str, str]]:
    return sorted((r["run_id"], r["case_id"]) for r in records)


# ---- ingest: idempotent, newer replaces older ------------------------------------------------------------

def test_ingest_then_the_same_files_again_adds_nothing(runs, tmp_path):
    store = ParquetStore(tmp_path / "db")
    first = ingest(store, runs)
    assert (first.read, first.added, first.rows, first.sources) == (6, 6, 6, 2)
    manifest = (tmp_path / "db" / "history.json").read_bytes()
    segments = sorted(p.name for p in (tmp_path / "db").glob("seg-*.parquet"))
    total = store.checksum()
    again = ingest(store, runs / "run-a.jsonl", runs)
    assert (again.added, again.replaced, again.rows, again.skipped_files) == (0, 0, 6, 3)
    assert (tmp_path / "db" / "history.json").read_bytes() == manifest
    assert sorted(p.name for p in (tmp_path / "db").glob("seg-*.parquet")) == segments
    assert store.checksum() == total
    # a copy of a file elsewhere is read, and every record is already held
    copy_ = write(tmp_path / "elsewhere" / "run-a.jsonl", read_records([runs / "run-a.jsonl"]))
    third = ingest(store, copy_)
    assert (third.read, third.added, third.unchanged, third.rows, third.sources) == (3, 0, 3, 6, 3)
    assert store.checksum() == total


def test_a_newer_record_of_a_case_replaces_the_older_and_an_older_one_does_not(runs, tmp_path):
    store = ParquetStore(tmp_path / "db")
    ingest(store, runs)
    newer = write(tmp_path / "later" / "run-a.jsonl", [rec("run-a", "a0", 99.0, ts="2026-12-02T10:00:00+00:00")])
    counts = ingest(store, newer)
    assert (counts.replaced, counts.added, counts.rows) == (1, 0, 6)
    got = {r["case_id"]: r for r in store.records(Filters(machine=["m1"]))}
    assert got["a0"]["metrics"]["tokens_per_s"]["median"] == 99.0 and len(got) == 3
    older = write(tmp_path / "earlier" / "run-a.jsonl", [rec("run-a", "a0", 1.0, ts="2026-11-01T10:00:00+00:00")])
    counts = ingest(store, older)
    assert (counts.older, counts.replaced, counts.rows) == (1, 0, 6)
    got = {r["case_id"]: r for r in store.records()}
    assert got["a0"]["metrics"]["tokens_per_s"]["median"] == 99.0
    # exactly one row per case, across all segments
    files = [str(p) for p in (tmp_path / "db").glob("seg-*.parquet")]
    dup = duckdb.sql(f"SELECT run_id, case_id, count(*) n FROM read_parquet({files}) GROUP BY ALL HAVING n > 1")
    assert dup.fetchall() == []


def test_within_a_file_the_last_line_of_a_case_wins_as_in_read_records(tmp_path):
    """A case measured again after --resume: its last line, whatever the timestamps say."""
    f = write(tmp_path / "r" / "run-x.jsonl", [rec("run-x", "c", 1.0, ts="2026-12-01T10:00:05+00:00"),
                                              rec("run-x", "c", 2.0, ts="2026-12-01T10:00:00+00:00")])
    store = ParquetStore(tmp_path / "db")
    assert ingest(store, f).added == 1
    assert store.records()[0]["metrics"]["tokens_per_s"]["median"] == 2.0 == read_records([f])[0]["metrics"][
        "tokens_per_s"]["median"]


def test_a_changed_file_is_read_again(runs, tmp_path):
    store = ParquetStore(tmp_path / "db")
    ingest(store, runs)
    with open(runs / "run-b.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(rec("run-b", "b3", 9.0, machine="m2", ts="2026-12-05T09:00:00+00:00")) + "\n")
    counts = ingest(store, runs)
    assert (counts.skipped_files, counts.read, counts.added, counts.unchanged, counts.rows) == (1, 4, 1, 3, 7)


# ---- determinism: rebuild and checksum -----------------------------------------------------------------

def test_rebuild_gives_the_same_rows_and_checksum_in_any_ingest_order(runs, tmp_path):
    newer = write(tmp_path / "later" / "run-a.jsonl", [rec("run-a", "a0", 99.0, ts="2026-12-02T10:00:00+00:00")])
    # the same second, other contents: a fixed choice, whichever is ingested first
    tie = write(tmp_path / "tie" / "run-a.jsonl", [rec("run-a", "a0", 98.0, ts="2026-12-02T10:00:00+00:00")])
    one, two, three = (ParquetStore(tmp_path / name) for name in ("one", "two", "three"))
    for p in (runs / "run-a.jsonl", newer, runs / "run-b.jsonl", tie):
        ingest(one, p)
    for p in (tie, runs / "run-b.jsonl", newer, runs / "run-a.jsonl"):
        ingest(two, p)
    ingest(three, tie, runs, newer)  # all in one batch
    assert one.checksum() == two.checksum() == three.checksum()
    assert keys(one.records()) == keys(two.records())
    assert one.records() == two.records() == three.records()
    before, rows = one.checksum(), one.records()
    counts = one.rebuild()
    assert counts.rows == 6 and counts.changed_files == []
    assert one.checksum() == before and one.records() == rows
    assert len(list((tmp_path / "one").glob("seg-*.parquet"))) == 1  # a rebuild leaves one segment


def test_the_checksum_changes_with_a_record(runs, tmp_path):
    store = ParquetStore(tmp_path / "db")
    ingest(store, runs)
    before = store.checksum()
    assert before.startswith("sha256:") and len(before) == 7 + 64
    ingest(store, write(tmp_path / "x" / "run-a.jsonl", [rec("run-a", "a0", 10.5, ts="2026-12-02T10:00:00+00:00")]))
    assert store.checksum() != before


def test_the_checksum_is_defined_over_sorted_rows_not_file_bytes(runs, tmp_path):
    store = ParquetStore(tmp_path / "db")
    ingest(store, runs / "run-b.jsonl")
    ingest(store, runs / "run-a.jsonl")  # two segments, in the other order
    rows = sorted((r["run_id"], r["case_id"], hashlib.md5(canonical(r).encode()).hexdigest())
                  for r in read_records([runs]))
    text = "".join(f"{run}\x1f{case}\x1f{digest}\n" for run, case, digest in rows)
    assert store.checksum() == "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def test_rebuild_reads_the_files_as_they_are_now(runs, tmp_path):
    store = ParquetStore(tmp_path / "db")
    ingest(store, runs)
    write(runs / "run-a.jsonl", [rec("run-a", "a0", 10.0)])  # two cases gone from the truth
    counts = store.rebuild()
    assert counts.rows == 4 and counts.changed_files == [str((runs / "run-a.jsonl").resolve())]
    assert keys(store.records()) == keys(read_records([runs]))


def test_the_cli_prints_the_same_checksum_after_rebuild(runs, tmp_path, monkeypatch, capsys):
    db = tmp_path / "db"
    code, out, _ = bench(["db", "ingest", runs, "--db", db], monkeypatch, capsys)
    assert code == 0 and "6 added" in out and "6 records from 2 result file(s)" in out
    code, out, _ = bench(["db", "info", "--db", db], monkeypatch, capsys)
    checksum = next(ln.split()[1] for ln in out.splitlines() if ln.startswith("checksum "))
    code, out, _ = bench(["db", "rebuild", "--db", db], monkeypatch, capsys)
    assert code == 0 and f"checksum {checksum} (unchanged)" in out


# ---- queries and filters ---------------------------------------------------------------------------------

def test_summary_is_the_median_by_machine_model_format_backend_threads_workload(runs, tmp_path):
    store = ParquetStore(tmp_path / "db")
    ingest(store, runs)
    # a second run of the same tiny case on m1: the median is over the runs' medians
    ingest(store, write(tmp_path / "c" / "run-c.jsonl", [rec("run-c", "c0", 100.0, ts="2026-12-03T00:00:00+00:00")]))
    rows = store.summary()
    tiny = [r for r in rows if r["machine_id"] == "m1" and r["model_name"] == "tiny"]
    assert len(tiny) == 1 and tiny[0]["tokens_per_s"] == 20.0 and tiny[0]["records"] == 3 and tiny[0]["runs"] == 2
    assert {(r["machine_id"], r["model_name"], r["backend_name"], r["n_threads"]) for r in rows} == {
        ("m1", "tiny", "llamacpp", 1), ("m1", "small", "llamacpp", 2), ("m2", "tiny", "llamacpp", 1),
        ("m2", "tiny", "onnx", 1)}  # the failed case has no tokens/s and is not in the table


@pytest.mark.parametrize(("filters", "expected"), [
    (Filters(machine=["m2"]), {"b0", "b1", "b2"}),
    (Filters(machine=["cortex"]), {"b0", "b1", "b2"}),  # a part of the CPU model, any case
    (Filters(machine=["m1", "nope"]), {"a0", "a1", "a2"}),
    (Filters(model=["small"]), {"a2"}),
    (Filters(model=["tern2"]), {"b1"}),  # a format
    (Filters(backend=["onnx"]), {"b1"}),
    (Filters(since=parse_since("2026-12-05T08:00:01")), {"b1", "b2"}),
    (Filters(machine=["m2"], backend=["llamacpp"]), {"b0", "b2"}),
    (Filters(machine=[]), set()),
])
def test_filters(runs, tmp_path, filters, expected):
    store = ParquetStore(tmp_path / "db")
    ingest(store, runs)
    assert {r["case_id"] for r in history_records(tmp_path / "db", filters)} == expected


def test_history_records_are_the_records_as_read(runs, tmp_path):
    ingest(ParquetStore(tmp_path / "db"), runs)
    got = history_records(tmp_path / "db")
    assert sorted(got, key=lambda r: r["case_id"]) == sorted(read_records([runs]), key=lambda r: r["case_id"])
    assert [r["timestamp"] for r in got] == sorted(r["timestamp"] for r in got)  # oldest first


def test_query_outputs(runs, tmp_path, monkeypatch, capsys):
    db = tmp_path / "db"
    bench(["db", "ingest", runs, "--db", db], monkeypatch, capsys)
    code, out, _ = bench(["db", "query", "--db", db, "-o", "json", "--machine", "m1"], monkeypatch, capsys)
    rows = json.loads(out)
    assert code == 0 and {(r["model_name"], r["tokens_per_s"]) for r in rows} == {("tiny", 15.0), ("small", 40.0)}
    code, out, _ = bench(["db", "query", "--db", db, "-o", "csv", "--backend", "onnx"], monkeypatch, capsys)
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("machine_id,machine_cpu,") and len(lines) == 2 and ",onnx," in lines[1]
    code, out, _ = bench(["db", "query", "--db", db, "--since", "2026-12-05"], monkeypatch, capsys)
    assert code == 0 and "All rows: machine m2" in out and "m1" not in out and "5.00" in out and "7.00" in out
    code, out, err = bench(["db", "query", "--db", db, "--model", "nothing"], monkeypatch, capsys)
    assert code == 0 and out == "" and "no ok record" in err


# ---- schema versions: golden files and upgrades -------------------------------------------------------------

def golden_file(schema: str) -> Path:
    return GOLDEN / (schema.replace("/", "-") + ".jsonl")


def test_the_current_schema_is_the_last_known_one():
    assert SCHEMAS[-1] == CURRENT == SCHEMA


@pytest.mark.parametrize("schema", SCHEMAS)
def test_every_schema_version_has_a_golden_file_and_an_upgrade_path(schema):
    path = golden_file(schema)
    assert path.is_file(), f"no golden file {path} for {schema}"
    assert all(json.loads(ln)["schema"] == schema for ln in path.read_text().splitlines() if ln.strip())
    seen, s = set(), schema
    while s != CURRENT:  # every old version reaches the current one through registered steps
        assert s in UPGRADES and s not in seen, f"no upgrade from {s}"
        seen.add(s)
        s = UPGRADES[s][0]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_golden_records_load_through_read_records_and_ingest(schema, tmp_path):
    path = golden_file(schema)
    lines = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    problems: list[str] = []
    read = read_records([path], problems)
    assert problems == [] and len(read) == len({(r["run_id"], r["case_id"]) for r in lines})
    store = ParquetStore(tmp_path / "db")
    counts = ingest(store, path)
    assert counts.added == len(read) and counts.rows == len(read)
    got = store.records()
    assert sorted(got, key=lambda r: r["case_id"]) == sorted((upgrade(r) for r in read), key=lambda r: r["case_id"])
    flat = {r["case_id"]: flatten(r) for r in got}
    first = flat[read[0]["case_id"]]
    assert first["machine_id"] and first["model_format"] and first["workload_name"] and first["tokens_per_s"] > 0
    assert any(r["status"] == "failed" for r in got)


def test_upgrade_brings_an_old_record_through_each_step_without_changing_it():
    def v0_to_v1(r: dict) -> dict:
        r["schema"] = "t/1"
        r["metrics"] = {"tokens_per_s": {"median": r.pop("tps")}}
        return r

    def v1_to_v2(r: dict) -> dict:
        return {**r, "schema": "t/2", "state": r.get("state", {})}

    steps = {"t/0": ("t/1", v0_to_v1), "t/1": ("t/2", v1_to_v2)}
    old = {"schema": "t/0", "tps": 12.5, "run_id": "r"}
    kept = copy.deepcopy(old)
    new = upgrade(old, steps, target="t/2")
    assert new == {"schema": "t/2", "run_id": "r", "metrics": {"tokens_per_s": {"median": 12.5}}, "state": {}}
    assert old == kept  # pure: the input is never changed
    current = {"schema": "t/2"}
    assert upgrade(current, steps, target="t/2") is current
    unknown = {"schema": "other/9"}
    assert upgrade(unknown, steps, target="t/2") is unknown  # left for the reader to name and skip
    with pytest.raises(ValueError, match="did not give"):
        upgrade({"schema": "t/0", "tps": 1}, {"t/0": ("t/1", lambda r: {**r, "schema": "t/9"})}, target="t/2")
    with pytest.raises(ValueError, match="loop"):
        upgrade({"schema": "t/0"}, {"t/0": ("t/1", lambda r: {**r, "schema": "t/1"}),
                                    "t/1": ("t/0", lambda r: {**r, "schema": "t/0"})}, target="t/2")


def test_a_registered_old_version_loads_into_the_history(monkeypatch, tmp_path):
    """A record of a (made-up) older schema, upgraded on its way in by the registry."""

    def v0(r: dict) -> dict:
        r = dict(r)
        r["schema"] = CURRENT
        r["metrics"] = {"tokens_per_s": {"median": r.pop("tokens_per_s")}}
        return r

    monkeypatch.setitem(UPGRADES, "tritbench.result/0", (CURRENT, v0))
    old = rec("run-o", "o0", None)
    old.update(schema="tritbench.result/0", tokens_per_s=33.0)
    del old["metrics"]
    store = ParquetStore(tmp_path / "db")
    counts = store.ingest([old])
    assert counts.added == 1
    (got,) = store.records()
    assert got["schema"] == CURRENT and got["metrics"]["tokens_per_s"]["median"] == 33.0
    assert store.summary()[0]["tokens_per_s"] == 33.0


# ---- pure helpers ------------------------------------------------------------------------------------------

def test_timestamps_and_since():
    assert utc_text("2026-12-02T12:33:45+00:00") == "2026-12-02T12:33:45"
    assert utc_text("2026-12-02T14:33:45+02:00") == "2026-12-02T12:33:45"
    assert utc_text("2026-12-02T12:33:45Z") == "2026-12-02T12:33:45"
    assert utc_text("yesterday") is None and utc_text(None) is None
    assert parse_since("2026-12-01").isoformat() == "2026-12-01T00:00:00"
    with pytest.raises(ValueError):
        parse_since("last week")


def test_flatten_keeps_only_values_of_the_right_type():
    r = rec("r", "c", 12.0)
    r["settings"]["n_threads"] = True
    r["machine"]["id"] = 7
    r["metrics"]["tokens_per_s"]["median"] = float("nan")
    flat = flatten(r)
    assert flat["n_threads"] is None and flat["machine_id"] is None and flat["tokens_per_s"] is None
    assert json.loads(flat["record"].replace("NaN", "null"))["run_id"] == "r"


def test_open_store_picks_the_store_from_the_location(tmp_path):
    from tritbench.results.postgres import PostgresStore

    assert isinstance(open_store(tmp_path / "db"), ParquetStore)
    pg = open_store("postgresql://bob:hunter2@lab:5433/tritbench")  # nothing connects until it is used
    assert isinstance(pg, PostgresStore) and pg.location == "postgresql://bob:***@lab:5433/tritbench"
    with pytest.raises(BenchError, match="not a PostgreSQL URL: 'postgresql:/lab/tritbench'"):
        open_store(Path("postgresql://lab/tritbench"))  # what a Path makes of a URL


# ---- bad input: one line, exit 2 ---------------------------------------------------------------------------

def test_missing_path_and_folders_without_records(runs, tmp_path, monkeypatch, capsys):
    db = tmp_path / "db"
    code, _, err = bench(["db", "ingest", tmp_path / "nope.jsonl", "--db", db], monkeypatch, capsys)
    one_line_error(code, err, f"no such results file or folder: {tmp_path / 'nope.jsonl'}")
    (tmp_path / "empty").mkdir()
    code, _, err = bench(["db", "ingest", runs, tmp_path / "empty", "--db", db], monkeypatch, capsys)
    one_line_error(code, err, f"no result files (*.jsonl) in {tmp_path / 'empty'}")
    write(tmp_path / "bad" / "run-x.jsonl", [{"not": "a record"}])
    code, _, err = bench(["db", "ingest", runs, tmp_path / "bad", "--db", db], monkeypatch, capsys)
    assert code == 2 and f"no result records in {tmp_path / 'bad'}" in err.splitlines()[-1]
    assert "warning: skipped" in err and "Traceback" not in err
    assert not (db / "history.json").exists()  # nothing written: runs was read, then the error


def test_bad_lines_are_skipped_with_a_warning(runs, tmp_path, monkeypatch, capsys):
    with open(runs / "run-a.jsonl", "a", encoding="utf-8") as fh:
        fh.write("not json\n")
    code, out, err = bench(["db", "ingest", runs, "--db", tmp_path / "db"], monkeypatch, capsys)
    assert code == 0 and f"warning: skipped {runs / 'run-a.jsonl'}:4: not a JSON record" in err and "6 added" in out


def test_an_unwritable_db(runs, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = bench(["db", "ingest", runs, "--db", blocker / "db"], monkeypatch, capsys)
    one_line_error(code, err, f"cannot write the results history in {blocker / 'db'}")


def test_a_second_writer_is_refused(runs, tmp_path, monkeypatch, capsys):
    db = tmp_path / "db"
    db.mkdir()
    with open(db / ".lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, _, err = bench(["db", "ingest", runs, "--db", db], monkeypatch, capsys)
    one_line_error(code, err, "is being written by another bench db command")


def test_a_corrupt_parquet_file_is_one_line_and_rebuild_repairs_it(runs, tmp_path, monkeypatch, capsys):
    db = tmp_path / "db"
    bench(["db", "ingest", runs, "--db", db], monkeypatch, capsys)
    _, good, _ = bench(["db", "query", "--db", db, "-o", "json"], monkeypatch, capsys)
    (seg,) = db.glob("seg-*.parquet")
    seg.write_bytes(b"PAR1 not really parquet " * 10)
    for args in (["db", "query", "--db", db], ["db", "ingest", runs / "run-a.jsonl", "--db", db],
                 ["db", "info", "--db", db]):
        code, _, err = bench(args, monkeypatch, capsys)
        one_line_error(code, err, f"the results history in {db}: ")
        assert "bench db rebuild" in err
    code, out, _ = bench(["db", "rebuild", "--db", db], monkeypatch, capsys)
    assert code == 0 and "(was unreadable)" in out
    assert bench(["db", "query", "--db", db, "-o", "json"], monkeypatch, capsys)[1] == good


def test_no_history_and_bad_flags(runs, tmp_path, monkeypatch, capsys):
    db = tmp_path / "db"
    code, _, err = bench(["db", "query", "--db", db], monkeypatch, capsys)
    one_line_error(code, err, f"no results history in {db}")
    code, _, err = bench(["db", "rebuild", "--db", db], monkeypatch, capsys)
    one_line_error(code, err, f"no results history in {db}")
    bench(["db", "ingest", runs, "--db", db], monkeypatch, capsys)
    code, _, err = bench(["db", "query", "--db", db, "--since", "yesterday"], monkeypatch, capsys)
    one_line_error(code, err, "--since takes a date")
    code, _, err = bench(["db", "query", "--db", db, "-o", "pdf"], monkeypatch, capsys)
    one_line_error(code, err, "-o must be md, csv or json")
    (db / "history.json").write_text("{not json")
    code, _, err = bench(["db", "query", "--db", db], monkeypatch, capsys)
    one_line_error(code, err, "is not a tritbench.history/1 manifest")


def test_rebuild_refuses_when_a_source_is_gone(runs, tmp_path, monkeypatch, capsys):
    db = tmp_path / "db"
    bench(["db", "ingest", runs, "--db", db], monkeypatch, capsys)
    (runs / "run-b.jsonl").unlink()
    code, _, err = bench(["db", "rebuild", "--db", db], monkeypatch, capsys)
    one_line_error(code, err, f"its source {(runs / 'run-b.jsonl').resolve()} is gone")
    assert len(ParquetStore(db).records()) == 6  # the history is left as it was


def test_default_location_is_under_tritbench_home(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRITBENCH_HOME", str(tmp_path / "home"))
    code, out, _ = bench(["db", "ingest", runs], monkeypatch, capsys)
    assert code == 0 and str(tmp_path / "home" / "history") in out
    assert (tmp_path / "home" / "history" / "history.json").is_file()


def test_read_sources_counts_records_per_file(runs):
    from tritbench.results.history import Source

    srcs = [Source(str(runs / "run-a.jsonl"), "x"), Source(str(runs / "run-b.jsonl"), "y")]
    assert len(list(read_sources(srcs, []))) == 6 and [s.records for s in srcs] == [3, 3]


# ---- the history as input: bench report --history / --db ------------------------------------------------------

def test_report_reads_the_history_with_its_filters(tmp_path, monkeypatch, capsys):
    db = tmp_path / "db"
    code, _, err = bench(["db", "ingest", golden_file(SCHEMA), "--db", db], monkeypatch, capsys)
    assert code == 0, err
    code, out, err = bench(["report", "--db", db, "--format", "md"], monkeypatch, capsys)
    assert code == 0, err
    assert "tq2_0" in out and "4096x4096" in out and "4 record(s): 3 measured, 1 failed" in out
    # a run named as a file and also ingested is reported once
    code, both, _ = bench(["report", golden_file(SCHEMA), "--db", db, "--format", "md"], monkeypatch, capsys)
    assert code == 0 and both.count("| tiny") == out.count("| tiny")
    code, none, _ = bench(["report", "--db", db, "--machine", "Cortex-A76", "--format", "md"], monkeypatch, capsys)
    assert code == 0 and "No result records were found" in none
    code, _, err = bench(["report", golden_file(SCHEMA), "--model", "tiny"], monkeypatch, capsys)
    assert code == 2 and "filter the history: add --history" in err
    code, _, err = bench(["report"], monkeypatch, capsys)
    assert code == 2 and "or --history" in err


# ---- the history as input: bench compare and bench gate --baseline ------------------------------------------------

def test_compare_and_gate_take_a_history_folder_as_a_side(tmp_path, monkeypatch, capsys):
    from .test_compare import llm, noisy

    a = write(tmp_path / "a" / "run-a.jsonl", [llm("f16", noisy(100, seed=1)), llm("tq2_0", noisy(150, seed=2))])
    b = write(tmp_path / "b" / "run-b.jsonl", [llm("f16", noisy(100, seed=3), "run-b"),
                                               llm("tq2_0", noisy(120, seed=4), "run-b")])
    db = tmp_path / "db"
    bench(["db", "ingest", a, b, "--db", db], monkeypatch, capsys)  # B too: it is left out of the history side
    _, want, _ = bench(["compare", a, b, "-o", "json"], monkeypatch, capsys)
    code, got, err = bench(["compare", db, b, "-o", "json", "--since", "2025-01-01"], monkeypatch, capsys)
    assert code == 0, err
    assert json.loads(got)["cases"] == json.loads(want)["cases"] and json.loads(got)["a"] == [f"history {db}"]
    code, out, _ = bench(["gate", "--baseline", db, b, "--machine", "AMD"], monkeypatch, capsys)
    assert code == 1 and out.strip().splitlines()[-1] == "gate: 1 passed, 1 failed, 0 skipped"
    code, _, err = bench(["compare", db, b, "--model", "small"], monkeypatch, capsys)
    one_line_error(code, err, f"nothing to compare: A (history {db}) holds no result records that match the filters")
    code, _, err = bench(["compare", a, b, "--model", "tiny"], monkeypatch, capsys)
    one_line_error(code, err, "--machine, --model, --backend and --since filter a results history")
    code, _, err = bench(["gate", "--ab", "env:X=a,b", "--since", "2025-01-01"], monkeypatch, capsys)
    one_line_error(code, err, "filter a --baseline history")
    code, _, err = bench(["gate", "--ab", "env:X=a,b", "--model", "small"], monkeypatch, capsys)
    one_line_error(code, err, "filter a --baseline history (the models to gate on are -m/--models)")
    code, _, err = bench(["compare", db, b, "--since", "last week"], monkeypatch, capsys)
    one_line_error(code, err, "--since takes a date")
