"""Operation counts of a transformer from its shape: per sequence (the BitNet papers' model) and per token.

The BitNet paper (arXiv 2310.11453, Sec. 2.3) counts, for an m x n by n x p matrix product,
m (n - 1) p additions and m n p multiplications at full precision; a BitLinear layer keeps the additions
(at INT8 cost) and replaces the multiplications by the rescaling of its inputs and outputs, m p + m n.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from tritbench.costmodel.arch import Arch
from tritbench.costmodel.errors import CostModelError


@dataclass(frozen=True)
class MatmulOps:
    """Additions and multiplications of one matrix product."""

    adds: int
    muls: int


def matmul_ops(m: int, n: int, p: int) -> MatmulOps:
    """Full-precision (m x n) @ (n x p): m (n-1) p additions, m n p multiplications."""
    _check_dims(m, n, p)
    return MatmulOps(adds=m * (n - 1) * p, muls=m * n * p)


def bitlinear_ops(m: int, n: int, p: int) -> MatmulOps:
    """BitLinear (m x n) @ (n x p) with ternary weights: m (n-1) p additions, m p + m n rescaling multiplies."""
    _check_dims(m, n, p)
    return MatmulOps(adds=m * (n - 1) * p, muls=m * p + m * n)


def _check_dims(*dims: int) -> None:
    if any(d < 1 for d in dims):
        raise CostModelError(f"matrix dimensions must be >= 1, got {dims}")


@dataclass(frozen=True)
class SequenceOps:
    """The papers' counts over a whole sequence of `seq` tokens, summed over all blocks.

    `linear_*` are the block linear layers at full precision; `bitlinear_*` the same layers as BitLinear
    (same additions, rescaling multiplies only); `attention_*` the two score matmuls Q K^T and A V over the
    full seq x seq score matrix, which both models run at full precision.
    """

    seq: int
    linear_adds: int
    linear_muls: int
    bitlinear_adds: int
    bitlinear_muls: int
    attention_adds: int
    attention_muls: int

    def to_dict(self) -> dict[str, int]:
        """Plain dict."""
        return asdict(self)


def sequence_ops(arch: Arch, seq: int | None = None) -> SequenceOps:
    """Counts for one forward pass over `seq` tokens (default arch.seq), as the BitNet papers count them."""
    s = arch.seq if seq is None else seq
    if s < 1:
        raise CostModelError(f"sequence length must be >= 1, got {s}")
    lin_a = lin_m = bit_a = bit_m = 0
    for n_in, n_out in arch.linear_layers().values():
        full, bit = matmul_ops(s, n_in, n_out), bitlinear_ops(s, n_in, n_out)
        lin_a, lin_m = lin_a + full.adds, lin_m + full.muls
        bit_a, bit_m = bit_a + bit.adds, bit_m + bit.muls
    scores = matmul_ops(s, arch.head_dim, s)  # Q K^T, one head
    mix = matmul_ops(s, s, arch.head_dim)  # A V, one head
    heads = arch.heads
    L = arch.layers
    return SequenceOps(
        seq=s,
        linear_adds=L * lin_a, linear_muls=L * lin_m,
        bitlinear_adds=L * bit_a, bitlinear_muls=L * bit_m,
        attention_adds=L * heads * (scores.adds + mix.adds),
        attention_muls=L * heads * (scores.muls + mix.muls),
    )


@dataclass(frozen=True)
class TokenOps:
    """Per-token work when a token attends to `ctx` positions (decode at that depth).

    `linear_macs`: one multiply-accumulate per block linear weight. `linear_in`/`linear_out`: summed in and
    out features of the block linear layers (one activation quantization per input element, one rescale per
    output). `attention_macs`: Q K^T and A V over ctx positions. `lm_head_macs`: vocab x hidden.
    """

    ctx: int
    linear_macs: int
    linear_in: int
    linear_out: int
    attention_macs: int
    lm_head_macs: int

    def to_dict(self) -> dict[str, int]:
        """Plain dict."""
        return asdict(self)


def token_ops(arch: Arch, ctx: int | None = None) -> TokenOps:
    """Counts for one token at context `ctx` (default arch.seq)."""
    c = arch.seq if ctx is None else ctx
    if c < 0:
        raise CostModelError(f"context length must be >= 0, got {c}")
    shapes = arch.linear_layers().values()
    return TokenOps(
        ctx=c,
        linear_macs=arch.n_linear_params(),
        linear_in=arch.layers * sum(i for i, _ in shapes),
        linear_out=arch.layers * sum(o for _, o in shapes),
        attention_macs=arch.layers * 2 * arch.q_dim * c,
        lm_head_macs=arch.vocab * arch.hidden,
    )
