"""llama.cpp on aarch64 cores under qemu-user (.ci/arm-llama.sh): the llama.cpp that .venv's llama-cpp-python
vendors, cross-compiled per target core, runs `bench run` with both backends, and its ternary kernels compute
what they compute on x86. Emulated speed means nothing: no test here looks at a timing, and every record made
here must say it is emulated, so that no report or gate takes it for a core's speed."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tritbench import machine
from tritbench.reports.compare import compare_records
from tritbench.reports.tables import from_records

from .conftest import REPO, one_line_error, read_jsonl, run_bench, skip_or_fail
from .test_models_llamacpp import LOAD_AND_EVAL, assert_ternary_computes_what_f16_computes

SCRIPT = REPO / ".ci/arm-llama.sh"
# Each tool and the Debian package that has it: a missing one is named with the line that installs it.
TOOLS = {"aarch64-linux-gnu-gcc": "gcc-aarch64-linux-gnu", "aarch64-linux-gnu-g++": "g++-aarch64-linux-gnu",
         "qemu-aarch64-static": "qemu-user-static", "debootstrap": "debootstrap", "cmake": "cmake"}
# The core name each qemu model gives the fingerprint (its MIDR part).
CPU_MODELS = {"cortex-a53": "Cortex-A53", "cortex-a76": "Cortex-A76", "neoverse-n1": "Neoverse-N1"}
LLM_FORMATS = ("f16", "q8_0", "q4_0", "tq1_0", "tq2_0")
KERNEL_FORMATS = ("tern2", "tern1.67")


def _targets() -> dict[str, tuple[str, str]]:
    """name -> (compiler flag, qemu -cpu), as the script lists them (it needs no tool for that)."""
    out = subprocess.run([str(SCRIPT), "targets"], capture_output=True, text=True, check=True).stdout
    return {name: (flag, cpu) for name, flag, cpu in (line.split() for line in out.splitlines())}


if platform.machine() in ("aarch64", "arm64"):  # on an ARM board the native tests run llama.cpp's ARM kernels
    pytest.skip("this machine is aarch64: test_llamacpp.py and test_models_llamacpp.py run natively",
                allow_module_level=True)
TARGETS = _targets()


def missing_packages(which=shutil.which) -> list[str]:
    return sorted({pkg for tool, pkg in TOOLS.items() if not which(tool)})


def install_hint(packages: list[str]) -> str:
    return f"llama.cpp on ARM needs {', '.join(packages)}: apt-get install {' '.join(packages)}"


def _script(*args: str, timeout: float, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHON": sys.executable, **env})


@pytest.fixture(scope="module")
def arm() -> None:
    """Every target's libraries built (cached: seconds once built) and the aarch64 site ready."""
    missing = missing_packages()
    can_install = os.geteuid() == 0 and shutil.which("apt-get") is not None  # the script installs them then
    if missing and not can_install:
        skip_or_fail(install_hint(missing))
    try:
        import llama_cpp  # noqa: F401  # the script reads its version: the same llama.cpp is cross-built
    except ModuleNotFoundError:
        skip_or_fail("the Python package 'llama_cpp' is not installed")
    for step in (["build"], ["site"]):
        proc = _script(*step, timeout=3600)
        assert proc.returncode == 0, proc.stderr[-3000:]


def guest(target: str, *args: str, tb_home: Path, timeout: float = 1200) -> subprocess.CompletedProcess:
    """`python3 ARGS` in the aarch64 sysroot, under qemu as TARGET's core."""
    return _script("run", target, *args, timeout=timeout, TRITBENCH_HOME=str(tb_home), COLUMNS="200")


