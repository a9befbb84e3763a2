"""ModelSpec: the shape and seed of a synthetic ternary model, validated up front."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, NamedTuple

from .errors import ModelError

ARCHS = ("llama", "bitnet")
EMBD_TYPES = ("f16", "f32", "q8_0")
# Bump whenever synth.py would write different bytes for the same spec: it is part of spec_hash, so
# stale cached files are never reused.
GENERATOR_VERSION = 1
# <unk>, <s>, </s> and the 256 byte tokens, plus a few pieces so plain text does not fall back to bytes.
N_SPECIAL_TOKENS = 3 + 256
MIN_VOCAB = N_SPECIAL_TOKENS + 5
# Ternary blocks (TQ1_0/TQ2_0) hold 256 weights along a row, so every linear in-dimension must be a multiple.
LINEAR_ALIGN = 256
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_INT_FIELDS = ("hidden", "layers", "ffn", "heads", "kv_heads", "vocab", "n_ctx")
MAX_GGUF_UINT = 2**32 - 1  # GGUF metadata stores each of _INT_FIELDS as a uint32


class Linear(NamedTuple):
    """One linear layer's weight shape, its order in the names (the source of many a transposition bug)."""

    in_features: int
    out_features: int

    @property
    def rows_cols(self) -> tuple[int, int]:
        """(out_features, in_features): the weight matrix as GGUF and numpy store it, row-major."""
        return self.out_features, self.in_features


def linear_layers(hidden: int, q_dim: int, kv_dim: int, ffn: int, gated: bool = True) -> dict[str, Linear]:
    """One LLaMA-style block's linear layers by GGUF tensor suffix: attention Q, K, V and output, then the
    FFN (gate, up, down; no gate for a plain up/down FFN). The one definition the synthesis, the kernel
    workloads and the cost model share."""
    layers = {"attn_q": Linear(hidden, q_dim), "attn_k": Linear(hidden, kv_dim), "attn_v": Linear(hidden, kv_dim),
              "attn_output": Linear(q_dim, hidden)}
    if gated:
        layers["ffn_gate"] = Linear(hidden, ffn)
    layers |= {"ffn_up": Linear(hidden, ffn), "ffn_down": Linear(ffn, hidden)}
    return layers


