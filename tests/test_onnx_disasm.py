"""Add-only, provably: no multiply or multiply-add instruction in any tk_* kernel function of the built
library (objdump -d). The one float multiply allowed is the per-output rescale in tk_rescale."""

import platform
import re
import shutil
import subprocess

import pytest

from tritbench.backends.onnx.build import ensure_built

from .conftest import skip_or_fail

# Integer multiplies and multiply-adds (x86: imul, mul, pmul*, vpmul*, pmadd*, vpmadd*, VNNI vpdp*),
# and float multiplies, fused multiply-adds and dot products. AArch64, every family (A64 scalar, NEON, SVE/SVE2
# and SME forms): scalar mul/madd/msub/mneg and the long [su]mull/[su]maddl/[su]msubl/[su]mnegl/[su]mulh;
# vector mul/mla/mls, widening [su]mull/[su]mlal/[su]mlsl (2: upper half; b/t: SVE2 bottom/top), saturating
# doubling sqdmulh/sqrdmulh/sqdmull/sqdmlal/sqdmlsl/sqrdmlah/sqrdmlsh, polynomial pmul/pmull, dot products
# [su]dot/usdot/sudot and matrix [su]mmla/usmmla, complex cmla/cdot, SVE mad/msb, SME outer products.
X86_INT_MUL = re.compile(r"^(i?mul[bwlq]?|mulx|v?pmul\w*|v?pmadd\w*|vpdp\w*)$")
X86_FLOAT_MUL = re.compile(r"^(v?mul[sp][sdh]|vfn?m(add|sub)\w*|v?dpp[sd])$")
ARM_INT_MUL = re.compile(
    r"^(mul|mla|mls|mneg|madd|msub|mad|msb"
    r"|[su]mull[2bt]?|[su]ml[as]l[2bt]?|[su]ml[as]ll\w*|usmlall\w*|sumlall\w*"
    r"|[su]mulh|[su]maddl|[su]msubl|[su]mnegl"
    r"|sqr?dmulh|sqdmull[2bt]?|sqdml[as]l(2|b|t|bt)?|sqrdml[as]h|sqrdcmlah|cmla|cdot"
    r"|pmul|pmull[2bt]?"
    r"|[su]dot|usdot|sudot|[su]vdot|usvdot|suvdot|[su]mmla|usmmla"
    r"|[su]mop[as]|usmop[as]|sumop[as])(\.\w+)?$")
ARM_FLOAT_MUL = re.compile(
    r"^(fn?mul\w*|ftsmul|fn?m(add|sub)|fn?ml[as]\w*|fn?mad|fn?msb|ftmad|fcmla|fmmla|fdot|fvdot\w*"
    r"|frecps|frsqrts|fmop[as]|bf(mul|ml[as]\w*|dot|vdot|mmla|mop[as]))(\.\w+)?$")
RESCALE = "tk_rescale"


def expected_kernels(arm: bool) -> set[str]:
    """The kernel functions the library must hold: finding none would make 'no multiply' vacuous."""
    expected = {"tk_portable_tile", "tk_portable_tables", "tk_rescale"}
    if arm:
        return expected | {"tk_neon_tile", "tk_neon_tables"}
    return expected | {"tk_avx2_tile", "tk_avx2_tables", "tk_avx2_rowtab", "tk_avx2_rowlut",
                       "tk_avx512_unit_tables", "tk_avx512_unit_decode", "tk_avx512_unit_gemm"}


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
        skip_or_fail("objdump (Debian binutils) is not installed")
    text = subprocess.run([objdump, "-d", "--no-show-raw-insn", str(ensure_built())], capture_output=True, text=True,
                          check=True).stdout
    return functions(text)


def test_kernel_functions_hold_no_multiply(disassembly):
    arm = platform.machine() in ("aarch64", "arm64")
    kernels = {name for name in disassembly if name.startswith("tk_")}
    expected = expected_kernels(arm)
    assert expected <= kernels, f"kernel functions missing from the disassembly: {expected - kernels}"
    assert all(disassembly[name] for name in expected), "a kernel function disassembled to no instructions"
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


