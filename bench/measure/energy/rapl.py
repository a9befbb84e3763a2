"""RAPL energy counters through Linux powercap (Intel; AMD Zen since kernel 5.8, same `intel-rapl` layout).

Layout read (under a root, `/` on a real machine):
    sys/class/powercap/intel-rapl:<N>            package N (`name` package-N) or the platform (`name` psys)
    sys/class/powercap/intel-rapl:<N>:<M>        subzones of package N: `name` core, uncore or dram
    sys/class/powercap/intel-rapl-mmio:<N>       the same package N again, through MMIO registers
    each zone: `name`, `energy_uj` (cumulative µJ), `max_energy_range_uj` (the counter wraps there)

Each physical domain is counted once: an MMIO zone whose package also appears as `intel-rapl:<N>` is
skipped, and a parent is never added to its children. By default the packages plus their dram
subzones are summed (package already contains core and uncore; dram is outside it); core, uncore
and psys are kept as informational `parts`. `level="psys"` sums the platform zone instead.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tritbench.measure.energy.meter import MeterError, PollingMeter, Reader, clamp, read_int, read_label, read_text

POWERCAP = Path("sys/class/powercap")
ZONE_NAME = re.compile(r"^(intel-rapl|intel-rapl-mmio):(\d+)(?::(\d+))?$")
PERMISSION_HINT = "grant read access: sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj, or run as root"
# Generous on purpose: it only sets how often we poll, and polling too often costs almost nothing.
DEFAULT_MAX_POWER_W = 1000.0
POLLS_PER_WRAP = 4
LEVELS = ("package", "psys")


@dataclass(frozen=True)
class Zone:
    """One powercap zone as found under sys/class/powercap."""

    entry: str  # intel-rapl:0:2
    path: Path
    control: str  # intel-rapl or intel-rapl-mmio
    package: int
    sub: int | None
    name: str  # package-0, core, uncore, dram, psys
    range_uj: int


def find_zones(root: Path, read: Reader = read_text) -> list[Zone]:
    """Every RAPL zone with a readable name and range (the energy counter itself is read later)."""
    zones = []
    for entry in sorted((root / POWERCAP).iterdir()):
        m = ZONE_NAME.match(entry.name)
        name = read_label(read, entry / "name") if m else None
        if not m or name is None:
            continue
        try:
            range_uj = read_int(read, entry / "max_energy_range_uj")
        except (OSError, MeterError):
            continue  # without its range a wrap could not be corrected
        if range_uj <= 0:
            continue
        sub = int(m.group(3)) if m.group(3) is not None else None
        zones.append(Zone(entry.name, entry, m.group(1), int(m.group(2)), sub, name, range_uj))
    return zones


def _unique(keys: list[str]) -> list[str]:
    seen: Counter[str] = Counter()
    out = []
    for k in keys:
        seen[k] += 1
        out.append(k if seen[k] == 1 else f"{k}#{seen[k]}")
    return out


def plan_domains(zones: list[Zone], level: str = "package") -> tuple[dict[str, Zone], dict[str, Zone]]:
    """(summed, parts): the zones to add up and the ones read for information, each physical domain once."""
    tops = {(z.control, z.package): z.name for z in zones if z.sub is None}
    msr_packages = {name for (control, _), name in tops.items() if control == "intel-rapl"}
    # an MMIO zone duplicates the MSR zone of the same package name: keep the MSR one
    kept = [z for z in zones
            if z.control == "intel-rapl" or tops.get((z.control, z.package)) not in msr_packages]
    sub_names = Counter(z.name for z in kept if z.sub is not None)
    keys = _unique([z.name if z.sub is None or sub_names[z.name] == 1 else f"{z.name}-{z.package}" for z in kept])
    named = dict(zip(keys, kept, strict=True))
    packages = [k for k, z in named.items() if z.sub is None and z.name != "psys"]
    psys = [k for k, z in named.items() if z.sub is None and z.name == "psys"]
    drams = [k for k, z in named.items() if z.sub is not None and z.name == "dram"]
    if level == "psys" or not packages:
        summed = psys
    else:
        summed = packages + drams
    return {k: named[k] for k in summed}, {k: z for k, z in named.items() if k not in summed}


class RaplMeter(PollingMeter):
    """Package (+dram) energy from powercap RAPL counters, with every wraparound corrected.

    A background thread reads the counters every `interval_s`, derived from the shortest counter
    range and a generous `max_power_w` so that at least `POLLS_PER_WRAP` polls fall within the
    time a counter takes to wrap (within `min_interval_s`..`max_interval_s`). If two reads end up
    further apart than that wrap time (the process was stopped), the reading is unavailable
    rather than possibly short by a whole range.
    """

    kind = "rapl"
    source = "rapl"

    def __init__(self, root: Path | str | None = None, *, level: str = "package",
                 max_power_w: float = DEFAULT_MAX_POWER_W, interval_s: float | None = None,
                 min_interval_s: float = 0.05, max_interval_s: float = 10.0, read: Reader = read_text) -> None:
        super().__init__()
        if level not in LEVELS:
            raise ValueError(f"RAPL level must be one of {', '.join(LEVELS)}, not {level!r}")
        self._read = read
        if not self._open_root(root, POWERCAP):
            return
        base = self.root / POWERCAP
        zones = find_zones(self.root, read)
        if not zones:
            self._unavailable(f"no intel-rapl zones in {base}")
            return
        summed, parts = plan_domains(zones, level)
        if not summed:
            self._unavailable(f"no {level} zone in {base}", found=True)
            return
        self._zones = {**summed, **parts}
        try:
            self._read_all()  # EACCES shows up now, before any window
        except PermissionError as exc:
            self._unavailable(self._permission_denied(exc), found=True)
            return
        except (OSError, MeterError) as exc:
            self._unavailable(self.probe_failure(exc), found=True)
            return
        self._wrap_uj = {d: z.range_uj for d, z in self._zones.items()}
        # the shortest time any counter can take to wrap; an asked-for interval may only be shorter
        wrap_s = min(z.range_uj for z in self._zones.values()) / 1e6 / max_power_w
        safe = wrap_s / POLLS_PER_WRAP
        self.interval_s = clamp(min(interval_s, safe) if interval_s else safe, min_interval_s, max_interval_s)
        # the floor can exceed a tiny test range's wrap time; real ranges (>= 60 kJ) never get near it
        self._stall_s = max(wrap_s, 2 * self.interval_s)
        self._read_counters = self._read_all
        self._ready(list(summed), list(parts))

    def _read_all(self) -> dict[str, int]:
        return {d: read_int(self._read, z.path / "energy_uj") for d, z in self._zones.items()}

    @staticmethod
    def _permission_denied(exc: PermissionError) -> str:
        return f"permission denied reading {exc.filename} ({PERMISSION_HINT})"

    def describe(self, exc: BaseException) -> str:
        if isinstance(exc, PermissionError):
            return f"{self.kind}: {self._permission_denied(exc)}"
        return super().describe(exc)