@dataclass(frozen=True)
class ModelSpec:
    """Dimensions, architecture and seed of a synthetic model; everything synthesize() needs.

    arch "llama" has an untied output matrix; arch "bitnet" (llama.cpp's BitNet b1.58 graph) adds the
    attn/ffn sub-norms and ties the output to the token embedding.
    """

    name: str
    arch: str
    hidden: int
    layers: int
    ffn: int
    heads: int
    kv_heads: int
    vocab: int
    n_ctx: int
    seed: int
    embd_type: str = "f16"
    output_type: str = "f16"
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        problem = _first_problem(self)
        if problem:
            raise ModelError(f"invalid model spec '{self.name}': {problem}")

    @property
    def head_dim(self) -> int:
        """Size of one attention head (hidden / heads)."""
        return self.hidden // self.heads

    @property
    def kv_dim(self) -> int:
        """Output size of the K and V projections (kv_heads * head_dim)."""
        return self.kv_heads * self.head_dim

    @property
    def tied_output(self) -> bool:
        """True when the output projection reuses token_embd (bitnet), so no output tensor is written."""
        return self.arch == "bitnet"

    def linear_layers(self) -> dict[str, Linear]:
        """Per-block linear weights as {suffix: Linear(in_features, out_features)}, in file order."""
        return linear_layers(self.hidden, self.hidden, self.kv_dim, self.ffn, gated=True)

    def norm_shapes(self) -> dict[str, int]:
        """Per-block norm weights as {suffix: length}."""
        norms = {"attn_norm": self.hidden, "ffn_norm": self.hidden}
        if self.arch == "bitnet":
            norms |= {"attn_sub_norm": self.hidden, "ffn_sub_norm": self.ffn}
        return norms

    def n_linear_params(self) -> int:
        """Elements in the blocks' linear weights (the tensors that get quantized)."""
        per_block = sum(layer.in_features * layer.out_features for layer in self.linear_layers().values())
        return self.layers * per_block

    def n_params(self) -> int:
        """Exact element count of every tensor synthesize() writes, norms included."""
        embd = self.vocab * self.hidden
        output = 0 if self.tied_output else embd
        norms = self.layers * sum(self.norm_shapes().values()) + self.hidden
        return embd + output + norms + self.n_linear_params()

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of all fields (JSON-safe)."""
        return dataclasses.asdict(self)

    def spec_hash(self) -> str:
        """Stable 12-hex-digit digest of every field that changes the synthesized file's bytes."""
        payload = {"generator": GENERATOR_VERSION, **self.to_dict()}
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        """Rebuild a spec from to_dict() output; ModelError if fields are missing or unknown."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelError(f"invalid model spec: unknown fields {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ModelError(f"invalid model spec: {exc}") from None


def _first_problem(spec: ModelSpec) -> str | None:
    """The first thing wrong with spec, or None; checks run in an order where each may rely on the last."""
    checks = (_check_identity, _check_ints, _check_alignment, _check_heads, _check_vocab, _check_types)
    for check in checks:
        problem = check(spec)
        if problem:
            return problem
    return None


def _check_identity(spec: ModelSpec) -> str | None:
    if not isinstance(spec.name, str) or not _NAME_RE.match(spec.name):
        return f"name {spec.name!r} must be letters, digits, '.', '_' or '-' (it becomes a file name)"
    if spec.arch not in ARCHS:
        return f"unknown arch {spec.arch!r} (known: {', '.join(ARCHS)})"
    if not _is_int(spec.seed) or spec.seed < 0:
        return f"seed ({spec.seed!r}) must be a non-negative integer"
    return None


def _check_ints(spec: ModelSpec) -> str | None:
    for field in _INT_FIELDS:
        value = getattr(spec, field)
        if not _is_int(value) or value <= 0:
            return f"{field} ({value!r}) must be a positive integer"
        if value > MAX_GGUF_UINT:
            return f"{field} ({value}) must be at most {MAX_GGUF_UINT} (GGUF stores it as a uint32)"
    if not isinstance(spec.norm_eps, (int, float)) or isinstance(spec.norm_eps, bool) or spec.norm_eps <= 0:
        return f"norm_eps ({spec.norm_eps!r}) must be a positive number"
    return None


def _check_alignment(spec: ModelSpec) -> str | None:
    for field in ("hidden", "ffn"):
        value = getattr(spec, field)
        if value % LINEAR_ALIGN:
            return f"{field} ({value}) must be a multiple of {LINEAR_ALIGN} (ternary block size)"
    return None


def _check_heads(spec: ModelSpec) -> str | None:
    if spec.hidden % spec.heads:
        return f"hidden ({spec.hidden}) must be divisible by heads ({spec.heads})"
    if spec.heads % spec.kv_heads:
        return f"heads ({spec.heads}) must be divisible by kv_heads ({spec.kv_heads})"
    if spec.head_dim % 2:
        return f"head_dim ({spec.head_dim}) must be even (RoPE rotates pairs)"
    return None


def _check_vocab(spec: ModelSpec) -> str | None:
    if spec.vocab < MIN_VOCAB:
        return f"vocab ({spec.vocab}) must be at least {MIN_VOCAB} (3 special + 256 byte tokens + pieces)"
    return None


def _check_types(spec: ModelSpec) -> str | None:
    for field in ("embd_type", "output_type"):
        value = getattr(spec, field)
        if value not in EMBD_TYPES:
            return f"{field} {value!r} not supported (known: {', '.join(EMBD_TYPES)})"
    return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
