"""The onnxruntime backend through `bench run`: every format on the same shapes, real sessions."""

import subprocess
from pathlib import Path

import pytest

from tritbench.backends.onnx import native

from .conftest import REPO, read_jsonl, run_bench

FORMATS = ("tern2", "tern1.67", "fp32", "fp16", "nbits4", "nbits2", "int8")


@pytest.fixture(scope="module")
def custom_op_library():
    subprocess.run(["make", "-s", "-C", str(REPO / "backends/onnx/csrc")], check=True)


def test_every_onnx_format_runs_gemv_and_gemm(tb_home, tmp_path, custom_op_library):
    out = tmp_path / "out"
    proc = run_bench(["run", "-b", "onnx,numpy", "-f", ",".join(FORMATS), "-w", "gemv,gemm", "-s", "256x128",
                      "-M", "1,8", "-t", "1,2", "-r", "2", "--warmups", "1", "--out", str(out)], tb_home)
    assert proc.returncode == 0, proc.stderr
    recs = read_jsonl(out)
    # onnx: 7 formats x 2 tests x 2 thread counts; numpy: fp32 x 2 x 2
    assert len(recs) == 7 * 2 * 2 + 2 * 2
    assert {r["status"] for r in recs} == {"ok"}
    for r in recs:
        assert r["workload"]["K"] == 256 and r["workload"]["N"] == 128 and r["workload"]["M"] in (1, 8)
        assert r["settings"]["cache"] == "cold" and r["settings"]["weight_copies"] >= 1
        assert r["metrics"]["latency_ms"]["median"] > 0 and r["metrics"]["bandwidth_fraction"] > 0
    onnx = {(r["model"]["format"], r["workload"]["name"], r["settings"]["n_threads"]): r
            for r in recs if r["backend"]["name"] == "onnx"}
    fp16 = onnx[("fp16", "gemv 256x128", 1)]
    assert "NOT fp16 compute" in fp16["settings"]["compute"]  # said plainly, in the record
    assert fp16["model"]["file_bytes"] == 256 * 128 * 4 and fp16["settings"]["stored_weight_bytes"] == 256 * 128 * 2
    tern = onnx[("tern2", "gemv 256x128", 2)]
    assert tern["settings"]["kernel_path"] == native.kernel_name()  # the CPU's best path, e.g. avx512
    assert tern["settings"]["n_threads"] == 2 and tern["model"]["bits_per_weight"] < 2.05  # padding-free shape
    assert Path(tern["backend"]["custom_op_library"]).exists()
    assert "vs fp32" in proc.stdout and "tern1.67" in proc.stdout


def test_list_backends_shows_the_kernel_formats(tb_home):
    proc = run_bench(["list", "backends"], tb_home)
    assert proc.returncode == 0
    assert "tern2" in proc.stdout and "nbits2" in proc.stdout and "gemv, gemm" in proc.stdout