@pytest.fixture(scope="module", params=list(TARGETS))
def target_run(request, arm, tb_home, tiny_models, tmp_path_factory) -> tuple[str, list[dict], str]:
    """One `bench run` per target, under qemu: llama.cpp's five formats (pp and tg) and the onnx backend's kernel
    cases, tiny workloads (correctness, not speed). The models come from the host's synthesis (tiny_models)."""
    target = request.param
    out = tmp_path_factory.mktemp(f"arm-{target}")
    proc = guest(target, "-m", "tritbench.cli", "run", "-b", "llamacpp,onnx", "-m", "tiny",
                 "-f", ",".join(LLM_FORMATS + KERNEL_FORMATS), "-w", "pp,tg,gemv", "-p", "8", "-n", "4",
                 "-s", "256x256", "--cache", "hot", "-t", "1", "-r", "1", "--warmups", "0", "--out", str(out),
                 tb_home=tb_home)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return target, read_jsonl(out), proc.stdout


def test_every_case_runs_on_the_emulated_core_and_says_so(target_run):
    target, records, _ = target_run
    flag, cpu = TARGETS[target]
    got = {(r["backend"]["name"], r["model"]["format"], r["workload"]["kind"]) for r in records}
    assert got == {("llamacpp", f, k) for f in LLM_FORMATS for k in ("pp", "tg")} | \
                  {("onnx", f, "gemv") for f in KERNEL_FORMATS}
    for r in records:
        assert r["status"] == "ok", r["error"]
        m = r["machine"]
        assert m["arch"] == "aarch64" and m["cpu_model"] == CPU_MODELS[cpu]
        emu = m["emulation"]
        assert (emu["emulator"], emu["cpu"], emu["target"]) == ("qemu-aarch64-static", cpu, target)
        assert "not this core's speed" in emu["timings"]


def test_the_record_names_the_library_and_flags_that_ran(target_run):
    target, records, _ = target_run
    flag, cpu = TARGETS[target]
    for r in (r for r in records if r["backend"]["name"] == "llamacpp"):
        b = r["backend"]
        assert b["build"]["target"] == target and b["build"]["flags"] == flag and b["build"]["cross_compiled"]
        assert f"/{target}-" in b["llama_library"]  # the target's own folder of the cache
        # "CPU : NEON = 1 | ARM_FMA = 1 | ...": what ggml's CPU backend was built with
        features = dict(p.strip().split(" = ") for p in b["system_info"].partition(":")[2].split("|") if "=" in p)
        assert features["NEON"] == "1"
        # ggml lists only what it was built with: the A53 has no dot product
        assert features.get("DOTPROD", "0") == ("0" if target == "cortex-a53" else "1")


def test_the_onnx_kernels_ran_their_neon_path(target_run):
    _, records, _ = target_run
    kernels = [r for r in records if r["backend"]["name"] == "onnx"]
    assert kernels and all(r["settings"]["kernel_path"] == "neon" for r in kernels)


def test_reports_label_emulated_timings_and_compare_refuses_them(target_run):
    _, records, printed = target_run
    assert "Emulated:" in printed and "EMULATED by qemu-aarch64-static" in printed  # the run's own table
    data = from_records(records)
    assert data.emulated and all("EMULATED" in label for label in data.machines["machine"])
    result = compare_records(records, records)
    assert not result.cases and all("emulated" in c["why"] for c in result.not_compared)


# The x86 test's script, run once per model in one guest process (the emulated imports cost seconds each).
EVAL_EACH = """
import sys
script = sys.argv[1]
for path, out in zip(sys.argv[2::2], sys.argv[3::2]):
    sys.argv = ["-c", path, out]
    exec(script, {"__name__": "__main__"})
"""
TRACE_FORMATS = ("f16", "tq1_0", "tq2_0")


