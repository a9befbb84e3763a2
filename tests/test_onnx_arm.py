"""The NEON path on aarch64, under qemu-user with an aarch64 Python and onnxruntime (.ci/arm-sysroot.sh):
cross-compiled, loaded by onnxruntime, bit-exact on cores without and with the dot-product extension.
Emulated speed means nothing; this is correctness only."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import REPO, skip_or_fail
from .test_onnx_disasm import ARM_FLOAT_MUL, RESCALE, expected_kernels, functions, violations

TOOLS = ("aarch64-linux-gnu-gcc", "qemu-aarch64-static", "debootstrap")


def _can_install() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


@pytest.fixture(scope="module")
def arm(tmp_path_factory):
    if not all(shutil.which(t) for t in TOOLS) and not _can_install():
        skip_or_fail(f"the NEON path needs {', '.join(TOOLS)} (or root to install them)")
    home = Path(os.environ.get("TRITBENCH_ARM_SYSROOT", Path.home() / ".cache/tritbench/arm64"))
    subprocess.run([str(REPO / ".ci/arm-sysroot.sh"), str(home)], check=True, capture_output=True, timeout=900)
    out = tmp_path_factory.mktemp("arm-lib")
    subprocess.run(["make", "-s", "-C", str(REPO / "backends/onnx/csrc"), "CC=aarch64-linux-gnu-gcc", f"OUT={out}"],
                   check=True, timeout=300)
    return home, out / "libtritbench_ternary.so", _namespace_tree(tmp_path_factory.mktemp("arm-site"))


def _namespace_tree(site: Path) -> Path:
    """The `tritbench` namespace as pyproject's package-dir maps it, built from symlinks for the guest Python
    (which has no editable install): tritbench/ holds bench/'s entries plus backends/, models/, reports/."""
    pkg = site / "tritbench"
    pkg.mkdir()
    for entry in (REPO / "bench").iterdir():
        (pkg / entry.name).symlink_to(entry)
    for sub in ("backends", "models", "reports"):
        (pkg / sub).symlink_to(REPO / sub)
    return site


def run_guest(home: Path, site: Path, cpu: str, *args: str) -> subprocess.CompletedProcess:
    sysroot = home / "sysroot"
    python = next(p for p in sorted((sysroot / "usr/bin").glob("python3.*")) if p.name[8:].isdigit())
    env = {**os.environ, "PYTHONPATH": f"{home / 'site'}:{site}", "QEMU_CPU": cpu}
    return subprocess.run(["qemu-aarch64-static", "-L", str(sysroot), str(python), *args],
                          capture_output=True, text=True, env=env, timeout=600)


def test_the_library_is_aarch64_and_multiply_free(arm):
    """As strict as the x86 check (test_onnx_disasm.py), with its checker: every kernel function is there, none
    holds an integer multiply of any AArch64 family, and only tk_rescale a float multiply, which it does hold."""
    _, lib, _ = arm
    objdump = shutil.which("aarch64-linux-gnu-objdump")
    assert objdump, "binutils-aarch64-linux-gnu comes with gcc-aarch64-linux-gnu"
    text = subprocess.run([objdump, "-d", "--no-show-raw-insn", str(lib)], capture_output=True, text=True,
                          check=True).stdout
    assert "file format elf64-littleaarch64" in text
    funcs = functions(text)
    kernels = {name for name in funcs if name.startswith("tk_")}
    expected = expected_kernels(arm=True)
    assert expected <= kernels, f"kernel functions missing from the disassembly: {expected - kernels}"
    assert all(funcs[name] for name in expected), "a kernel function disassembled to no instructions"
    assert violations(funcs, arm=True) == []
    assert any(ARM_FLOAT_MUL.match(m) for m in funcs[RESCALE])  # the checker reads this disassembly's mnemonics


@pytest.mark.parametrize("cpu", ["cortex-a53", "cortex-a76", "max"])
def test_neon_is_bit_exact_in_onnxruntime(arm, cpu):
    home, lib, site = arm
    proc = run_guest(home, site, cpu, str(REPO / "tests/arm/guest_check.py"), str(lib), "neon,portable")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("all ok")
    for kernel in ("neon", "portable"):  # the F16 head's GEMV ran on each path, by its own name
        assert f"f16 {kernel} widening of every kind of half: ok" in proc.stdout, proc.stdout[-2000:]
        assert f"{kernel} swiglu: ok" in proc.stdout and f"{kernel} float16 X: ok" in proc.stdout, proc.stdout[-2000:]
        assert f"{kernel} attention D=64: ok" in proc.stdout, proc.stdout[-2000:]
