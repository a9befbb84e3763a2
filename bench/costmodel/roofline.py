"""Bytes read per token per weight format, the KV cache at a depth, and the decode roofline.

Decode on a CPU is memory-bound: every token reads every block weight, the whole output matrix, one row of
the token embedding and the KV cache so far. So tokens/s <= read bandwidth / bytes per token.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from tritbench.costmodel.arch import Arch
from tritbench.costmodel.errors import CostModelError
from tritbench.plugin import ggml_block

# The GGML types the cost model prices. Their block sizes (weights and bytes per block, ggml's type traits)
# come from gguf's table: Q4_0 18 B / 32 weights, Q8_0 34 B / 32, TQ1_0 54 B / 256, TQ2_0 66 B / 256, ...
GGML_TYPES = ("f32", "f16", "bf16", "q8_0", "q6_k", "q4_k", "q4_0", "tq2_0", "tq1_0")
# Weights per block: the granularity of the per-block scale multiplies.
BLOCK_WEIGHTS: dict[str, int] = {t: ggml_block(t)[0] for t in GGML_TYPES}
BITS_PER_WEIGHT: dict[str, float] = {t: 8 * ggml_block(t)[1] / ggml_block(t)[0] for t in GGML_TYPES}
# The formats the cost tables compare.
FORMATS = ("f16", "q4_0", "tq2_0", "tq1_0")
NORM_BYTES = 4  # norm weights are f32 in GGUF files
KV_TYPES = {"f16": 2.0, "f32": 4.0, "q8_0": 34 / 32}


def bits_per_weight(fmt: str) -> float:
    """Bits per weight of a GGML type name; CostModelError for an unknown one."""
    try:
        return BITS_PER_WEIGHT[fmt.lower()]
    except (KeyError, AttributeError):
        raise CostModelError(f"unknown weight format {fmt!r} (known: {', '.join(BITS_PER_WEIGHT)})") from None


@dataclass(frozen=True)
class TokenBytes:
    """Bytes read to decode one token, by part."""

    linear: float
    output: float
    embd_row: float
    norms: float
    kv: float

    @property
    def weights(self) -> float:
        """Every part but the KV cache."""
        return self.linear + self.output + self.embd_row + self.norms

    @property
    def total(self) -> float:
        return self.weights + self.kv

    def to_dict(self) -> dict[str, float]:
        """Parts and total."""
        return {**asdict(self), "total": self.total}


def kv_bytes(arch: Arch, depth: int, kv_type: str = "f16") -> float:
    """Bytes of the K and V caches holding `depth` tokens (all layers)."""
    if depth < 0:
        raise CostModelError(f"depth must be >= 0, got {depth}")
    if kv_type not in KV_TYPES:
        raise CostModelError(f"unknown KV cache type {kv_type!r} (known: {', '.join(KV_TYPES)})")
    return 2 * arch.layers * arch.kv_dim * depth * KV_TYPES[kv_type]


def bytes_per_token(arch: Arch, fmt: str, depth: int = 0, kv_type: str = "f16") -> TokenBytes:
    """Bytes one decode step reads with `depth` tokens already in the KV cache: all block weights at `fmt`,
    the output matrix at the output type (the embedding's, when tied), one embedding row, the norms, and
    the KV cache (writes of the new K/V entries are not counted)."""
    out_type = arch.embd_type if arch.tied_output else arch.output_type
    return TokenBytes(
        linear=arch.n_linear_params() * bits_per_weight(fmt) / 8,
        output=arch.vocab * arch.hidden * bits_per_weight(out_type) / 8,
        embd_row=arch.hidden * bits_per_weight(arch.embd_type) / 8,
        norms=arch.n_norm_params() * NORM_BYTES,
        kv=kv_bytes(arch, depth, kv_type),
    )


def weights_bytes(arch: Arch, fmt: str) -> float:
    """Model memory: linear weights at `fmt`, embedding and output at their types, f32 norms."""
    embd = arch.n_embd_params() * bits_per_weight(arch.embd_type) / 8
    output = 0.0 if arch.tied_output else arch.n_embd_params() * bits_per_weight(arch.output_type) / 8
    return arch.n_linear_params() * bits_per_weight(fmt) / 8 + embd + output + arch.n_norm_params() * NORM_BYTES


def roofline_tokens_per_s(bandwidth_gbps: float, token_bytes: float) -> float:
    """Upper bound on decode tokens/s: bandwidth (GB/s, 1e9 B/s) / bytes per token."""
    if bandwidth_gbps <= 0 or token_bytes <= 0:
        raise CostModelError(f"bandwidth and bytes per token must be > 0, got {bandwidth_gbps}, {token_bytes}")
    return bandwidth_gbps * 1e9 / token_bytes


def workload_bytes(arch: Arch, fmt: str, n_prompt: int, n_gen: int, depth: int = 0, kv_type: str = "f16") -> float:
    """Least bytes a llama-bench style test must read: a prompt of n_prompt tokens (weights read at least
    once, one embedding row per token, the KV cache of `depth` once) then n_gen decode steps (everything per
    token, the KV cache growing from depth + n_prompt). Dividing by bandwidth gives a lower bound on time."""
    if min(n_prompt, n_gen, depth) < 0:
        raise CostModelError("n_prompt, n_gen and depth must be >= 0")
    total = 0.0
    if n_prompt:
        once = bytes_per_token(arch, fmt, depth, kv_type)
        total += once.total + (n_prompt - 1) * once.embd_row
    if n_gen:
        start = depth + n_prompt
        per = bytes_per_token(arch, fmt, 0, kv_type)
        # KV read by step i holds start + i tokens: the sum over i < n_gen is n_gen * start + n_gen (n_gen-1) / 2.
        kv_tokens = n_gen * start + n_gen * (n_gen - 1) / 2
        total += n_gen * per.weights + kv_bytes(arch, 1, kv_type) * kv_tokens
    return total
