"""Join the cost model with measured records (a DataFrame from tritbench.load_results): each case's roofline
bound, its % of that bound, and modelled versus measured energy where a measurement exists.

Added columns (None where unknown, with `cost.note` saying why):
- `cost.bandwidth_gbps`, `cost.bandwidth_source`: the record's own `metrics.read_bandwidth.gbps` when
  present ("record"), else the `bandwidth_gbps` argument ("argument");
- `cost.bytes_per_token`: least bytes read per token processed (roofline.workload_bytes / tokens);
- `cost.roofline_tokens_per_s`: bandwidth / bytes per token, the memory-bound ceiling of the case;
- `cost.pct_of_roofline`: 100 x `metrics.tokens_per_s.median` / the ceiling;
- `cost.modelled_arith_j_per_token`, `cost.modelled_memory_j_per_token`, `cost.modelled_j_per_token`: our model;
- `cost.paper_j_per_token`: the papers' model (512-token sequence / 512) for f16 and ternary formats;
- `cost.measured_j_per_token`, `cost.measured_over_modelled`: only where `metrics.energy.source` starts
  with `measured:` and `metrics.energy.joules` is set. J/token is `metrics.energy.joules_per_token` when the
  record has it, else joules / (window_s x measured tokens/s), i.e. mean power / throughput;
- `cost.measured_net_j_per_token`, `cost.net_over_modelled`: the same above the idle baseline
  (`metrics.energy.net_joules_per_token`), the closer match to a model that has no static power.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from tritbench.costmodel.arch import Arch, from_spec
from tritbench.costmodel.energy import EnergyTable, energy_table
from tritbench.costmodel.full import workload_energy
from tritbench.costmodel.paper import paper_energy
from tritbench.costmodel.roofline import BITS_PER_WEIGHT, workload_bytes

COST_COLUMNS = (
    "cost.bandwidth_gbps", "cost.bandwidth_source", "cost.bytes_per_token", "cost.roofline_tokens_per_s",
    "cost.pct_of_roofline", "cost.modelled_arith_j_per_token", "cost.modelled_memory_j_per_token",
    "cost.modelled_j_per_token", "cost.paper_j_per_token", "cost.measured_j_per_token",
    "cost.measured_over_modelled", "cost.measured_net_j_per_token", "cost.net_over_modelled", "cost.note",
)


def join_results(df: pd.DataFrame, bandwidth_gbps: float | None = None, table: EnergyTable | None = None,
                 zero_fraction: float | Mapping[str, float] | None = None) -> pd.DataFrame:
    """A copy of `df` with the COST_COLUMNS added. `zero_fraction` (for ternary formats' skipped adds) is one
    value for all rows or a mapping from `model.path` to the measured fraction of that file."""
    table = table or energy_table()
    out = df.copy()
    costs = [case_cost(rec, bandwidth_gbps, table, zero_fraction) for rec in df.to_dict("records")]
    for col in COST_COLUMNS:
        out[col] = pd.Series([c.get(col) for c in costs], index=out.index, dtype=object)
    return out


def _get(rec: Mapping[str, Any], key: str) -> Any:
    value = rec.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def _nested(rec: Mapping[str, Any], prefix: str) -> dict[str, Any] | None:
    """The dict a flattened prefix stood for (`model.spec.hidden` ... -> {'hidden': ...}), or the unflattened one."""
    whole = _get(rec, prefix)
    if isinstance(whole, dict):
        return whole
    found = {k[len(prefix) + 1:]: v for k, v in rec.items() if k.startswith(prefix + ".")}
    # A column with a missing value in another row turns pandas' ints into floats: turn them back.
    return {k: int(v) if isinstance(v, float) and v.is_integer() else v
            for k, v in found.items() if not (isinstance(v, float) and math.isnan(v))} or None


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


def record_arch(rec: Mapping[str, Any]) -> Arch | None:
    """The Arch of a record's model from its `model.spec` (synthetic models), None when it has none."""
    spec = _nested(rec, "model.spec")
    if not spec:
        return None
    from tritbench.models import ModelError, ModelSpec

    try:
        arch = from_spec(ModelSpec.from_dict(spec))
    except ModelError:
        return None
    embd = _get(rec, "model.embd_type") or arch.embd_type
    output = _get(rec, "model.output_type")
    return arch.replace(embd_type=embd, output_type=output or embd, tied_output=arch.tied_output or output is None)


def _bandwidth(rec: Mapping[str, Any], fallback: float | None) -> tuple[float | None, str | None]:
    gbps = _get(rec, "metrics.read_bandwidth.gbps")
    if gbps:
        return float(gbps), "record"
    if fallback:
        return float(fallback), "argument"
    return None, None


def case_cost(rec: Mapping[str, Any], bandwidth_gbps: float | None, table: EnergyTable,
              zero_fraction: float | Mapping[str, float] | None = None) -> dict[str, Any]:
    """The cost columns of one flattened record."""
    out: dict[str, Any] = {}
    notes: list[str] = []
    if _get(rec, "status") not in (None, "ok"):
        return {"cost.note": "case failed"}
    gbps, source = _bandwidth(rec, bandwidth_gbps)
    out["cost.bandwidth_gbps"], out["cost.bandwidth_source"] = gbps, source
    measured_tps = _get(rec, "metrics.tokens_per_s.median")
    kind = _get(rec, "workload.kind")
    fmt = str(_get(rec, "model.format") or "").lower()
    z = zero_fraction.get(str(_get(rec, "model.path"))) if isinstance(zero_fraction, Mapping) else zero_fraction

    if kind in ("gemv", "gemm"):
        weight_bytes, rows = _get(rec, "model.file_bytes"), _int(_get(rec, "workload.M")) or 1
        if weight_bytes:
            out["cost.bytes_per_token"] = weight_bytes / rows
        notes.append("kernel case: roofline only")
    elif kind in ("pp", "tg", "pg"):
        n_prompt, n_gen = _int(_get(rec, "workload.n_prompt")), _int(_get(rec, "workload.n_gen"))
        depth = _int(_get(rec, "workload.depth"))
        arch = record_arch(rec)
        if arch is None:
            notes.append("no model.spec in the record: architecture unknown")
        elif fmt not in BITS_PER_WEIGHT:
            notes.append(f"format {fmt or '?'} has no bits/weight in the cost model")
        else:
            n = n_prompt + n_gen
            out["cost.bytes_per_token"] = workload_bytes(arch, fmt, n_prompt, n_gen, depth) / n
            e = workload_energy(arch, fmt, table, n_prompt, n_gen, depth, z)
            out["cost.modelled_arith_j_per_token"] = e.arith_j_per_token
            out["cost.modelled_memory_j_per_token"] = e.memory_j_per_token
            out["cost.modelled_j_per_token"] = e.total_j_per_token
            out["cost.paper_j_per_token"] = paper_energy(arch, table).per_token(fmt)
    else:
        notes.append(f"unknown workload kind {kind!r}")

    nbytes = out.get("cost.bytes_per_token")
    if nbytes and gbps:
        bound = gbps * 1e9 / nbytes
        out["cost.roofline_tokens_per_s"] = bound
        out["cost.pct_of_roofline"] = 100.0 * measured_tps / bound if measured_tps else None
    elif nbytes:
        notes.append("no read bandwidth: in the record or given")

    measured = measured_j_per_token(rec, measured_tps)
    net = _get(rec, "metrics.energy.net_joules_per_token") if measured is not None else None
    modelled = out.get("cost.modelled_j_per_token")
    out["cost.measured_j_per_token"] = measured
    out["cost.measured_over_modelled"] = measured / modelled if measured and modelled else None
    out["cost.measured_net_j_per_token"] = net
    out["cost.net_over_modelled"] = net / modelled if net is not None and modelled else None
    if measured is None:
        notes.append("no measured energy")
    out["cost.note"] = "; ".join(notes) or None
    return out


def measured_j_per_token(rec: Mapping[str, Any], tokens_per_s: float | None) -> float | None:
    """Measured joules per token of a record, or None when its energy is not a measurement."""
    source = _get(rec, "metrics.energy.source")
    joules = _get(rec, "metrics.energy.joules")
    if not isinstance(source, str) or not source.startswith("measured:") or joules is None:
        return None
    per_token = _get(rec, "metrics.energy.joules_per_token")
    if per_token is not None:
        return float(per_token)
    window = _get(rec, "metrics.energy.window_s")
    if window and tokens_per_s:
        return float(joules) / (float(window) * float(tokens_per_s))
    return None
