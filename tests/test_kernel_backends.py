"""The onnxruntime backend through `bench run`: every format on the same shapes, real sessions."""

import os
import platform
import subprocess
from pathlib import Path

import pytest

from .conftest import REPO, read_jsonl, run_bench

FORMATS = ("tern2", "tern1.67", "fp32", "fp16", "nbits4", "nbits2", "int8")


def cpu_flags(cpuinfo: str) -> set[str]:
    """The x86 feature flags of /proc/cpuinfo (the kernel leaves out AVX-512 when the OS does not save zmm)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def expected_kernel_path(env: dict[str, str], machine: str, cpuinfo: str) -> str:
    """The op's dispatch rule (backends/onnx/csrc/tb_driver.c, tb_select), written out independently:
    TRITBENCH_KERNEL wins unless empty or `auto`; else NEON on aarch64 (baseline there), AVX-512 when the CPU
    has AVX2 and AVX-512 F, BW and VBMI, AVX2 when it has AVX2, and the portable path otherwise."""
    forced = env.get("TRITBENCH_KERNEL", "")
    if forced and forced != "auto":
        return forced
    if machine in ("aarch64", "arm64"):
        return "neon"
    if machine in ("x86_64", "AMD64", "i386", "i686"):
        flags = cpu_flags(cpuinfo)
        if {"avx2", "avx512f", "avx512bw", "avx512vbmi"} <= flags:
            return "avx512"
        if "avx2" in flags:
            return "avx2"
    return "portable"


def test_the_expected_kernel_path_rule():
    x86 = "processor\t: 0\nflags\t\t: fpu sse2 {}\n\nprocessor\t: 1\n"
    avx512 = x86.format("avx2 avx512f avx512bw avx512vbmi avx512vl")
    assert expected_kernel_path({}, "x86_64", avx512) == "avx512"
    assert expected_kernel_path({}, "x86_64", x86.format("avx2 avx512f avx512bw avx512vl")) == "avx2"  # no VBMI
    assert expected_kernel_path({}, "x86_64", x86.format("avx512f avx512bw avx512vbmi")) == "portable"  # no AVX2
    assert expected_kernel_path({}, "x86_64", x86.format("avx fma")) == "portable"
    assert expected_kernel_path({}, "aarch64", "Features\t: fp asimd\n") == "neon"
    assert expected_kernel_path({"TRITBENCH_KERNEL": "portable"}, "x86_64", avx512) == "portable"
    assert expected_kernel_path({"TRITBENCH_KERNEL": "auto"}, "x86_64", avx512) == "avx512"
    assert expected_kernel_path({"TRITBENCH_KERNEL": ""}, "aarch64", "") == "neon"


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
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    expected = expected_kernel_path(dict(os.environ), platform.machine(), cpuinfo)
    assert tern["settings"]["kernel_path"] == expected  # the CPU's best path, or the one TRITBENCH_KERNEL forces
    assert {onnx[("tern1.67", "gemv 256x128", t)]["settings"]["kernel_path"] for t in (1, 2)} == {expected}
    assert tern["settings"]["n_threads"] == 2 and tern["model"]["bits_per_weight"] < 2.05  # padding-free shape
    assert Path(tern["backend"]["custom_op_library"]).exists()
    assert "vs fp32" in proc.stdout and "tern1.67" in proc.stdout


def test_list_backends_shows_the_kernel_formats(tb_home):
    proc = run_bench(["list", "backends"], tb_home)
    assert proc.returncode == 0
    assert "tern2" in proc.stdout and "nbits2" in proc.stdout and "gemv, gemm" in proc.stdout
