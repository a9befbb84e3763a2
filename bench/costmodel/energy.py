"""Energy per arithmetic operation and per byte moved, as data with sources, and a TOML override.

Arithmetic (pJ per operation): BitNet (Wang et al. 2023, arXiv 2310.11453, Table 2), which takes the
45 nm column from Horowitz ("Computing's energy problem", ISSCC 2014) and the 7 nm column from PokeBNN
(Zhang et al., CVPR 2022). The BitNet b1.58 papers (arXiv 2402.17764 and later) use the same table.

Memory (pJ per byte): Horowitz ISSCC 2014 (45 nm): a 64-bit access costs 10 pJ from an 8 KB cache, 20 pJ
from 32 KB, 100 pJ from 1 MB, and 1.3-2.6 nJ from DRAM (20-40 pJ per bit). Divided by 8 bytes here, with
DRAM at the low end (20 pJ/bit = 160 pJ/byte) so the data-movement term is not overstated. No 7 nm memory
figures are tabulated in these sources; DRAM access energy is dominated by the DRAM and its interface,
not the logic node, so the same per-byte figures are used at both nodes unless a TOML table overrides them.

A user's TOML text can override any figure (and add a node, given all six operation costs):

    [ops."7nm"]          # pJ per operation
    fp16_mul = 0.30
    [memory]             # pJ per byte, per level
    dram = 200.0
    [memory_mix]         # share of the bytes per token served by each level (sums to 1)
    dram = 0.9
    cache_1mb = 0.1
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

from tritbench.costmodel.errors import CostModelError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

OP_KEYS = ("fp32_add", "fp32_mul", "fp16_add", "fp16_mul", "int8_add", "int8_mul")
NODES = ("7nm", "45nm")
DEFAULT_NODE = "7nm"

_BITNET_T2 = "BitNet (arXiv 2310.11453) Table 2"
OPS_PJ: dict[str, dict[str, float]] = {
    # Horowitz ISSCC 2014, as tabulated by BitNet Table 2.
    "45nm": {"fp32_add": 0.9, "fp32_mul": 3.7, "fp16_add": 0.4, "fp16_mul": 1.1, "int8_add": 0.03, "int8_mul": 0.2},
    # PokeBNN (CVPR 2022), as tabulated by BitNet Table 2.
    "7nm": {"fp32_add": 0.38, "fp32_mul": 1.31, "fp16_add": 0.16, "fp16_mul": 0.34, "int8_add": 0.007,
            "int8_mul": 0.07},
}
OPS_SOURCES: dict[str, str] = {
    "45nm": f"Horowitz, ISSCC 2014, via {_BITNET_T2}",
    "7nm": f"PokeBNN (Zhang et al., CVPR 2022), via {_BITNET_T2}",
}
MEMORY_PJ_PER_BYTE: dict[str, float] = {
    "cache_8kb": 10.0 / 8,   # 10 pJ per 64-bit access
    "cache_32kb": 20.0 / 8,  # 20 pJ per 64-bit access
    "cache_1mb": 100.0 / 8,  # 100 pJ per 64-bit access
    "dram": 20.0 * 8,        # 20 pJ per bit, the low end of 20-40 pJ/bit (1.3-2.6 nJ per 64-bit access)
}
MEMORY_SOURCE = "Horowitz, ISSCC 2014 (45 nm): 64-bit access 8 KB 10 pJ, 32 KB 20 pJ, 1 MB 100 pJ, DRAM 1.3-2.6 nJ"
DEFAULT_MEMORY_MIX: dict[str, float] = {"dram": 1.0}
_MIX_TOLERANCE = 1e-6


@dataclass(frozen=True)
class EnergyTable:
    """Per-operation (pJ) and per-byte (pJ/B) energies at one process node, with where each came from.

    `memory_mix` is the share of the bytes per token served by each memory level; the default has every
    byte come from DRAM (decode streams the whole model, which does not fit in any cache here).
    """

    node: str
    ops_pj: Mapping[str, float]
    memory_pj_per_byte: Mapping[str, float]
    memory_mix: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MEMORY_MIX))
    sources: Mapping[str, str] = field(default_factory=dict)

    def op(self, name: str) -> float:
        """Energy of one operation in joules."""
        return self.ops_pj[name] * 1e-12

    def mac_j(self, kind: str) -> float:
        """Energy of one multiply-accumulate (a multiply plus an add) of `kind` (fp32, fp16, int8), joules."""
        return self.op(f"{kind}_mul") + self.op(f"{kind}_add")

    def joules_per_byte(self) -> float:
        """Energy per byte moved, weighted by the memory mix, in joules."""
        return sum(share * self.memory_pj_per_byte[level] for level, share in self.memory_mix.items()) * 1e-12

    def to_dict(self) -> dict:
        """Plain JSON-safe dict."""
        return {
            "node": self.node,
            "ops_pj": dict(self.ops_pj),
            "memory_pj_per_byte": dict(self.memory_pj_per_byte),
            "memory_mix": dict(self.memory_mix),
            "sources": dict(self.sources),
        }


def per_op_ratio(table: EnergyTable) -> float:
    """FP16 multiply-accumulate over INT8 add: the b1.58 paper's per-operation saving (71.4x at 7 nm)."""
    return table.mac_j("fp16") / table.op("int8_add")


