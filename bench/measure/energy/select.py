"""Choosing a meter: an explicit kind, or the first one that works in a fixed order (`auto`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from tritbench.errors import ConfigError
from tritbench.machine import parse_cpuinfo, sysfs_root
from tritbench.measure.energy.hwmon import HwmonMeter
from tritbench.measure.energy.jetson import JetsonMeter
from tritbench.measure.energy.meter import BaseMeter, Meter, UnavailableMeter
from tritbench.measure.energy.pi5 import Pi5Meter
from tritbench.measure.energy.powermetrics import PowermetricsMeter
from tritbench.measure.energy.pyrapl import PyRaplMeter
from tritbench.measure.energy.rapl import RaplMeter
from tritbench.measure.energy.reading import MeterProbe

METER_KINDS = ("auto", "rapl", "pyrapl", "jetson", "hwmon", "pi5", "powermetrics", "none")
# most precise and most common first; pyRAPL only when asked for (it duplicates rapl, with fewer guards)
AUTO_ORDER = ("rapl", "jetson", "pi5", "hwmon", "powermetrics")
PROBED = ("rapl", "pyrapl", "jetson", "pi5", "hwmon", "powermetrics")
TURNED_OFF = "energy measurement turned off (--energy none)"
NOTHING_FOUND = "no powercap RAPL, INA3221, Raspberry Pi PMIC, hwmon power sensor or powermetrics found"


def _build(kind: str, root: Path, runners: Mapping[str, Callable], platform: str | None,
           interval_s: float | None) -> BaseMeter:
    if kind == "rapl":
        return RaplMeter(root, interval_s=interval_s)
    if kind == "pyrapl":
        return PyRaplMeter(root)
    if kind == "jetson":
        return JetsonMeter(root, interval_s=interval_s)
    if kind == "hwmon":
        return HwmonMeter(root, interval_s=interval_s)
    if kind == "pi5":
        return Pi5Meter(root, runner=runners.get("pi5"), interval_s=interval_s)
    if kind == "powermetrics":
        return PowermetricsMeter(root, runner=runners.get("powermetrics"), stream=runners.get("powermetrics-stream"),
                                 platform=platform, interval_s=interval_s)
    raise ConfigError(f"unknown energy meter {kind!r}")


def _check_kind(kind: str) -> None:
    if kind not in METER_KINDS:
        raise ConfigError(f"unknown energy meter {kind!r}: choose one of {', '.join(METER_KINDS)}")


def under_hypervisor(root: Path) -> bool:
    try:
        text = (root / "proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return "hypervisor" in parse_cpuinfo(text)["flags"]


def select_meter(kind: str = "auto", root: Path | str | None = None, *,
                 runners: Mapping[str, Callable] | None = None, platform: str | None = None,
                 interval_s: float | None = None) -> Meter:
    """The meter for `kind` (one of METER_KINDS) reading under `root` (default: `sysfs_root()`).

    An explicit kind whose hardware is missing gives an unavailable meter that says why; `auto`
    returns the first available meter of AUTO_ORDER, else an unavailable one whose reason names what
    was tried (and, when hardware was found but could not be used, e.g. EACCES on RAPL, says that).
    `runners` maps "pi5" / "powermetrics" to callables returning the command's text (and
    "powermetrics-stream" to one giving the streaming command's argv for an interval in ms); `platform`
    overrides sys.platform; `interval_s` sets the polling interval of polled meters.
    Raises ConfigError for an unknown kind.
    """
    _check_kind(kind)
    if kind == "none":
        return UnavailableMeter("none", TURNED_OFF)
    root = Path(root) if root is not None else sysfs_root()
    runners = runners or {}
    if kind != "auto":
        return _build(kind, root, runners, platform, interval_s)
    if not root.is_dir():
        return UnavailableMeter("auto", f"sysfs root {root} does not exist (is TRITBENCH_SYSFS_ROOT right?)")
    tried = []
    for k in AUTO_ORDER:
        meter = _build(k, root, runners, platform, interval_s)
        if meter.available:
            return meter
        tried.append(meter)
    found = [m.reason for m in tried if m.found and m.reason]
    reason = "; ".join(found) if found else NOTHING_FOUND
    if under_hypervisor(root):
        reason += " (virtual machine: cpuinfo has the hypervisor flag)"
    return UnavailableMeter("auto", reason, found=bool(found))


def probe_meters(root: Path | str | None = None, *, runners: Mapping[str, Callable] | None = None,
                 platform: str | None = None) -> list[MeterProbe]:
    """Every kind of meter tried on this machine, whether it can measure, and why not (for `bench machine`)."""
    root = Path(root) if root is not None else sysfs_root()
    probes = []
    for kind in PROBED:
        meter = _build(kind, root, runners or {}, platform, None)
        probes.append(MeterProbe(kind, meter.available, meter.reason, list(meter.domains), list(meter.parts)))
    return probes
