"""The figures `bench cost` shows, as plain dicts: per format for one architecture, and projections for
the papers' model sizes. Pure: bandwidths are passed in, nothing is measured or read here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tritbench.costmodel.arch import PROJECTIONS, Arch
from tritbench.costmodel.energy import EnergyTable, per_op_ratio
from tritbench.costmodel.full import token_energy
from tritbench.costmodel.paper import PaperEnergy, paper_energy
from tritbench.costmodel.roofline import FORMATS, bits_per_weight, bytes_per_token, roofline_tokens_per_s, weights_bytes
from tritbench.plugin import is_ternary


def format_rows(arch: Arch, table: EnergyTable, bandwidths: Mapping[str, float | None],
                zero_fraction: float | None = None, formats: Iterable[str] = FORMATS,
                paper: PaperEnergy | None = None) -> list[dict]:
    """One row per format: bits/weight, memory, bytes/token at depth arch.seq, roofline t/s per bandwidth
    (None where that bandwidth is unknown), the papers' and our energy per token, and ratios vs f16."""
    paper = paper or paper_energy(arch, table)
    rows = []
    for fmt in formats:
        energy = token_energy(arch, fmt, table, arch.seq, zero_fraction)
        tb = bytes_per_token(arch, fmt, arch.seq)
        rows.append({
            "format": fmt,
            "bits_per_weight": bits_per_weight(fmt),
            "memory_bytes": weights_bytes(arch, fmt),
            "bytes_per_token": tb.total,
            "bytes_parts": tb.to_dict(),
            "roofline_tokens_per_s": {
                label: (roofline_tokens_per_s(gbps, tb.total) if gbps else None) for label, gbps in bandwidths.items()
            },
            "paper_j_per_token": paper.per_token(fmt),
            "arith_j_per_token": energy.arith_j,
            "memory_j_per_token": energy.memory_j,
            "total_j_per_token": energy.total_j,
            "arith_parts": dict(energy.arith_parts),
            "zero_fraction": zero_fraction if is_ternary(fmt) else None,
        })
    base = token_energy(arch, "f16", table, arch.seq)
    for r in rows:
        # How many times less energy than f16 (> 1 is a saving).
        r["arith_vs_fp16"] = base.arith_j / r["arith_j_per_token"]
        r["total_vs_fp16"] = base.total_j / r["total_j_per_token"]
    return rows


def projection_rows(table: EnergyTable, bandwidths: Mapping[str, float | None],
                    archs: Mapping[str, Arch] = PROJECTIONS, formats: Iterable[str] = FORMATS) -> list[dict]:
    """format_rows for each of the papers' model sizes (no weights exist: zeros are counted as adds)."""
    formats = tuple(formats)
    out = []
    for name, arch in archs.items():
        for row in format_rows(arch, table, bandwidths, None, formats):
            out.append({"size": name, "n_params": arch.n_params(), "source": arch.source, **row})
    return out


def cost_report(arch: Arch, table: EnergyTable, bandwidths: Mapping[str, float | None],
                zero_fraction: float | None = None, zero_source: str | None = None,
                projections: bool = True) -> dict:
    """Everything `bench cost` reports for one architecture, JSON-safe.

    `paper` holds the papers' model for the whole `arch.seq`-token sequence (fp16_joules, ternary_joules,
    ratio); `formats` our model per token; `projections` the papers' sizes.
    """
    paper = paper_energy(arch, table)
    report = {
        "arch": arch.to_dict(),
        "node": table.node,
        "energy_table": table.to_dict(),
        "per_op_ratio": per_op_ratio(table),
        "bandwidth_gbps": dict(bandwidths),
        "sparsity": {"zero_fraction": zero_fraction,
                     "source": zero_source or "none: no weights, zeros counted as adds"},
        "paper": paper.to_dict(),
        "formats": format_rows(arch, table, bandwidths, zero_fraction, paper=paper),
    }
    if projections:
        report["projections"] = projection_rows(table, bandwidths)
    return report