# Every AArch64 multiply the checker must catch, and instructions the NEON kernels do use that it must not.
ARM_INT_MULTIPLIES = [
    "mul", "mla", "mls", "madd", "msub", "mneg", "smull", "umull", "smull2", "umull2", "smlal", "umlal", "smlal2",
    "umlal2", "smlsl", "umlsl", "smlsl2", "umlsl2", "smulh", "umulh", "smaddl", "umaddl", "smsubl", "umsubl",
    "smnegl", "umnegl", "sqdmulh", "sqrdmulh", "sqdmull", "sqdmull2", "sqdmlal", "sqdmlal2", "sqdmlsl", "sqdmlsl2",
    "sqrdmlah", "sqrdmlsh", "pmul", "pmull", "pmull2", "sdot", "udot", "usdot", "sudot", "smmla", "ummla", "usmmla",
    # SVE/SVE2/SME forms
    "mad", "msb", "smullb", "umullt", "smlalb", "umlslt", "sqdmullb", "sqdmlalbt", "pmullb", "cmla", "cdot",
    "sqrdcmlah", "smopa", "umops", "usmopa", "sumops", "smlall", "svdot",
]
ARM_FLOAT_MULTIPLIES = [
    "fmul", "fmulx", "fnmul", "fmla", "fmls", "fmadd", "fmsub", "fnmadd", "fnmsub", "fmlal", "fmlal2", "fmlsl2",
    "fcmla", "fmad", "fmsb", "fnmla", "fnmsb", "ftmad", "ftsmul", "fmmla", "fdot", "frecps", "frsqrts", "fmopa",
    "bfdot", "bfmmla", "bfmlalb", "bfmlalt", "bfmul", "bfmla", "bfmopa",
]
ARM_INNOCENT = [
    "add", "addp", "addv", "sub", "neg", "saddw", "saddw2", "uaddw", "saddl", "sadalp", "uadalp", "saddlv", "ssra",
    "usra", "sqadd", "tbl", "tbx", "umov", "smov", "mov", "movi", "mvn", "dup", "ins", "zip1", "zip2", "uzp1",
    "uzp2", "eor", "and", "orr", "bif", "bit", "bsl", "cmtst", "cmlt", "cmeq", "ushr", "sshr", "shl", "ushl", "ext",
    "uxtl", "uxtl2", "sxtl", "xtn", "ld1", "st1", "ldr", "str", "ldp", "stp", "ldrsb", "ubfiz", "ubfx", "cinv",
    "csel", "msr", "mrs", "smax", "umin", "abs", "fmov", "fmax", "fmaxnm", "fminnm", "fabs", "fadd", "faddp",
    "fsub", "fdiv", "fcvtzs", "scvtf", "frecpe", "frinti", "fcmgt",
]


@pytest.mark.parametrize("mnemonic", ARM_INT_MULTIPLIES + ARM_FLOAT_MULTIPLIES)
def test_the_arm_checker_catches_every_multiply(mnemonic):
    sample = (f"0 <tk_a>:\n 0:\t{mnemonic}\tv0.4s, v1.4s, v2.4s\n 4:\tadd\tv0.4s, v0.4s, v1.4s\n\n"
              f"10 <tk_rescale>:\n 10:\t{mnemonic}\tv0.4s, v1.4s, v2.4s\n")
    in_rescale = [f"tk_rescale: {mnemonic}"] if mnemonic in ARM_INT_MULTIPLIES else []  # float is allowed there
    assert violations(functions(sample), arm=True) == [f"tk_a: {mnemonic}", *in_rescale]


def test_the_arm_checker_passes_what_the_kernels_use():
    sample = "0 <tk_a>:\n" + "".join(f" {4 * i:x}:\t{m}\tv0.16b, v1.16b\n" for i, m in enumerate(ARM_INNOCENT))
    assert violations(functions(sample), arm=True) == []
    assert not any(ARM_FLOAT_MUL.match(m) or ARM_INT_MUL.match(m) for m in ARM_INNOCENT)