@pytest.mark.parametrize("target", list(TARGETS))
def test_ternary_logits_agree_with_f16_as_on_x86(arm, tiny_models, tb_home, tmp_path, target):
    """The x86 test's trace and tolerance (test_models_llamacpp.py), on each core's NEON kernels; and each
    format's logits close to x86's own."""
    pairs = [(str(tiny_models[f]), str(tmp_path / f"{f}-arm.npy")) for f in TRACE_FORMATS]
    proc = guest(target, "-c", EVAL_EACH, LOAD_AND_EVAL, *(x for pair in pairs for x in pair), tb_home=tb_home)
    assert proc.returncode == 0, proc.stderr[-2000:]
    reports = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    on_arm = {f: np.load(tmp_path / f"{f}-arm.npy") for f in TRACE_FORMATS}
    assert_ternary_computes_what_f16_computes(*(on_arm[f] for f in TRACE_FORMATS))
    for fmt, report in zip(TRACE_FORMATS, reports, strict=True):
        out = tmp_path / f"{fmt}-x86.npy"
        native = subprocess.run([sys.executable, "-c", LOAD_AND_EVAL, str(tiny_models[fmt]), str(out)],
                                capture_output=True, text=True, timeout=120)
        assert native.returncode == 0, native.stderr[-2000:]
        assert report["tokens"] == json.loads(native.stdout.splitlines()[-1])["tokens"]  # the same trace
        assert np.corrcoef(on_arm[fmt], np.load(out))[0, 1] > 0.999, fmt  # other summation orders, same model


def test_a_board_builds_for_its_own_core(tmp_path):
    """Given an aarch64 /proc/cpuinfo (a Pi 5's), cpu-args.sh adds nothing, so llama.cpp builds with its default
    GGML_NATIVE (-mcpu=native); and the op's Makefile, given an aarch64 compiler, builds the NEON kernels and no
    x86 file (the same decision a board's own gcc leads to: the Makefile asks `$(CC) -dumpmachine`)."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 "
                       "atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\n"
                       "CPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n")
    script = (REPO / "backends/llamacpp/cpu-args.sh").read_text()
    assert script.count("/proc/cpuinfo") == 1
    args = subprocess.run(["sh", "-c", script.replace("/proc/cpuinfo", str(cpuinfo))], capture_output=True,
                          text=True, check=True).stdout
    assert args.strip() == ""
    if not shutil.which("aarch64-linux-gnu-gcc"):
        skip_or_fail(install_hint(["gcc-aarch64-linux-gnu"]))
    plan = subprocess.run(["make", "-n", "-C", str(REPO / "backends/onnx/csrc"), "CC=aarch64-linux-gnu-gcc",
                           f"OUT={tmp_path}"], capture_output=True, text=True, check=True).stdout
    assert "tb_neon.c" in plan and "tb_avx2.c" not in plan and "tb_avx512.c" not in plan


# ---- bad input and refusals: no emulator needed ----

@pytest.mark.parametrize("args", [["run", "cortex-a99", "-c", "pass"], ["build", "cortex-a53", "nope"]])
def test_an_unknown_target_is_one_line_and_exit_2(args):
    proc = _script(*args, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "unknown target" in lines[0] and "cortex-a76" in lines[0]


def test_a_missing_tool_is_named_with_its_install_line():
    have = {"aarch64-linux-gnu-gcc", "debootstrap", "cmake"}
    missing = missing_packages(lambda tool: f"/usr/bin/{tool}" if tool in have else None)
    assert missing == ["g++-aarch64-linux-gnu", "qemu-user-static"]
    assert install_hint(missing).endswith(": apt-get install g++-aarch64-linux-gnu qemu-user-static")


EMULATED = {machine.EMULATOR_ENV: "qemu-aarch64-static -cpu cortex-a76 -L /nonexistent"}


def test_gate_refuses_to_run_under_an_emulator(tb_home, tmp_path):
    proc = run_bench(["gate", "--ab", "opt:flash_attn=true,false", "-m", "tiny", "-f", "tq2_0", "--out",
                      str(tmp_path)], tb_home, **EMULATED)
    one_line_error(proc.returncode, proc.stderr, "bench gate refuses to run under an emulator")


def test_a_memory_capped_profile_is_refused_under_an_emulator(tb_home, tmp_path):
    proc = run_bench(["run", "-m", "tiny", "-f", "tq2_0", "--profile", "pi5-like", "--out", str(tmp_path)], tb_home,
                     **EMULATED)
    one_line_error(proc.returncode, proc.stderr, "crashes a program run under an emulator")
