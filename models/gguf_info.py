"""read_model_info(): what a GGUF file holds (architecture, format, sizes, bits/weight, digest)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ModelError
from .gguf_layout import GGUFArray, TensorInfo, read_layout
from .synth import SPEC_KEY, cache_dir

# The quantized matmul weights of a transformer block; what "format" and bits_per_weight describe.
LINEAR_RE = re.compile(r"^blk\.\d+\.(attn_q|attn_k|attn_v|attn_qkv|attn_output|ffn_gate|ffn_up|ffn_down)\.weight$")
DOMINANT_SHARE = 0.9
HASH_CACHE_NAME = "sha256-cache.json"
HASH_CACHE_MAX_ENTRIES = 512
_HASH_CHUNK = 8 << 20


@dataclass(frozen=True)
class GGUFModelInfo:
    """Summary of a GGUF model file; format and bits_per_weight describe its block linear layers."""

    path: str
    name: str
    architecture: str
    format: str
    n_params: int
    n_linear_params: int
    bits_per_weight: float
    tensor_types: dict[str, int]
    embd_type: str | None
    output_type: str | None
    file_bytes: int
    sha256: str | None  # None: not computed (read_model_info(..., digest=False))
    n_vocab: int | None
    n_ctx_train: int | None
    spec: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe dict of all fields."""
        return dataclasses.asdict(self)


def read_model_info(path: str | os.PathLike[str], hash_cache: Path | None = None, digest: bool = True
                    ) -> GGUFModelInfo:
    """Inspect the GGUF file at path; ModelError if it is missing, not GGUF, truncated or corrupt.

    The sha256 is cached in hash_cache (default: <cache_dir()>/sha256-cache.json) keyed by absolute
    path, size and mtime, so a multi-GB file is hashed once; `digest=False` skips it where only the shape and
    format are needed (planning, the cost model), so a large file is not read in full for them.
    """
    file = _existing_file(path)
    layout = read_layout(file)
    _check_fits(layout, file)
    meta = layout.metadata
    arch = meta.get("general.architecture")
    if not isinstance(arch, str):
        raise ModelError(f"GGUF file has no general.architecture: {file}")
    types = {t.name: t.type_name for t in layout.tensors}
    linear = [t for t in layout.tensors if LINEAR_RE.match(t.name) and len(t.shape) == 2]
    n_linear = sum(t.n_elements for t in linear)
    name = meta.get("general.name")
    return GGUFModelInfo(
        path=str(file),
        name=name if isinstance(name, str) and name else file.stem,
        architecture=arch,
        format=dominant_type(linear),
        n_params=sum(t.n_elements for t in layout.tensors),
        n_linear_params=n_linear,
        bits_per_weight=sum(t.nbytes for t in linear) * 8 / n_linear if n_linear else 0.0,
        tensor_types=dict(sorted(Counter(types.values()).items())),
        embd_type=types.get("token_embd.weight"),
        output_type=types.get("output.weight"),
        file_bytes=file.stat().st_size,
        sha256=file_sha256(file, hash_cache) if digest else None,
        n_vocab=_n_vocab(meta, arch),
        n_ctx_train=_int_or_none(meta.get(f"{arch}.context_length")),
        spec=_spec(meta, file),
    )


def _check_fits(layout, file: Path) -> None:
    """Refuse a tensor larger than this machine's memory before its data is touched (hashed, mapped, loaded):
    a crafted or sparse file can claim terabytes, and hashing it alone would take half an hour."""
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return  # no way to know here: the loader will say
    for t in layout.tensors:
        if t.nbytes > memory:
            raise ModelError(f"tensor {t.name!r} claims {t.nbytes / 2**30:.1f} GiB, more than this machine's memory "
                             f"({memory / 2**30:.1f} GiB): {file}")


def _existing_file(path: str | os.PathLike[str]) -> Path:
    file = Path(path).expanduser().absolute()
    try:
        found, is_dir = file.exists(), file.is_dir()
    except (OSError, ValueError) as exc:  # e.g. a NUL byte or a name too long for the file system
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ModelError(f"invalid model path ({reason}): {file}") from None
    if not found:
        raise ModelError(f"model file not found: {file}")
    if is_dir:
        raise ModelError(f"model path is a directory, not a GGUF file: {file}")
    if not os.access(file, os.R_OK):
        raise ModelError(f"model file is not readable: {file}")
    return file


def dominant_type(tensors: list[TensorInfo]) -> str:
    """Lowercase GGML type holding >= 90 % of the tensors' elements, "mixed" if none, "none" if empty."""
    counts: Counter[str] = Counter()
    for tensor in tensors:
        counts[tensor.type_name] += tensor.n_elements
    if not counts:
        return "none"
    name, count = counts.most_common(1)[0]
    return name if count >= DOMINANT_SHARE * sum(counts.values()) else "mixed"


def _n_vocab(meta: dict[str, Any], arch: str) -> int | None:
    tokens = meta.get("tokenizer.ggml.tokens")
    if isinstance(tokens, GGUFArray):
        return tokens.length
    return _int_or_none(meta.get(f"{arch}.vocab_size"))


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _spec(meta: dict[str, Any], file: Path) -> dict[str, Any] | None:
    raw = meta.get(SPEC_KEY)
    if raw is None:
        return None
    try:
        spec = json.loads(raw)
    except (TypeError, ValueError):
        spec = None
    if not isinstance(spec, dict):
        raise ModelError(f"corrupt GGUF metadata: {SPEC_KEY} is not a JSON object: {file}")
    return spec


def file_sha256(file: Path, hash_cache: Path | None = None) -> str:
    """sha256 hex digest of file, reusing a cached digest while its path, size and mtime are unchanged."""
    cache_file = hash_cache if hash_cache is not None else cache_dir() / HASH_CACHE_NAME
    stat = file.stat()
    key = f"{file}|{stat.st_size}|{stat.st_mtime_ns}"
    cache = _load_hash_cache(cache_file)
    if key in cache:
        return cache[key]
    digest = _hash_file(file)
    cache[key] = digest
    _save_hash_cache(cache_file, cache)
    return digest


def _hash_file(file: Path) -> str:
    sha = hashlib.sha256()
    with open(file, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def _load_hash_cache(cache_file: Path) -> dict[str, str]:
    try:
        data = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        return {}  # a missing or damaged cache only costs a re-hash
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def _save_hash_cache(cache_file: Path, cache: dict[str, str]) -> None:
    # Newest entries last (dicts keep insertion order); drop the oldest beyond the cap.
    entries = dict(list(cache.items())[-HASH_CACHE_MAX_ENTRIES:])
    temp = cache_file.with_name(f".{cache_file.name}.{os.getpid()}.tmp")
    with contextlib.suppress(OSError):  # a read-only cache folder must not fail read_model_info
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        temp.write_text(json.dumps(entries, indent=0, sort_keys=False))
        os.replace(temp, cache_file)
