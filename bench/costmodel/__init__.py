"""Cost model of ternary (1.58-bit) LLMs against FP16 and 4-bit: energy per operation, operation counts,
the BitNet papers' energy model as published, our fuller model (LM head, sparsity, data movement), bytes
per token and the decode roofline, and the join with measured records.

Everything here is a pure function of its inputs except `adapters` (reads GGUF files).
"""

from tritbench.costmodel.arch import PAPER_SEQ, PROJECTIONS, Arch, from_gguf_info, from_spec
from tritbench.costmodel.counts import (
    MatmulOps,
    SequenceOps,
    TokenOps,
    bitlinear_ops,
    matmul_ops,
    sequence_ops,
    token_ops,
)
from tritbench.costmodel.energy import EnergyTable, energy_table, per_op_ratio
from tritbench.costmodel.full import TokenEnergy, WorkloadEnergy, matmul_arith_j, token_energy, workload_energy
from tritbench.costmodel.join import COST_COLUMNS, join_results
from tritbench.costmodel.paper import PaperEnergy, paper_energy, paper_ratios
from tritbench.costmodel.roofline import (
    BITS_PER_WEIGHT,
    FORMATS,
    TokenBytes,
    bits_per_weight,
    bytes_per_token,
    kv_bytes,
    roofline_tokens_per_s,
    weights_bytes,
    workload_bytes,
)
from tritbench.costmodel.summary import cost_report, format_rows, projection_rows

__all__ = [
    "BITS_PER_WEIGHT", "COST_COLUMNS", "FORMATS", "PAPER_SEQ", "PROJECTIONS", "Arch", "EnergyTable", "MatmulOps",
    "PaperEnergy", "SequenceOps", "TokenBytes", "TokenEnergy", "TokenOps", "WorkloadEnergy", "bitlinear_ops",
    "bits_per_weight", "bytes_per_token", "cost_report", "energy_table", "format_rows", "from_gguf_info",
    "from_spec", "join_results", "kv_bytes", "matmul_arith_j", "matmul_ops", "paper_energy", "paper_ratios",
    "per_op_ratio", "projection_rows", "roofline_tokens_per_s", "sequence_ops", "token_energy", "token_ops",
    "weights_bytes", "workload_bytes", "workload_energy",
]
