"""`bench gate` as a user runs it: bad input stops before anything runs; real gates with real llama.cpp
children find a large injected slowdown and stay clean on A/A; ref= builds two revisions and python= runs two
environments. No assertion is on speed: the injected slowdown is 4x the layers, far beyond any noise."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from .conftest import REPO, run_bench
from .test_cli import assert_clean_error

SMALL_PLAN = ["-b", "llamacpp", "-f", "tq2_0", "-w", "pp", "-p", "32", "-r", "2", "--warmups", "1"]


@pytest.mark.parametrize("args,fragment", [
    (["--ab", "speed=a,b"], "--ab takes AXIS=BASE,HEAD"),
    (["--ab", "model=tiny"], "needs two sides"),
    (["--ab", "model=tiny,tiny"], "both sides are 'tiny'"),
    (["--ab", "model=tiny,tiny@layers=3", "-m", "small"], "leave out -m"),
    (["--ab", "opt:flash_attn=on,1", "-b", "llamacpp"], "same value"),
    (["--ab", "opt:nope=1,2", "-b", "llamacpp"], "no selected backend has that option"),
    (["--ab", "ref=no-such-ref-x,HEAD"], "is not a commit"),
    (["--ab", "python=/bin/true,/bin/false"], "cannot run tritbench's measuring child"),
    (["--ab", "python=README.md,/bin/false"], "not an executable file"),
    (["--ab", "env:X=a,b", "--threshold", "150%"], "--threshold must be between"),
    (["--ab", "env:X=a,b", "--alpha", "0"], "--alpha must be between"),
    (["--ab", "env:X=a,b", "--pairs", "8", "--max-pairs", "4"], "--max-pairs must be between"),
    (["--ab", "env:X=a,b", "--pairs", "8", "--max-pairs", "10", "--looks", "4"], "--looks must be between 2 and 3"),
    (["--ab", "env:X=a,b", "--min-effect", "9%"], "--min-effect must be >= 0 and below --threshold"),
])
def test_bad_input_is_one_line_and_runs_nothing(args, fragment, tb_home, tmp_path):
    out = tmp_path / "out"
    proc = run_bench(["gate", *args, "--out", str(out), "-m", "tiny"] if "-m" not in args and "model=" not in args[1]
                     else ["gate", *args, "--out", str(out)], tb_home)
    assert_clean_error(proc, fragment, out)


def test_a_large_injected_slowdown_is_a_regression(tb_home, tmp_path):
    out, summary = tmp_path / "out", tmp_path / "summary.md"
    proc = run_bench(["gate", "--ab", "model=tiny,tiny@layers=8", *SMALL_PLAN, "--pairs", "8", "--max-pairs", "8",
                      "--seed", "3", "--json", str(tmp_path / "g.json"), "--junit", str(tmp_path / "g.xml"),
                      "--out", str(out)], tb_home, GITHUB_STEP_SUMMARY=str(summary), GITHUB_ACTIONS="true")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == "gate: 0 passed, 1 failed, 0 skipped"
    assert any(ln.startswith("::error title=Performance regression::llamacpp/tq2_0/t1 pp32") for ln in lines)
    doc = json.loads((tmp_path / "g.json").read_text())
    (case,) = doc["cases"]
    assert case["verdict"] == "regression" and case["decided_by"] == ["cpu"] and doc["seed"] == 3
    assert case["metrics"]["cpu"]["ratio"] < 0.8 and case["pairs"] == 8
    assert doc["builds"]["base"] == doc["builds"]["head"]  # one build: only the model differs
    assert ET.parse(tmp_path / "g.xml").getroot().get("failures") == "1"
    assert "| regression |" in summary.read_text()
    records = [json.loads(x) for f in out.glob("*.jsonl") for x in f.read_text().splitlines()]
    assert {r["settings"]["side"]["value"] for r in records} == {"tiny", "tiny@layers=8"}
    assert all(len(r["state"]["rounds"]) == 8 and "steal_percent" in r["state"]["rounds"][0] for r in records)


def test_an_a_a_gate_is_not_a_regression(tb_home, tmp_path):
    proc = run_bench(["gate", "--ab", "env:TRITBENCH_AA=a,b", "-m", "tiny", *SMALL_PLAN, "--pairs", "10",
                      "--max-pairs", "10", "--alpha", "0.002", "--out", str(tmp_path / "out"),
                      "--json", str(tmp_path / "g.json")], tb_home)
    assert proc.returncode in (0, 3), proc.stdout + proc.stderr  # pass or inconclusive: never a regression
    doc = json.loads((tmp_path / "g.json").read_text())
    assert doc["cases"][0]["verdict"] in ("pass", "inconclusive")


@pytest.fixture(scope="module")
def two_revisions(tmp_path_factory):
    """A clone of this checkout with one more (empty) commit: HEAD~1 and HEAD are two revisions."""
    repo = tmp_path_factory.mktemp("repo")
    subprocess.run(["git", "clone", "-q", str(REPO), str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                    "--allow-empty", "-m", "head"], check=True)
    return repo


def test_ref_sides_are_built_once_and_run_their_own_code(two_revisions, tb_home, tmp_path):
    args = ["gate", "--ab", "ref=HEAD~1,HEAD", "--repo", str(two_revisions), "-b", "numpy", "-f", "fp32",
            "-w", "gemv", "-s", "256x256", "-M", "1", "--cache", "hot", "-r", "2", "--warmups", "0",
            "--pairs", "4", "--max-pairs", "4", "--json", str(tmp_path / "g.json"), "--out", str(tmp_path / "out")]
    proc = run_bench(args, tb_home)
    assert proc.returncode in (0, 3), proc.stdout + proc.stderr  # four pairs may not decide: never an error
    doc = json.loads((tmp_path / "g.json").read_text())
    pythons = {side: doc["builds"][side]["numpy"]["python"] for side in ("base", "head")}
    assert pythons["base"] != pythons["head"] and all(str(tb_home / "gate") in p for p in pythons.values())
    built = sorted((tb_home / "gate").glob("*/ready"))
    assert len(built) == 2
    stamps = [p.stat().st_mtime for p in built]
    # python=: the two environments the ref sides built, named directly; nothing is rebuilt
    proc = run_bench(["gate", "--ab", f"python={pythons['base']},{pythons['head']}", *args[5:]], tb_home)
    assert proc.returncode in (0, 3), proc.stdout + proc.stderr
    assert [p.stat().st_mtime for p in sorted((tb_home / "gate").glob("*/ready"))] == stamps


def test_gate_trials_records_rounds_of_a_a_prime_and_b(tb_home, tmp_path):
    path = tmp_path / "rec.jsonl"
    proc = run_bench(["gate-trials", "record", str(path), "--rounds", "2", "--base", "tiny", "--head", "tiny@layers=4",
                      "-w", "pp", "-p", "16", "-r", "1", "--warmups", "0", "--seed", "5"], tb_home)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [ln["round"] for ln in lines] == [0, 1]
    for ln in lines:
        assert sorted(ln["order"]) == ["A", "A'", "B"]
        (case,) = ln["values"].values()
        assert set(case) == {"A", "A'", "B"} and all(v["cpu"] > 0 for v in case.values())
    proc = run_bench(["gate-trials", "evaluate", str(path), "--pairs", "2", "--max-pairs", "2"], tb_home)
    assert proc.returncode == 0 and "| 1 | A/A |" in proc.stdout, proc.stdout + proc.stderr


def test_gate_trials_inject_a_larger_k_into_kernel_cases(tb_home, tmp_path):
    """B's kernels run K 5 % larger (4096 -> 4301), named after A's case, in recordings and in full gates."""
    kernel = ["-b", "onnx", "-f", "tern2", "-w", "gemv", "-r", "1", "--warmups", "0"]
    path = tmp_path / "rec.jsonl"
    proc = run_bench(["gate-trials", "record", str(path), "--rounds", "2", *kernel, "--seed", "3"], tb_home)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for ln in map(json.loads, path.read_text().splitlines()):
        assert list(ln["values"]) == ["onnx/tern2/t1/hot gemv 4096x4096"]
    journals = (tmp_path / "rec-records").glob("*.journal")
    children = [json.loads(x) for f in journals for x in f.read_text().splitlines() if x.strip()]
    ran = [w for c in children for w in c["result"]["workloads"]]
    assert sorted(set(ran)) == ["gemv 4096x4096", "gemv 4301x4096"] and ran.count("gemv 4301x4096") == 2
    proc = run_bench(["gate-trials", "evaluate", str(path), "--pairs", "2", "--max-pairs", "2"], tb_home)
    assert "injected slowdown measured, onnx/tern2/t1/hot gemv 4096x4096: cpu" in proc.stdout, proc.stdout
    log = tmp_path / "trials.jsonl"
    proc = run_bench(["gate-trials", "full", "--trials", "1", *kernel, "--pairs", "2", "--max-pairs", "2", "--looks",
                      "1", "--out", str(tmp_path / "gates"), "--log", str(log)], tb_home)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    gates = [json.loads(x) for x in log.read_text().splitlines()]
    assert [(g["kind"], g["cases"][0]["pairs"]) for g in gates] == [("A/A", 2), ("injected", 2)]
    # each side's records hold what its own children measured
    ran = [{(r["settings"]["side"]["side"], r["workload"]["K"], r["status"])
            for r in map(json.loads, open(g["results"]))} for g in gates]
    assert ran == [{("base", 4096, "ok"), ("head", 4096, "ok")}, {("base", 4096, "ok"), ("head", 4301, "ok")}]


def test_gate_trials_full_logs_each_gate_and_continues_the_log(tb_home, tmp_path):
    log = tmp_path / "trials.jsonl"
    plan = ["--base", "tiny", "--head", "tiny@layers=4", "-w", "pp", "-p", "16", "-r", "1", "--warmups", "0",
            "--pairs", "2", "--max-pairs", "2", "--looks", "1", "--out", str(tmp_path / "gates"), "--log", str(log)]
    proc = run_bench(["gate-trials", "full", "--trials", "1", *plan], tb_home)
    assert proc.returncode == 0 and "| 1 | A/A |" in proc.stdout, proc.stdout + proc.stderr
    first = [json.loads(x) for x in log.read_text().splitlines()]
    assert [g["kind"] for g in first] == ["A/A", "injected"]
    for g in first:
        assert g["verdict"] in ("pass", "inconclusive", "regression") and g["seconds"] > 0
        (case,) = g["cases"]
        assert case["pairs"] == 2 and case["status"] == g["verdict"]
        assert g["plan"]["base"] == "tiny" and g["plan"]["n_prompt"] == [16] and g["plan"]["looks"] == 1
        assert g["tritbench"].startswith(subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"],
                                                        capture_output=True, text=True).stdout.strip())
    # a second session continues the same log: one more gate of each kind, the first two kept as they were
    proc = run_bench(["gate-trials", "full", "--trials", "2", *plan], tb_home)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "continuing" in proc.stderr and "| 2 | A/A |" in proc.stdout and "| 2 | injected |" in proc.stdout
    assert "2 of them from earlier sessions; tritbench " in proc.stdout
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert lines[:2] == first and [g["kind"] for g in lines[2:]] == ["A/A", "injected"]
    assert lines[2]["seed"] != lines[0]["seed"]
    # a log of another plan is not mixed in, and a damaged one is refused: one line, nothing run
    before = log.read_text()
    proc = run_bench(["gate-trials", "full", "--trials", "3", *plan, "-p", "32"], tb_home)
    assert_clean_error(proc, "holds gates of another plan (differs in n_prompt)")
    assert log.read_text() == before
    log.write_text(before + "{not json\n")
    assert_clean_error(run_bench(["gate-trials", "full", *plan], tb_home), "trials.jsonl:5 is not a gate-trials log")


@pytest.mark.parametrize("gate_rc,trailer,expected", [(0, False, 0), (3, False, 0), (1, False, 1), (1, True, 0),
                                                      (4, True, 1)])
def test_ci_perf_gate_fails_on_regression_unless_the_commit_accepts_it(tmp_path, gate_rc, trailer, expected):
    """.ci/perf-gate's decision, with a stand-in for `bench` that ends as a gate would (real gates of the op run
    in CI whenever a commit changes it)."""
    repo = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(REPO), str(repo)], check=True)
    shutil.copy2(REPO / ".ci/perf-gate", repo / ".ci/perf-gate")  # the script as it is now, committed or not
    source = next((repo / "backends/onnx/csrc").glob("*.c"))
    source.write_text(source.read_text() + "\n/* a change */\n")
    message = "Change the op" + ("\n\nPerf-Regression-Accepted: trades speed for exactness" if trailer else "")
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", message],
                   check=True)
    fake = tmp_path / "bench"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/args\nexit {gate_rc}\n")
    fake.chmod(0o755)
    proc = subprocess.run([str(repo / ".ci/perf-gate")], capture_output=True, text=True,
                          env={**os.environ, "BENCH": str(fake)})
    assert proc.returncode == expected, proc.stdout + proc.stderr
    (args,) = (tmp_path / "args").read_text().splitlines()
    assert args.startswith("gate --ab ref=HEAD~1,HEAD -b onnx -f tern2")
    if trailer and gate_rc == 1:
        assert "regression accepted by the commit: trades speed for exactness" in proc.stdout
