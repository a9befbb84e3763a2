"""The runner's promises: a crashing backend becomes a failed record and the run goes on; Ctrl-C keeps
every finished case and --resume skips them; records are flushed as cases end."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tritbench.execute.runner import describe_failure, reps_per_round
from tritbench.results.records import load_results

from .conftest import PLUGINS, REPO, read_jsonl, run_bench


def test_a_backend_that_aborts_becomes_a_failed_record_and_the_run_goes_on(tb_home, tiny_models, tmp_path):
    out = tmp_path / "out"
    proc = run_bench(["run", "-b", "aborting,llamacpp", "-m", "tiny", "-f", "f16,tq2_0", "-p", "16", "-n", "4",
                      "-r", "2", "--warmups", "0", "--out", str(out)], tb_home, TRITBENCH_PLUGINS=PLUGINS)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    records = read_jsonl(out)
    assert len(records) == 2 * 2 * 2
    failed = [r for r in records if r["backend"]["name"] == "aborting"]
    ok = [r for r in records if r["backend"]["name"] == "llamacpp"]
    assert {r["status"] for r in failed} == {"failed"} and {r["status"] for r in ok} == {"ok"}
    for r in failed:
        assert "SIGABRT" in r["error"] and "GGML_ASSERT(fake)" in r["error"]
        assert r["metrics"]["energy"]["source"].startswith("unavailable:")
    assert "failed cases:" in proc.stdout and "SIGABRT" in proc.stdout


def wait_for(predicate, timeout=120.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_ctrl_c_keeps_finished_cases_and_resume_skips_them(tb_home, tiny_models, tmp_path):
    out = tmp_path / "out"
    # one round: each variant finishes all its repetitions before the next starts
    args = ["run", "-b", "slow", "-m", "tiny", "-f", "f16,q8_0,q4_0,tq1_0,tq2_0", "-p", "0", "-n", "5",
            "-r", "4", "--warmups", "0", "--rounds", "1", "--opt", "step_s=0.05", "--out", str(out)]
    env = {**os.environ, "TRITBENCH_HOME": str(tb_home), "PYTHONPATH": str(REPO), "TRITBENCH_PLUGINS": PLUGINS}
    proc = subprocess.Popen([sys.executable, "-m", "tritbench.cli", *args], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: len([r for r in read_jsonl(out) if r["status"] == "ok"]) >= 2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "--resume" in stderr
    first = read_jsonl(out)
    finished = {r["model"]["format"] for r in first if r["status"] == "ok"}
    assert 2 <= len(finished) < 5
    assert all(len(r["metrics"]["tokens_per_s"]["samples"]) == 4 for r in first if r["status"] == "ok")
    interrupted = [r for r in first if r["status"] == "failed"]
    assert interrupted and all("interrupted" in r["error"] for r in interrupted)

    resumed = run_bench(args + ["--resume"], tb_home, TRITBENCH_PLUGINS=PLUGINS)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(finished)} finished cases skipped" in resumed.stderr
    files = list(out.glob("*.jsonl"))
    assert len(files) == 1  # resumed into the same run file
    after = read_jsonl(out)
    ok = [r for r in after if r["status"] == "ok"]
    assert sorted(r["model"]["format"] for r in ok) == sorted(["f16", "q8_0", "q4_0", "tq1_0", "tq2_0"])
    assert len({r["run_id"] for r in after}) == 1
    df = load_results(out)
    assert (df["status"] == "ok").sum() == 5
    assert "metrics.tokens_per_s.median" in df.columns


def test_a_child_over_its_timeout_fails_cleanly(tb_home, tiny_models, tmp_path):
    out = tmp_path / "out"
    proc = run_bench(["run", "-b", "slow", "-m", "tiny", "-f", "f16", "-p", "0", "-n", "50", "-r", "1",
                      "--warmups", "0", "--opt", "step_s=0.2", "--timeout", "2", "--out", str(out)],
                     tb_home, TRITBENCH_PLUGINS=PLUGINS)
    assert proc.returncode == 1
    (rec,) = read_jsonl(out)
    assert rec["status"] == "failed" and "timed out after 2 s" in rec["error"]


def test_rounds_interleave_variants(tb_home, tiny_models, tmp_path):
    out = tmp_path / "out"
    proc = run_bench(["run", "-m", "tiny", "-f", "f16,tq2_0", "-p", "0", "-n", "4", "-r", "3", "--warmups", "0",
                      "-o", "json", "--out", str(out)], tb_home)
    assert proc.returncode == 0, proc.stderr
    for r in read_jsonl(out):
        assert r["settings"]["rounds"] == 3
        assert [s["round"] for s in r["state"]["rounds"]] == [0, 1, 2]
        assert len(r["metrics"]["load_ms"]["samples"]) == 3  # a fresh child per round


@pytest.mark.parametrize("reps,rounds,expected", [(5, 5, [1] * 5), (5, 2, [3, 2]), (7, 3, [3, 2, 2]), (4, 1, [4])])
def test_reps_per_round(reps, rounds, expected):
    assert reps_per_round(reps, rounds) == expected


def test_describe_failure():
    log = "llama_model_load: loading\nsome/file.c:12: GGML_ASSERT(x) failed\nbacktrace line\n"
    assert describe_failure(-6, log) == "child killed by SIGABRT: some/file.c:12: GGML_ASSERT(x) failed"
    assert describe_failure(-11, "") == "child killed by SIGSEGV"
    backtrace = ("ggml.c:1234: GGML_ASSERT(n_tokens <= n_batch) failed\n#0 0x7f in ggml_print_backtrace\n"
                 "#1 0x7f in ggml_abort (error=...)\n#2 0x7f in llama_decode_failed_impl\n")
    assert describe_failure(-6, backtrace).endswith("GGML_ASSERT(n_tokens <= n_batch) failed")
    tagged = "noise\ntritbench-worker-error: RuntimeError: llama.cpp could not load the model: x\n"
    expected = "child exited with code 3: RuntimeError: llama.cpp could not load the model: x"
    assert describe_failure(3, tagged) == expected
