"""The llama.cpp backend for real: the tiny preset in every format, through the worker and the CLI."""

import subprocess
import sys
from dataclasses import asdict

import pytest

from tritbench.execute.job import ChildResult, GenerationJob
from tritbench.models import FORMATS
from tritbench.plan.workloads import Workload

from .conftest import read_jsonl, run_bench

OPTIONS = {"n_batch": 2048, "n_ubatch": 512, "threads_batch": None, "flash_attn": True, "mmap": True, "n_ctx": None}


def run_worker(tmp_path, model_path, workloads, **job):
    result = tmp_path / "result.json"
    spec = {"backend": "llamacpp", "n_threads": 1, "options": OPTIONS, "workloads": workloads, "warmups": 1,
            "reps": 2, "seed": 7, "energy": "none", "result_path": str(result), "model_path": str(model_path),
            "n_ctx": max(w.n_tokens for w in workloads), **job}
    (tmp_path / "job.json").write_text(GenerationJob(**spec).to_json())
    proc = subprocess.run([sys.executable, "-m", "tritbench.execute.child", str(tmp_path / "job.json")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return asdict(ChildResult.read(result))


# What llama.cpp's counters must say after one repetition, worked out by hand: (n_p_eval, n_eval). A
# single-token batch counts as generation; a zero count reads as 1 (llama.cpp clamps it).


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_runs_pp_tg_pg_with_counters_matching(tmp_path, tiny_models, fmt):
    ws = {Workload("pp", 48, 0, 0): (48, 1), Workload("tg", 0, 12, 0): (1, 12), Workload("pg", 16, 5, 0): (16, 5),
          Workload("tg", 0, 6, 20): (1, 6)}
    res = run_worker(tmp_path, tiny_models[fmt], list(ws))
    for w, (want_prompt, want_gen) in ws.items():
        entry = res["workloads"][w.name]
        assert entry["error"] is None
        assert len(entry["reps"]) == 2
        for rep in entry["reps"]:
            c = rep["counters"]
            # llama.cpp's own counters saw exactly the work we timed
            assert (c["n_prompt"], c["n_gen"]) == (want_prompt, want_gen)
            if w.n_prompt:
                assert rep["prefill_s"] > 0 and c["prompt_ms"] > 0
            if w.n_gen:
                assert len(rep["decode_s"]) == w.n_gen and c["gen_ms"] > 0
    settings = res["settings"]
    assert settings["n_threads"] == 1 and settings["n_threads_batch"] == 1
    assert settings["flash_attn"] is True and settings["mmap"] is True
    assert settings["n_ctx"] >= max(w.n_tokens for w in ws)
    info = res["backend_info"]
    assert info["version"] and info["llama_cpp_commit"]
    assert "AVX" in info["system_info"] or "NEON" in info["system_info"]


def test_prompt_larger_than_batch_is_split_and_counted(tmp_path, tiny_models):
    w = Workload("pp", 40, 0, 0)
    opts = {**OPTIONS, "n_batch": 16, "n_ubatch": 16}
    res = run_worker(tmp_path, tiny_models["tq2_0"], [w], options=opts)
    assert res["settings"]["n_batch"] == 16  # batches of 16, 16 and 8: all prompt
    assert res["workloads"][w.name]["error"] is None
    assert all(r["counters"]["n_prompt"] == 40 for r in res["workloads"][w.name]["reps"])


def test_settings_are_applied(tmp_path, tiny_models):
    opts = {**OPTIONS, "flash_attn": False, "mmap": False, "threads_batch": 2, "n_ctx": 512}
    res = run_worker(tmp_path, tiny_models["q8_0"], [Workload("tg", 0, 4, 0)], options=opts, n_threads=1)
    s = res["settings"]
    assert (s["flash_attn"], s["mmap"], s["n_threads"], s["n_threads_batch"], s["n_ctx"]) == (False, False, 1, 2, 512)
    assert s["load_mode"] == "none"


def test_bench_run_every_format_end_to_end(tmp_path, tb_home, tiny_models):
    out = tmp_path / "results"
    proc = run_bench(["run", "-m", "tiny", "-f", ",".join(FORMATS), "-p", "32", "-n", "8", "--pg", "8,4",
                      "-d", "0,16", "-t", "1", "-r", "3", "--warmups", "1", "--out", str(out)], tb_home)
    assert proc.returncode == 0, proc.stderr
    records = read_jsonl(out)
    assert len(records) == 5 * 3 * 2
    assert {r["status"] for r in records} == {"ok"}
    for r in records:
        assert r["schema"] == "tritbench.result/1"
        assert r["backend"]["name"] == "llamacpp" and r["backend"]["version"]
        assert r["model"]["name"] == "tiny" and r["model"]["n_params"] > 1_000_000
        assert r["model"]["bits_per_weight"] > 1 and r["model"]["file_bytes"] > 0
        assert set(r["workload"]) >= {"kind", "n_prompt", "n_gen", "depth"}
        assert r["settings"]["n_threads"] == 1
        tps = r["metrics"]["tokens_per_s"]
        assert len(tps["samples"]) == 3 and tps["median"] > 0
        assert r["metrics"]["peak_rss_bytes"] > 0
        assert r["metrics"]["energy"]["source"].startswith("unavailable:")
        assert r["metrics"]["read_bandwidth"]["n_threads"] == 1 and r["metrics"]["read_bandwidth"]["gbps"] > 0
        assert r["machine"]["arch"] and "isa" in r["machine"]
        if r["workload"]["kind"] in ("pp", "pg"):
            assert r["metrics"]["ttft_ms"]["median"] > 0
        if r["workload"]["kind"] in ("tg", "pg"):
            assert len(r["metrics"]["token_latency_ms"]["samples"]) == 3 * r["workload"]["n_gen"]
        assert 0.2 < r["metrics"]["backend_timings"]["wall_over_backend"] <= 1.05
    # the terminal table: one row per case, speed-up over F16 filled in for every format
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("| tiny")]
    assert len(rows) == 30
    assert all(ln.rstrip(" |").endswith("x") for ln in rows)
    assert {r["model"]["format"] for r in records} == set(FORMATS)
    bpw = {r["model"]["format"]: r["model"]["bits_per_weight"] for r in records}
    assert bpw == {"f16": 16.0, "q8_0": 8.5, "q4_0": 4.5, "tq1_0": 1.6875, "tq2_0": 2.0625}


def test_a_context_smaller_than_the_workloads_is_named_plainly(tmp_path, tb_home, tiny_models):
    out = tmp_path / "results"
    proc = run_bench(["run", "-m", "tiny", "-f", "tq2_0", "-p", "32", "-n", "0", "-r", "1", "--warmups", "0",
                      "--opt", "n_ctx=8", "--idle-s", "0", "--out", str(out)], tb_home)
    assert proc.returncode == 1, proc.stderr
    (rec,) = read_jsonl(out)
    assert "n_ctx=8 is smaller than the 32 tokens the workloads need" in rec["error"]
