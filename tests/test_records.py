import json

import pytest

from tritbench.analysis.metrics import llm_metrics
from tritbench.errors import BenchError
from tritbench.plan.workloads import Workload
from tritbench.reports.terminal import render
from tritbench.results.records import SCHEMA, Record, ResultsStore, load_results, read_records


def record(fmt="f16", tps=100.0, status="ok", test="tg4", **kw):
    w = Workload.parse(test)
    metrics = {"tokens_per_s": {"median": tps, "mean": tps, "sd": 1.0, "unstable": False, "samples": [tps]},
               "peak_rss_bytes": 1 << 20} if status == "ok" else {}
    return Record(run_id="r", case_id=f"{fmt}-{test}", status=status, error=None if status == "ok" else "boom",
                  backend={"name": "llamacpp", "version": "1"},
                  model={"name": "tiny", "format": fmt, "n_params": 2_000_000, "file_bytes": 3 << 20},
                  workload=w.to_dict(), settings={"n_threads": 2, "requested": {"n_threads": 2}},
                  metrics=metrics, machine={"arch": "x86_64"}, **kw)


def test_metrics_from_repetitions():
    w = Workload("pg", 10, 4, 0)
    reps = [{"prefill_s": 0.1, "decode_s": [0.05] * 4, "cpu_s": 0.2,
             "counters": {"prompt_ms": 100.0, "gen_ms": 200.0}} for _ in range(3)]
    children = [{"load_s": 0.5, "peak_rss_bytes": 10, "rss_after_load_bytes": 8},
                {"load_s": 0.7, "peak_rss_bytes": 12, "rss_after_load_bytes": 9}]
    m = llm_metrics(w, reps, children)
    assert m["tokens_per_s"]["median"] == pytest.approx(14 / 0.3)
    assert m["prompt_tokens_per_s"]["median"] == pytest.approx(100.0)
    assert m["gen_tokens_per_s"]["median"] == pytest.approx(20.0)
    assert m["ttft_ms"]["median"] == pytest.approx(100.0)
    assert m["token_latency_ms"]["samples"] == pytest.approx([50.0] * 12)
    assert m["backend_timings"]["wall_over_backend"] == pytest.approx(1.0)
    assert m["peak_rss_bytes"] == 12 and m["rss_after_load_bytes"] == 9
    assert m["load_ms"]["samples"] == pytest.approx([500.0, 700.0])
    assert m["energy"]["source"].startswith("unavailable:")


def test_store_round_trip_and_resume_ids(tmp_path):
    store = ResultsStore.create(tmp_path)
    assert not store.path.exists()  # nothing is written before the first case ends
    store.append(record("f16"))
    store.append(record("tq2_0", status="failed"))
    again = ResultsStore.latest(tmp_path)
    assert again.path == store.path and again.run_id == store.run_id
    assert again.finished_case_ids() == {"f16-tg4"}
    rec = again.records()[0]
    assert rec.schema == SCHEMA and rec.model["format"] == "f16"


def _corrupted_lines() -> dict[str, bytes]:
    good = record().to_dict()
    return {
        "cut short": json.dumps(good).encode()[:40],
        "not UTF-8": json.dumps(good).encode().replace(b"tiny", b"ti\xff\xfe"),
        "deep nesting": b"[" * 100_000 + b"]" * 100_000,
        "huge integer": b'{"schema": "tritbench.result/1", "n": ' + b"9" * 5000 + b"}",
        "not an object": b"[1, 2, 3]",
        "other schema": json.dumps({"schema": "other"}).encode(),
        "no case_id": json.dumps({k: v for k, v in good.items() if k != "case_id"}).encode(),
        "metrics a list": json.dumps({**good, "metrics": [1]}).encode(),
        "odd status": json.dumps({**good, "status": "maybe"}).encode(),
        "no workload name": json.dumps({**good, "workload": {"kind": "tg"}}).encode(),
    }


def test_every_corrupted_line_is_skipped_and_named_and_the_rest_is_read(tmp_path):
    good = json.dumps(record("tq2_0").to_dict()).encode()
    bad = _corrupted_lines()
    path = tmp_path / "run-x.jsonl"
    path.write_bytes(b"\n".join([good, *bad.values(), good.replace(b"tq2_0-tg4", b"other-case")]) + b"\n")
    (tmp_path / "dir.jsonl").mkdir()  # a folder with a results file's name
    problems: list[str] = []
    recs = read_records([tmp_path], problems)
    assert [r["case_id"] for r in recs] == ["tq2_0-tg4", "other-case"]
    assert len(problems) == len(bad) + 1
    assert problems[0].endswith("dir.jsonl: not a file")
    for i, line in enumerate(problems[1:], 2):  # file and line of each bad line, in order
        assert line.startswith(f"{path}:{i}: ")
    assert "not UTF-8" in problems[2] and "'case_id' is missing" in problems[7]
    with pytest.raises(BenchError, match="no such results file"):
        read_records([tmp_path / "missing.jsonl"])