def energy_table(node: str = DEFAULT_NODE, override_toml: str | None = None) -> EnergyTable:
    """The table at `node`, with a user's TOML text (see the module docstring) applied on top.

    CostModelError for an unknown node, invalid TOML, unknown keys or negative values.
    """
    ops = {n: dict(v) for n, v in OPS_PJ.items()}
    op_sources = dict(OPS_SOURCES)
    memory = dict(MEMORY_PJ_PER_BYTE)
    mix = dict(DEFAULT_MEMORY_MIX)
    memory_source = MEMORY_SOURCE
    if override_toml is not None:
        data = _parse(override_toml)
        for name, values in data.get("ops", {}).items():
            if name not in ops and set(values) != set(OP_KEYS):
                raise CostModelError(f"energy table: new node [ops.{name}] must set all of {', '.join(OP_KEYS)}")
            changed = ", ".join(sorted(values))
            op_sources[name] = f"{op_sources[name]}; user TOML: {changed}" if name in ops else "user TOML"
            ops.setdefault(name, {}).update(values)
        if data.get("memory"):
            memory.update(data["memory"])
            memory_source += f"; user TOML: {', '.join(sorted(data['memory']))}"
        if data.get("memory_mix"):
            mix = dict(data["memory_mix"])
    key = node.strip().lower() if isinstance(node, str) else node
    if key not in ops:
        raise CostModelError(f"unknown process node {node!r} (known: {', '.join(ops)})")
    _check_mix(mix, memory)
    return EnergyTable(
        node=key,
        ops_pj=ops[key],
        memory_pj_per_byte=memory,
        memory_mix=mix,
        sources={"ops": op_sources[key], "memory": memory_source},
    )


def _parse(text: str) -> dict:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CostModelError(f"energy table: invalid TOML: {exc}") from None
    unknown = sorted(set(data) - {"ops", "memory", "memory_mix"})
    if unknown:
        raise CostModelError(f"energy table: unknown key(s) {', '.join(unknown)} (known: ops, memory, memory_mix)")
    ops = data.get("ops", {})
    if not isinstance(ops, dict) or not all(isinstance(v, dict) for v in ops.values()):
        raise CostModelError('energy table: [ops] must hold one table per node, e.g. [ops."7nm"]')
    for node, values in ops.items():
        _check_numbers(f"ops.{node}", values, OP_KEYS)
    _check_numbers("memory", data.get("memory", {}), tuple(MEMORY_PJ_PER_BYTE))
    _check_numbers("memory_mix", data.get("memory_mix", {}), tuple(MEMORY_PJ_PER_BYTE))
    return data


def _check_numbers(section: str, values: object, known: tuple[str, ...]) -> None:
    if not isinstance(values, dict):
        raise CostModelError(f"energy table: [{section}] must be a table")
    for k, v in values.items():
        if k not in known:
            raise CostModelError(f"energy table: unknown key {section}.{k} (known: {', '.join(known)})")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise CostModelError(f"energy table: {section}.{k} must be a non-negative number, got {v!r}")


def _check_mix(mix: Mapping[str, float], memory: Mapping[str, float]) -> None:
    for level in mix:
        if level not in memory:
            raise CostModelError(f"energy table: memory_mix.{level} has no energy in [memory]")
    total = sum(mix.values())
    if abs(total - 1.0) > _MIX_TOLERANCE:
        raise CostModelError(f"energy table: memory_mix shares must sum to 1, got {total:g}")
