"""`bench compare A B` over small result files in the real record format: speed-ups with intervals, verdicts,
exit codes, the three outputs, and bad input as one line with exit code 2."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from tritbench.analysis.stats import summarize
from tritbench.reports.compare import compare_records, to_markdown
from tritbench.results.records import SCHEMA

from .conftest import bench_in_process as bench
from .conftest import one_line_error

MACHINE = {"id": "a54b2b26bbeff7a1", "arch": "x86_64", "cpu_model": "AMD EPYC", "isa": ["avx2", "fma"],
           "physical_cores": 2, "logical_cores": 2, "ram_bytes": 25e9, "os": "Linux", "kernel": "6.18"}


def noisy(center: float, n: int = 12, sd: float = 0.01, seed: int = 0) -> list[float]:
    return list(center * (1 + sd * np.random.default_rng(seed).standard_normal(n)))


def llm(fmt: str, samples: list[float], run_id: str = "run-a", test: str = "tg16", machine: dict | None = None,
        stamp: str = "2025-03-01T10:00:00+00:00", status: str = "ok", error: str | None = None) -> dict:
    """A record as `bench run` writes it for a generation case (runner.py: settings, metrics, machine)."""
    kind, n = test[:2], int(test[2:])
    reps = len(samples)
    return {
        "schema": SCHEMA, "run_id": run_id, "case_id": f"{fmt}-{test}-{run_id}", "status": status, "error": error,
        "backend": {"name": "llamacpp", "version": "0.3.16"},
        "model": {"name": "tiny", "format": fmt, "path": f"/models/tiny-{fmt}.gguf", "n_params": 1967360,
                  "file_bytes": 3970176, "bits_per_weight": 16.0, "ternary": fmt.startswith("tq"),
                  "baseline": "f16" if fmt != "f16" else None},
        "workload": {"kind": kind, "name": test, "n_prompt": n if kind == "pp" else 0,
                     "n_gen": n if kind == "tg" else 0, "depth": 0, "M": 0, "K": 0, "N": 0},
        "settings": {"n_threads": 2, "n_ctx": 64, "requested": {"n_threads": 2}, "repetitions": reps,
                     "warmups": 2, "rounds": reps},
        "metrics": {"tokens_per_s": summarize(samples), "peak_rss_bytes": 97e6,
                    "energy": {"source": "unavailable:no powercap RAPL found"}} if status == "ok" else
                   {"energy": {"source": "unavailable:case failed"}},
        "machine": machine or MACHINE, "state": {}, "warnings": [], "timestamp": stamp,
    }


def kernel(fmt: str, latencies_s: list[float], run_id: str = "run-a") -> dict:
    """A gemv record: tokens/s is activation rows (M = 1) per second."""
    return {
        "schema": SCHEMA, "run_id": run_id, "case_id": f"k-{fmt}-{run_id}", "status": "ok", "error": None,
        "backend": {"name": "onnx"}, "model": {"name": "1024x1024", "format": fmt, "n_params": 1048576},
        "workload": {"kind": "gemv", "name": "gemv 1024x1024", "n_prompt": 0, "n_gen": 0, "depth": 0, "M": 1,
                     "K": 1024, "N": 1024},
        "settings": {"n_threads": 2, "requested": {"n_threads": 2}, "cache": "cold", "weight_copies": 8,
                     "repetitions": len(latencies_s), "warmups": 2, "rounds": len(latencies_s)},
        "metrics": {"latency_ms": summarize([x * 1e3 for x in latencies_s], higher_is_better=False),
                    "tokens_per_s": summarize([1 / x for x in latencies_s])},
        "machine": MACHINE, "state": {}, "warnings": [], "timestamp": "2025-03-01T10:00:00+00:00",
    }


def write(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture()
def runs(tmp_path):
    return a_and_b(tmp_path)


def a_and_b(tmp_path: Path) -> tuple[Path, Path]:
    """A: f16 and tq2_0; B: f16 unchanged (other noise), tq2_0 20 % slower."""
    a = write(tmp_path / "a" / "run-a.jsonl", [llm("f16", noisy(100, seed=1)), llm("tq2_0", noisy(150, seed=2))])
    b = write(tmp_path / "b" / "run-b.jsonl", [llm("f16", noisy(100, seed=3), "run-b"),
                                               llm("tq2_0", noisy(120, seed=4), "run-b")])
    return a, b


def by_format(doc: dict) -> dict[str, dict]:
    return {c["case"]["format"]: c for c in doc["cases"]}


# ---- verdicts and exit codes ------------------------------------------------------------------------------

def test_a_20_percent_slowdown_is_a_regression(runs, monkeypatch, capsys):
    a, b = runs
    code, out, _ = bench(["compare", a, b, "-o", "json"], monkeypatch, capsys)
    assert code == 0  # without --check the verdicts are reported, not enforced
    cases = by_format(json.loads(out))
    tq = cases["tq2_0"]
    assert tq["verdict"] == "regression" and not tq["faster"]
    assert tq["speedup"]["ratio"] == pytest.approx(tq["b"]["median"] / tq["a"]["median"])
    assert 0.77 < tq["speedup"]["lo"] <= tq["speedup"]["ratio"] <= tq["speedup"]["hi"] < 0.83
    assert tq["speedup"]["method"] == "unpaired bootstrap" and tq["method"] == "unpaired bootstrap, 12+12 samples"
    assert cases["f16"]["verdict"] == "pass" and cases["f16"]["speedup"]["lo"] > 0.95
    code, _, _ = bench(["compare", a, b, "--check"], monkeypatch, capsys)
    assert code == 1
    code, _, _ = bench(["compare", b, a, "--check", "-o", "json"], monkeypatch, capsys)
    assert code == 0  # the other way round, tq2_0 is 25 % faster: a pass


def test_equal_data_passes_and_noisy_data_is_inconclusive(tmp_path, monkeypatch, capsys):
    same = noisy(100, seed=5)
    a = write(tmp_path / "a.jsonl", [llm("tq2_0", same)])
    b = write(tmp_path / "b.jsonl", [llm("tq2_0", same, "run-b")])
    code, out, _ = bench(["compare", a, b, "--check", "-o", "json"], monkeypatch, capsys)
    (case,) = json.loads(out)["cases"]
    assert code == 0 and case["verdict"] == "pass" and case["speedup"]["ratio"] == 1.0
    assert case["speedup"]["lo"] < 1 < case["speedup"]["hi"]
    a = write(tmp_path / "na.jsonl", [llm("tq2_0", noisy(100, sd=0.3, seed=6))])
    b = write(tmp_path / "nb.jsonl", [llm("tq2_0", noisy(100, sd=0.3, seed=7), "run-b")])
    code, out, _ = bench(["compare", a, b, "--check", "-o", "json"], monkeypatch, capsys)
    (case,) = json.loads(out)["cases"]
    assert code == 3 and case["verdict"] == "inconclusive" and case["speedup"]["unstable"]


def test_hand_computed_constant_speedup_is_a_faster_pass(tmp_path, monkeypatch, capsys):
    a = write(tmp_path / "a.jsonl", [llm("tq2_0", [100.0] * 6)])
    b = write(tmp_path / "b.jsonl", [llm("tq2_0", [110.0] * 6, "run-b")])
    code, out, _ = bench(["compare", a, b, "--check"], monkeypatch, capsys)
    assert code == 0
    row = next(ln for ln in out.splitlines() if ln.startswith("| llamacpp"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[-5:] == ["110.00", "1.10x", "[1.10x-1.10x]", "unpaired bootstrap, 6+6 samples", "pass (faster)"]
    assert "0 regression, 0 inconclusive, 1 pass of 1 case(s)." in out


def test_the_speedup_and_verdict_columns_stay_when_every_row_agrees(tmp_path):
    a = [llm(f, [100.0] * 6) for f in ("f16", "tq2_0")]
    b = [llm(f, [100.0] * 6, "run-b") for f in ("f16", "tq2_0")]
    md = to_markdown(compare_records(a, b))
    assert "| format | A tokens/s | B tokens/s | B/A | interval | verdict |" in md
    assert md.count("| 100.00 | 100.00 | 1.00x | [1.00x-1.00x] | pass |") == 2


def test_too_few_samples_give_no_interval_and_an_inconclusive_verdict(tmp_path, monkeypatch, capsys):
    a = write(tmp_path / "a.jsonl", [llm("tq2_0", [100.0] * 5)])
    b = write(tmp_path / "b.jsonl", [llm("tq2_0", [80.0] * 5, "run-b")])
    code, out, _ = bench(["compare", a, b, "--check"], monkeypatch, capsys)
    assert code == 3 and "0.80x | [no interval]" in out and "inconclusive" in out
    code, out, _ = bench(["compare", a, b, "-o", "json"], monkeypatch, capsys)
    (case,) = json.loads(out)["cases"]
    assert case["speedup"]["lo"] is None and case["speedup"]["hi"] is None and case["verdict"] == "inconclusive"


def test_kernel_cases_compare_tokens_per_s(tmp_path, monkeypatch, capsys):
    a = write(tmp_path / "a.jsonl", [kernel("tern2", [0.0010] * 6)])
    b = write(tmp_path / "b.jsonl", [kernel("tern2", [0.0008] * 6, "run-b")])
    code, out, _ = bench(["compare", a, b, "-o", "json"], monkeypatch, capsys)
    doc = json.loads(out)
    (case,) = doc["cases"]
    assert doc["metric"] == "tokens_per_s" and case["case"]["cache"] == "cold"
    assert case["speedup"]["ratio"] == pytest.approx(1.25) and case["faster"] and case["verdict"] == "pass"


# ---- outputs ----------------------------------------------------------------------------------------------

def test_json_output_schema(runs, monkeypatch, capsys):
    a, b = runs
    _, out, _ = bench(["compare", a, b, "-o", "json", "--threshold", "10%", "--min-effect", "0.02"],
                      monkeypatch, capsys)
    doc = json.loads(out)
    assert doc["schema"] == "tritbench.compare/1" and doc["metric"] == "tokens_per_s"
    assert doc["a"] == [str(a)] and doc["b"] == [str(b)]
    assert (doc["confidence"], doc["threshold"], doc["min_effect"]) == (0.95, 0.10, 0.02)
    assert doc["match_machine"] is True and doc["counts"] == {"regression": 1, "inconclusive": 0, "pass": 1}
    assert doc["not_compared"] == []
    case = doc["cases"][0]
    assert set(case) == {"case", "label", "a", "b", "speedup", "method", "verdict", "faster"}
    assert case["case"] == {"backend": "llamacpp", "model": "tiny", "format": "f16", "workload": "tg16",
                            "requested": {"n_threads": 2}, "cache": None, "machine": MACHINE["id"]}
    assert set(case["speedup"]) == {"ratio", "lo", "hi", "confidence", "method", "n", "samples", "wide", "unstable"}
    assert set(case["a"]) == {"run_id", "case_id", "timestamp", "median", "n", "unstable"}
    assert case["a"]["run_id"] == "run-a" and case["b"]["run_id"] == "run-b" and case["a"]["n"] == 12


def test_markdown_names_the_metric_and_the_rules(runs, monkeypatch, capsys):
    a, b = runs
    _, out, _ = bench(["compare", a, b], monkeypatch, capsys)
    assert out.startswith("## B against A: tokens/s")
    assert "metrics.tokens_per_s" in out and "95 % intervals" in out
    assert "Regression: the interval lies below 0.99x; pass: its lower bound is above 0.95x" in out
    assert "| format | A tokens/s | B tokens/s | B/A | interval | verdict |" in out  # verdicts differ here
    assert "All rows: backend llamacpp, model tiny, test tg16, settings n_threads=2" in out
    assert "method unpaired bootstrap, 12+12 samples" in out  # the same for every row: stated once
    assert "1 regression, 0 inconclusive, 1 pass of 2 case(s)." in out


def test_csv_output(runs, monkeypatch, capsys):
    a, b = runs
    code, out, _ = bench(["compare", a, b, "-o", "csv"], monkeypatch, capsys)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and [r["format"] for r in rows] == ["f16", "tq2_0"]
    assert {"speedup", "lo", "hi", "method", "verdict", "metric", "a_median", "b_median"} <= set(rows[0])
    assert rows[1]["verdict"] == "regression" and float(rows[1]["lo"]) <= float(rows[1]["speedup"]) <= float(
        rows[1]["hi"])


# ---- matching ---------------------------------------------------------------------------------------------

def test_unmatched_cases_are_listed_not_an_error(tmp_path, monkeypatch, capsys):
    a = write(tmp_path / "a.jsonl", [llm("tq2_0", [100.0] * 6), llm("q4_0", [90.0] * 6)])
    b = write(tmp_path / "b.jsonl", [llm("tq2_0", [100.0] * 6, "run-b"), llm("tq1_0", [90.0] * 6, "run-b"),
                                     llm("f16", [50.0] * 6, "run-b", status="failed", error="boom")])
    code, out, _ = bench(["compare", a, b], monkeypatch, capsys)
    assert code == 0
    assert "Not compared:" in out
    assert "- llamacpp tiny q4_0 tg16 n_threads=2 machine=a54b2b26bbef: only in A" in out
    assert "- llamacpp tiny tq1_0 tg16 n_threads=2 machine=a54b2b26bbef: only in B" in out
    _, out, err = bench(["compare", a, b, "-o", "csv"], monkeypatch, capsys)
    assert len(list(csv.DictReader(io.StringIO(out)))) == 1 and "not compared: llamacpp tiny q4_0" in err


def test_a_failed_case_is_not_compared(tmp_path, monkeypatch, capsys):
    a = write(tmp_path / "a.jsonl", [llm("tq2_0", [100.0] * 6), llm("f16", [50.0] * 6)])
    b = write(tmp_path / "b.jsonl", [llm("tq2_0", [100.0] * 6, "run-b"),
                                     llm("f16", [], "run-b", status="failed", error="worker died: signal 9")])
    _, out, _ = bench(["compare", a, b, "-o", "json"], monkeypatch, capsys)
    (skipped,) = json.loads(out)["not_compared"]
    assert skipped["case"]["format"] == "f16" and skipped["why"] == "failed in B: worker died: signal 9"
    only_failed = write(tmp_path / "c.jsonl", [llm("tq2_0", [], "run-c", status="failed", error="boom")])
    code, _, err = bench(["compare", a, only_failed], monkeypatch, capsys)
    one_line_error(code, err, "none has tokens_per_s in both A and B")


def test_the_newest_record_of_a_case_is_compared(tmp_path, monkeypatch, capsys):
    write(tmp_path / "a" / "run-old.jsonl", [llm("tq2_0", [50.0] * 6, "old", stamp="2025-01-01T00:00:00+00:00")])
    write(tmp_path / "a" / "run-new.jsonl", [llm("tq2_0", [100.0] * 6, "new", stamp="2025-02-01T00:00:00+00:00")])
    b = write(tmp_path / "b.jsonl", [llm("tq2_0", [100.0] * 6, "run-b")])
    _, out, _ = bench(["compare", tmp_path / "a", b, "-o", "json"], monkeypatch, capsys)
    (case,) = json.loads(out)["cases"]
    assert case["a"]["run_id"] == "new" and case["speedup"]["ratio"] == 1.0


def test_other_machines_match_only_when_asked(tmp_path, monkeypatch, capsys):
    a = write(tmp_path / "a.jsonl", [llm("tq2_0", [100.0] * 6)])
    b = write(tmp_path / "b.jsonl", [llm("tq2_0", [200.0] * 6, "run-b", machine=MACHINE | {"id": "ffff0000"})])
    code, _, err = bench(["compare", a, b], monkeypatch, capsys)
    one_line_error(code, err, "no case of B matches a case of A (they come from different machines: "
                              "--ignore-machine")
    code, out, _ = bench(["compare", a, b, "--ignore-machine", "-o", "json"], monkeypatch, capsys)
    (case,) = json.loads(out)["cases"]
    assert code == 0 and case["speedup"]["ratio"] == 2.0 and case["case"]["machine"] is None


# ---- bad input --------------------------------------------------------------------------------------------

def test_missing_path_is_a_one_line_error(runs, tmp_path, monkeypatch, capsys):
    a, _ = runs
    code, _, err = bench(["compare", a, tmp_path / "nope.jsonl"], monkeypatch, capsys)
    one_line_error(code, err, f"results file or folder not found: {tmp_path / 'nope.jsonl'}")
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = bench(["compare", empty, a], monkeypatch, capsys)
    one_line_error(code, err, "A (" + str(empty) + ") holds no result records")


@pytest.mark.parametrize(("flag", "value", "fragment"), [
    ("--threshold", "5", "for 5 percent write 5%"),
    ("--threshold", "abc", "takes a fraction (0.05) or a percentage (5%)"),
    ("--threshold", "0", "--threshold must be from above 0 %"),
    ("--min-effect", "-1%", "--min-effect must be from 0 %"),
    ("--confidence", "1.5", "--confidence must be"),
    ("-o", "pdf", "-o must be md, csv or json"),
])
def test_bad_flags_are_one_line_errors(runs, flag, value, fragment, monkeypatch, capsys):
    a, b = runs
    code, _, err = bench(["compare", a, b, flag, value], monkeypatch, capsys)
    one_line_error(code, err, fragment)


def test_percent_and_fraction_mean_the_same(runs, monkeypatch, capsys):
    a, b = runs
    outs = [bench(["compare", a, b, "-o", "json", "--threshold", t, "--confidence", c], monkeypatch, capsys)[1]
            for t, c in (("5%", "0.95"), ("0.05", "95%"))]
    assert json.loads(outs[0]) == json.loads(outs[1])


def test_skipped_lines_are_named_on_stderr(runs, monkeypatch, capsys):
    a, b = runs
    with open(b, "a", encoding="utf-8") as fh:
        fh.write("not json\n")
    code, out, err = bench(["compare", a, b], monkeypatch, capsys)
    assert code == 0 and f"warning: skipped {b}:3: not a JSON record" in err and "B/A" in out


def test_untrusted_text_is_inert_in_the_markdown():
    hostile = "evil\x1b]0;pwned\x07|x\r\n<b>"
    a, b = llm("tq2_0", [100.0] * 6), llm("tq2_0", [100.0] * 6, "run-b")
    for r in (a, b):
        r["model"]["name"] = hostile
    md = to_markdown(compare_records([a], [b]))
    assert "\x1b" not in md and "\r" not in md and "<b>" not in md
    assert sum(ln.startswith("| ") for ln in md.splitlines()) == 3  # header, rule, one row: no broken cells


# ---- bench gate --baseline: the same comparison as a gate, for dedicated machines ---------------------------

def test_baseline_gate_judges_stored_results(runs, monkeypatch, capsys, tmp_path):
    a, b = runs
    code, out, _ = bench(["gate", "--baseline", a, b, "--json", tmp_path / "g.json"], monkeypatch, capsys)
    assert code == 1 and out.strip().splitlines()[-1] == "gate: 1 passed, 1 failed, 0 skipped"
    assert "trustworthy only on a quiet, dedicated machine" in out
    doc = json.loads((tmp_path / "g.json").read_text())
    assert by_format(doc)["tq2_0"]["verdict"] == "regression"
    assert doc["confidence"] == pytest.approx(0.98)  # the one-sided bound at 1 - alpha


def test_baseline_gate_says_when_noise_hides_the_threshold(tmp_path, monkeypatch, capsys):
    a = write(tmp_path / "a.jsonl", [llm("tq2_0", noisy(100, sd=0.3, seed=1))])
    b = write(tmp_path / "b.jsonl", [llm("tq2_0", noisy(100, sd=0.3, seed=2), "run-b")])
    code, out, _ = bench(["gate", "--baseline", a, b], monkeypatch, capsys)
    assert code == 3 and "makes a 5 % slowdown undetectable for 1 case(s)" in out
    code, _, _ = bench(["gate", "--baseline", a, b, "--inconclusive", "pass"], monkeypatch, capsys)
    assert code == 0


@pytest.mark.parametrize("args,fragment", [
    (["--baseline", "a.jsonl"], "--baseline needs the results to judge"),
    (["--baseline", "a.jsonl", "b.jsonl", "--ab", "env:X=a,b"], "--ab and --baseline exclude each other"),
    ([], "bench gate needs --ab"),
])
def test_baseline_gate_bad_input(args, fragment, monkeypatch, capsys):
    code, _, err = bench(["gate", *args], monkeypatch, capsys)
    one_line_error(code, err, fragment)
