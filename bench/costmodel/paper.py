"""The BitNet papers' energy model, exactly as published (arXiv 2310.11453 Sec. 2.3 / Table 3; used for
arXiv 2402.17764 Figure 3 and the 2B4T report's energy estimate).

Counted, for one forward pass over a 512-token input: every block linear layer (FP16 multiply + add for the
baseline; INT8 add for the ternary model, zero weights still counted as adds), the BitLinear rescaling
multiplies (m p + m n per layer, at FP16 cost), and the attention matmuls Q K^T and A V over the full
512 x 512 score matrix at FP16 cost in BOTH models. Not counted: embeddings, LM head, norms, softmax,
activations and all memory traffic. Figures are for the whole sequence, not per token.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tritbench.costmodel.arch import Arch
from tritbench.costmodel.counts import sequence_ops
from tritbench.costmodel.energy import EnergyTable
from tritbench.plugin import is_ternary


@dataclass(frozen=True)
class PaperEnergy:
    """Arithmetic energy of one `seq`-token forward pass, FP16 baseline vs BitNet b1.58, in joules."""

    arch: str
    node: str
    seq: int
    fp16_parts: Mapping[str, float]
    ternary_parts: Mapping[str, float]

    @property
    def fp16_joules(self) -> float:
        return sum(self.fp16_parts.values())

    @property
    def ternary_joules(self) -> float:
        return sum(self.ternary_parts.values())

    @property
    def ratio(self) -> float:
        """How many times less arithmetic energy the ternary model spends (the papers' 'x' figures)."""
        return self.fp16_joules / self.ternary_joules

    def per_token(self, fmt: str) -> float | None:
        """Joules per token for a format: f16 -> the baseline, ternary formats -> BitNet, others None."""
        if fmt in ("f16", "bf16"):
            return self.fp16_joules / self.seq
        if is_ternary(fmt):
            return self.ternary_joules / self.seq
        return None

    def to_dict(self) -> dict:
        """JSON-safe dict: the totals, the ratio and both breakdowns."""
        return {
            "arch": self.arch, "node": self.node, "seq": self.seq,
            "fp16_joules": self.fp16_joules, "ternary_joules": self.ternary_joules, "ratio": self.ratio,
            "fp16_parts": dict(self.fp16_parts), "ternary_parts": dict(self.ternary_parts),
        }


def paper_energy(arch: Arch, table: EnergyTable, seq: int | None = None) -> PaperEnergy:
    """The papers' model for `arch` over `seq` tokens (default arch.seq, 512 for the papers' figures)."""
    ops = sequence_ops(arch, seq)
    fp16_mul, fp16_add, int8_add = table.op("fp16_mul"), table.op("fp16_add"), table.op("int8_add")
    attention = {"attention_mul": ops.attention_muls * fp16_mul, "attention_add": ops.attention_adds * fp16_add}
    fp16 = {"linear_mul": ops.linear_muls * fp16_mul, "linear_add": ops.linear_adds * fp16_add, **attention}
    ternary = {
        "linear_add": ops.bitlinear_adds * int8_add,
        "rescale_mul": ops.bitlinear_muls * fp16_mul,
        **attention,
    }
    return PaperEnergy(arch=arch.name, node=table.node, seq=ops.seq, fp16_parts=fp16, ternary_parts=ternary)


def paper_ratios(archs: Mapping[str, Arch], table: EnergyTable) -> dict[str, float]:
    """End-to-end FP16/ternary arithmetic-energy ratio per model size (the b1.58 paper's Figure 3, right)."""
    return {name: paper_energy(a, table).ratio for name, a in archs.items()}
