"""Add-only, provably: no multiply or multiply-add instruction in any tk_* kernel function of the built
library (objdump -d). The one float multiply allowed is the per-output rescale in tk_rescale."""

import platform
import re
import shutil
import subprocess

import pytest

from tritbench.backends.onnx.build import ensure_built

# Integer multiplies and multiply-adds (x86: imul, mul, pmul*, vpmul*, pmadd*, vpmadd*, VNNI vpdp*;
# ARM: mul, mla, mls, [su]mull, [su]mlal, [su]mlsl, madd, msub, [su]dot, sqdmulh...).
X86_INT_MUL = re.compile(r"^(i?mul[bwlq]?|mulx|v?pmul\w*|v?pmadd\w*|vpdp\w*)$")
X86_FLOAT_MUL = re.compile(r"^(v?mul[sp][sdh]|vfn?m(add|sub)\w*|v?dpp[sd])$")
ARM_INT_MUL = re.compile(r"^(mul|mla|mls|mneg|[su]?madd\w*|[su]?msub\w*|[su]mull2?|[su]mlal2?|[su]mlsl2?|"
                         r"[su]dot|usdot|sudot|sqr?dmulh|sqdml[as]l2?|sqdmull2?|pmull2?)(\.\w+)?$")
ARM_FLOAT_MUL = re.compile(r"^(fmul\w*|fn?m(add|sub)|fml[as]\w*|bfdot|bfmmla)$")
RESCALE = "tk_rescale"


def functions(objdump_text: str) -> dict[str, list[str]]:
    """Function name -> its instruction mnemonics, from `objdump -d --no-show-raw-insn` output."""
    funcs: dict[str, list[str]] = {}
    current = None
    for line in objdump_text.splitlines():
        head = re.match(r"^[0-9a-f]+ <([^>]+)>:$", line)
        if head:
            current = funcs.setdefault(head.group(1), [])
        elif current is not None and "\t" in line:
            mnemonic = line.split("\t")[1].split()[0] if len(line.split("\t")) > 1 else ""
            if mnemonic:
                current.append(mnemonic)
        elif not line.strip():
            current = None
    return funcs


def violations(funcs: dict[str, list[str]], arm: bool) -> list[str]:
    int_mul, float_mul = (ARM_INT_MUL, ARM_FLOAT_MUL) if arm else (X86_INT_MUL, X86_FLOAT_MUL)
    bad = []
    for name, mnemonics in funcs.items():
        if not name.startswith("tk_"):
            continue
        for m in mnemonics:
            if int_mul.match(m) or (name != RESCALE and float_mul.match(m)):
                bad.append(f"{name}: {m}")
    return bad


@pytest.fixture(scope="module")
def disassembly() -> dict[str, list[str]]:
    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.skip("objdump (Debian binutils) is not installed")
    text = subprocess.run([objdump, "-d", "--no-show-raw-insn", str(ensure_built())], capture_output=True, text=True,
                          check=True).stdout
    return functions(text)


def test_kernel_functions_hold_no_multiply(disassembly):
    arm = platform.machine() in ("aarch64", "arm64")
    kernels = {name for name in disassembly if name.startswith("tk_")}
    expected = {"tk_portable_tile", "tk_portable_tables", "tk_rescale"}
    if arm:
        expected |= {"tk_neon_tile", "tk_neon_tables"}
    else:
        expected |= {"tk_avx2_tile", "tk_avx2_tables", "tk_avx2_rowtab", "tk_avx2_rowlut",
                     "tk_avx512_unit_tables", "tk_avx512_unit_decode", "tk_avx512_unit_gemm"}
    assert expected <= kernels, f"kernel functions missing from the disassembly: {expected - kernels}"
    assert violations(disassembly, arm) == []


def test_rescale_is_where_the_float_multiply_lives(disassembly):
    arm = platform.machine() in ("aarch64", "arm64")
    float_mul = ARM_FLOAT_MUL if arm else X86_FLOAT_MUL
    assert any(float_mul.match(m) for m in disassembly[RESCALE])


def test_the_checker_catches_multiplies():
    sample = """
0000000000001000 <tk_fake>:
    1000:\tvpmaddubsw %ymm1,%ymm2,%ymm3
    1004:\timul   %rax,%rbx
    1008:\tvmulps %ymm0,%ymm1,%ymm2
    100c:\tvpshufb %ymm0,%ymm1,%ymm2

0000000000002000 <tk_rescale>:
    2000:\tvmulps %ymm0,%ymm1,%ymm2

0000000000003000 <tb_driver_thing>:
    3000:\timul   %rax,%rbx
"""
    found = violations(functions(sample), arm=False)
    assert found == ["tk_fake: vpmaddubsw", "tk_fake: imul", "tk_fake: vmulps"]
    arm_sample = "0 <tk_a>:\n 0:\tsdot\tv0.4s, v1.16b, v2.16b\n 4:\tmla\tv0.8h, v1.8h, v2.8h\n 8:\ttbl\tv0.16b\n"
    assert violations(functions(arm_sample), arm=True) == ["tk_a: sdot", "tk_a: mla"]
