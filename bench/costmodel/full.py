"""Our fuller energy model, per token, beside the papers': what the papers leave out, reported separately.

Arithmetic (joules per token, at the table's node):
- block linear layers at each format's own arithmetic: FP16 multiply-accumulate for f16; INT8 multiply +
  INT8 add for the integer block formats (q8_0, q4_0, ...: llama.cpp multiplies their codes by 8-bit
  activations); one INT8 add per NONZERO weight for ternary formats (an adder datapath skips zeros, so the
  measured zero fraction of the actual weights removes that share of the adds). The papers' convention of an
  INT8 add for integer accumulation is kept so the two models stay comparable;
- per-block scale work of block formats: two FP32 multiplies and one FP32 add per block of weights;
- activation quantization of block formats: one FP32 multiply per input element of each linear layer;
- attention Q K^T and A V over the context at FP16 multiply-accumulate (as in the papers);
- the LM head (vocab x hidden) at the output type's arithmetic; the embedding lookup is a read, no arithmetic.
Not counted: norms, softmax, RoPE, activations (a few ops per element of hidden/ffn, well under 1 %).

Data movement (joules per token): bytes read per token (roofline.bytes_per_token) x energy per byte of the
memory levels in the table's mix. Arithmetic and data movement are kept apart so both are visible.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tritbench.costmodel.arch import Arch
from tritbench.costmodel.counts import token_ops
from tritbench.costmodel.energy import EnergyTable
from tritbench.costmodel.errors import CostModelError
from tritbench.costmodel.roofline import BLOCK_WEIGHTS, bits_per_weight, bytes_per_token, workload_bytes
from tritbench.plugin import is_ternary

FLOAT_FORMATS = {"f32": "fp32", "f16": "fp16", "bf16": "fp16"}


def _check_zero_fraction(z: float | None) -> None:
    if z is not None and not 0.0 <= z <= 1.0:
        raise CostModelError(f"zero fraction must be within [0, 1], got {z}")


def matmul_arith_j(macs: float, n_in: float, fmt: str, table: EnergyTable, zero_fraction: float | None = None
                   ) -> dict[str, float]:
    """Arithmetic joules of `macs` weight x activation products (with `n_in` input elements) at `fmt`.

    Parts: `mac` (multiply-accumulates, or adds for ternary), `block_scales`, `act_quant`. Zeros are skipped
    only for ternary formats and only when a zero fraction is given.
    """
    bits_per_weight(fmt)  # rejects unknown formats
    _check_zero_fraction(zero_fraction)
    fmt = fmt.lower()
    if fmt in FLOAT_FORMATS:
        return {"mac": macs * table.mac_j(FLOAT_FORMATS[fmt]), "block_scales": 0.0, "act_quant": 0.0}
    block_cost = 2 * table.op("fp32_mul") + table.op("fp32_add")
    overhead = {"block_scales": macs / BLOCK_WEIGHTS[fmt] * block_cost, "act_quant": n_in * table.op("fp32_mul")}
    if is_ternary(fmt):
        nonzero = 1.0 - (zero_fraction or 0.0)
        return {"mac": macs * nonzero * table.op("int8_add"), **overhead}
    return {"mac": macs * table.mac_j("int8"), **overhead}


@dataclass(frozen=True)
class TokenEnergy:
    """Energy of one token of our model, in joules: arithmetic by part and data movement."""

    fmt: str
    node: str
    ctx: int
    arith_parts: dict[str, float]
    memory_bytes: float
    memory_j: float
    zero_fraction: float | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def arith_j(self) -> float:
        return sum(self.arith_parts.values())

    @property
    def total_j(self) -> float:
        """Arithmetic plus data movement."""
        return self.arith_j + self.memory_j

    def to_dict(self) -> dict:
        """JSON-safe dict."""
        return {
            "format": self.fmt, "node": self.node, "ctx": self.ctx, "zero_fraction": self.zero_fraction,
            "arith_joules": self.arith_j, "memory_joules": self.memory_j, "total_joules": self.total_j,
            "memory_bytes": self.memory_bytes, "arith_parts": dict(self.arith_parts),
        }


def token_arith_parts(arch: Arch, fmt: str, table: EnergyTable, ctx: float,
                      zero_fraction: float | None = None) -> dict[str, float]:
    """Arithmetic joules of one token attending to `ctx` positions, by part."""
    ops = token_ops(arch, 0)
    linear = matmul_arith_j(ops.linear_macs, ops.linear_in, fmt, table, zero_fraction)
    out_type = arch.embd_type if arch.tied_output else arch.output_type
    head = matmul_arith_j(ops.lm_head_macs, arch.hidden, out_type, table)
    attention_macs = arch.layers * 2 * arch.q_dim * ctx
    return {
        "linear": linear["mac"],
        "block_scales": linear["block_scales"] + head["block_scales"],
        "act_quant": linear["act_quant"] + head["act_quant"],
        "attention": attention_macs * table.mac_j("fp16"),
        "lm_head": head["mac"],
    }


def token_energy(arch: Arch, fmt: str, table: EnergyTable, ctx: int | None = None,
                 zero_fraction: float | None = None, kv_type: str = "f16") -> TokenEnergy:
    """Our model for one decode step at context `ctx` (default arch.seq): arithmetic and data movement."""
    c = arch.seq if ctx is None else ctx
    nbytes = bytes_per_token(arch, fmt, c, kv_type).total
    return TokenEnergy(
        fmt=fmt, node=table.node, ctx=c,
        arith_parts=token_arith_parts(arch, fmt, table, c, zero_fraction),
        memory_bytes=nbytes, memory_j=nbytes * table.joules_per_byte(), zero_fraction=zero_fraction,
    )


@dataclass(frozen=True)
class WorkloadEnergy:
    """Our model over a llama-bench style test, per token processed (prompt and generated)."""

    arith_j_per_token: float
    memory_j_per_token: float
    bytes_per_token: float

    @property
    def total_j_per_token(self) -> float:
        return self.arith_j_per_token + self.memory_j_per_token


def workload_energy(arch: Arch, fmt: str, table: EnergyTable, n_prompt: int, n_gen: int, depth: int = 0,
                    zero_fraction: float | None = None, kv_type: str = "f16") -> WorkloadEnergy:
    """Our model for a pp/tg/pg test: attention at each token's own context (its arithmetic is linear in
    the context, so the mean context gives the exact sum), bytes as roofline.workload_bytes."""
    n = n_prompt + n_gen
    if n < 1:
        raise CostModelError("a test needs at least one prompt or generated token")
    # Prompt token i attends depth + i + 1 positions; generated token j attends depth + n_prompt + j.
    ctx_sum = n_prompt * depth + n_prompt * (n_prompt + 1) / 2 + n_gen * (depth + n_prompt) + n_gen * (n_gen - 1) / 2
    arith = sum(token_arith_parts(arch, fmt, table, ctx_sum / n, zero_fraction).values())
    nbytes = workload_bytes(arch, fmt, n_prompt, n_gen, depth, kv_type) / n
    return WorkloadEnergy(arith_j_per_token=arith, memory_j_per_token=nbytes * table.joules_per_byte(),
                          bytes_per_token=nbytes)
