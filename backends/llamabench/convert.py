"""A peer format (I2_S, IQ2_BN, TQ2_0, ...) made from tritbench's F16 file by that build's llama-quantize,
cached by content: the F16 file's sha256, the quantizer's sha256 and the arguments name the result."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tritbench.backends.llamabench.peer import quantize_types, run_tool, sha256_of, tool_help
from tritbench.plugin import ConfigError

# GGUF tensor types a quantizer may start from: it keeps ternary weights exact only from full precision.
SOURCE_TYPES = ("F32", "F16", "BF16")
QUANTIZE_TIMEOUT_S = 1800


def tensor_types(path: Path) -> dict[str, str]:
    """Tensor name -> GGML type name of a GGUF file."""
    from gguf import GGUFReader

    return {t.name: t.tensor_type.name for t in GGUFReader(str(path)).tensors}


def check_source(path: Path) -> dict[str, str]:
    """The tensor types of `path`, if every 2-D weight is full precision; else ConfigError."""
    types = tensor_types(path)
    quantized = sorted({t for t in types.values() if t not in SOURCE_TYPES})
    if quantized:
        raise ConfigError(f"{path.name} holds {'/'.join(quantized)} tensors: the peer's quantizer needs the F16 file "
                          "(run with -f f16)")
    return types


def quantize_args(types: dict[str, str]) -> list[str]:
    """Keep the token embedding and the output matrix in the types tritbench's file has (F16 by default):
    llama-quantize otherwise picks Q4_K/Q6_K for them, and the head's bytes would differ between rows."""
    args = []
    for tensor, flag in (("token_embd.weight", "--token-embedding-type"), ("output.weight", "--output-tensor-type")):
        if tensor in types:
            args += [flag, types[tensor].lower()]
    return args


def converted(source: Path, fmt: str, quantize: Path, cache: Path) -> tuple[Path, dict]:
    """`source` in format `fmt` made by `quantize`, from the cache when it was made before; and what was
    done (for the record)."""
    known = quantize_types(tool_help(quantize))
    if fmt.upper() not in known:
        names = ", ".join(sorted(known)) or "nothing"
        raise ConfigError(f"{quantize} cannot produce {fmt.upper()} (it knows: {names})")
    types = check_source(source)
    args = quantize_args(types)
    src_sha, tool_sha = sha256_of(source), sha256_of(quantize)
    key = hashlib.sha256(" ".join([src_sha, tool_sha, fmt.upper(), *args]).encode()).hexdigest()[:16]
    out = cache / f"{source.stem}-{fmt.lower()}-{key}.gguf"
    info = {"source": str(source), "source_sha256": src_sha, "quantize": str(quantize), "quantize_sha256": tool_sha,
            "type": fmt.upper(), "args": args, "path": str(out)}
    if out.is_file():
        return out, {**info, "cached": True}
    cache.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    try:
        run_tool([str(quantize), *args, str(source), str(tmp), fmt.upper()], timeout=QUANTIZE_TIMEOUT_S)
        os.replace(tmp, out)  # never a half-written file under the final name
    finally:
        tmp.unlink(missing_ok=True)
    return out, {**info, "cached": False}