def test_a_case_measured_again_keeps_its_newest_record(tmp_path):
    store = ResultsStore.create(tmp_path)
    store.append(record("f16"))
    interrupted = record("tq2_0", status="failed")
    store.append(interrupted)
    store.append(record("tq2_0", 150.0))  # the same case, after --resume
    again = store.records()
    assert [(r.model["format"], r.status) for r in again] == [("f16", "ok"), ("tq2_0", "ok")]
    assert len(read_records([tmp_path])) == 2 and store.finished_case_ids() == {"f16-tg4", "tq2_0-tg4"}


def test_one_process_at_a_time_measures_into_a_run(tmp_path):
    store = ResultsStore.create(tmp_path)
    with store.lock():
        with pytest.raises(BenchError, match="being measured by another bench run"):
            with ResultsStore(store.path, store.run_id).lock():
                pass
    with store.lock():  # released
        pass


def test_load_results_flattens(tmp_path):
    store = ResultsStore.create(tmp_path)
    for fmt, tps in (("f16", 100.0), ("tq2_0", 180.0)):
        store.append(record(fmt, tps))
    df = load_results(tmp_path)
    assert list(df["model.format"]) == ["f16", "tq2_0"]
    assert list(df["metrics.tokens_per_s.median"]) == [100.0, 180.0]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert load_results(empty).empty


def test_speedups_and_table():
    recs = [record("f16", 100.0), record("tq2_0", 180.0), record("q4_0", status="failed"),
            record("tq1_0", 50.0, test="pp8")]
    md = render(recs, "md")
    rows = {line.split("|")[2].strip(): line.split("|")[-2].strip() for line in md.splitlines()
            if line.startswith("| tiny")}
    assert rows == {"f16": "1.00x", "tq2_0": "1.80x", "tq1_0": "—"}  # pp8 has no F16 baseline
    assert "vs f16" in md and "failed cases:" in md and "- tiny q4_0 tg4: boom" in md
    csv = render(recs, "csv")
    assert csv.splitlines()[0].count("metrics.tokens_per_s.median") == 1 and "samples" not in csv
    assert len(render(recs, "jsonl").splitlines()) == 4
    assert json.loads(render(recs, "json"))[1]["model"]["format"] == "tq2_0"


def test_a_torn_last_line_is_set_aside_and_the_next_record_starts_a_fresh_line(tmp_path):
    store = ResultsStore.create(tmp_path)
    store.append(record("f16"))
    with open(store.path, "a", encoding="utf-8") as fh:  # a crash (or a full disk) mid-write
        fh.write(json.dumps(record("q4_0").to_dict())[:57])
    store.append(record("tq2_0"))
    again = ResultsStore.latest(tmp_path)
    assert [r.model["format"] for r in again.records()] == ["f16", "tq2_0"]
    assert again.finished_case_ids() == {"f16-tg4", "tq2_0-tg4"}
    torn = store.path.with_suffix(".torn").read_text()
    assert torn.startswith('{"run_id"') and len(torn) == 58  # kept, apart from the run file
    assert read_records([tmp_path]) == [r.to_dict() for r in again.records()]


def test_a_store_that_cannot_be_written_says_so_in_one_line(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(BenchError, match="cannot write results to .*afile/sub: Not a directory"):
        ResultsStore.check_writable(tmp_path / "afile" / "sub")
    store = ResultsStore(tmp_path / "afile" / "run-x.jsonl", "x")
    with pytest.raises(BenchError, match="cannot append a record to"):
        store.append(record("f16"))


HOSTILE = "evil\x1b]0;pwned\x07|x\r\n[bold red]y[/] ![img](http://x/y.png) <b>"


def test_untrusted_names_are_inert_in_the_terminal_table_and_the_failures_list():
    ok, bad = record("f16", 100.0), record("q4_0", status="failed")
    ok.model["name"] = HOSTILE
    bad.error = HOSTILE
    md = render([ok, bad], "md")
    assert "\x1b" not in md and "\x07" not in md and "\r" not in md
    table = [line for line in md.splitlines() if line.startswith("| evil")]
    assert len(table) == 1 and table[0].count(" | ") == md.splitlines()[0].count(" | ")  # one row, same columns
    assert "![img]" not in md and "<b>" not in md
    assert md.splitlines()[-1].startswith("- tiny q4_0 tg4: evil") and "pwned" in md.splitlines()[-1]  # one line
