"""Generic hwmon power and energy sensors (ACPI power meters, amd_energy, INA2xx boards...).

Layout (Documentation/hwmon/sysfs-interface): sys/class/hwmon/hwmon<N>/ with `name` (the driver),
`power<k>_input` or `power<k>_average` in microwatts, `energy<k>_input` cumulative microjoules, and
optional `<type><k>_label`. Drivers still on the old `hwmon_device_register()` API, ACPI `power_meter`
among them, put `name` and the sensors on the parent device instead: hwmon<N>/device/. Devices are
chosen by name, never by number (the number changes at boot).

One device is used, so that two views of the same power are never added: `power_meter` (ACPI, the
whole system, which only has `power1_average`) first, then `amd_energy` (sockets), then the first
other device with a sensor. GPU drivers are left out unless asked for by name: their power is not
the CPU's. Within a device, energy counters win over power readings (no integration error), and
channels labelled as totals (`Esocket<N>` of amd_energy, which contain its `Ecore<NNN>`; `system`,
`total`, `card`) are summed alone, the others kept as parts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tritbench.measure.energy.meter import MeterError, PollingMeter, Reader, read_int, read_label, read_text

HWMON = Path("sys/class/hwmon")
PREFERRED = ("power_meter", "amd_energy")
# handled by another meter, or not the power of the machine's CPU
SKIPPED = {"ina3221": "Jetson INA3221 (--energy jetson)", "amdgpu": "GPU", "radeon": "GPU", "nouveau": "GPU",
           "i915": "GPU", "xe": "GPU"}
TOTAL_LABELS = (re.compile(r"^Esocket\d+$"), re.compile(r"^(system|total|card)$", re.IGNORECASE))
CHANNEL = re.compile(r"^(power|energy)(\d+)_(input|average)$")


@dataclass(frozen=True)
class Channel:
    domain: str  # <device name>:<label, or power1/energy1>
    path: Path
    label: str | None


@dataclass(frozen=True)
class Device:
    name: str
    path: Path
    energy: list[Channel]  # cumulative µJ
    power: list[Channel]  # µW


def _hwmon_number(path: Path) -> int:
    digits = path.name.removeprefix("hwmon")
    return int(digits) if digits.isdigit() else 1 << 30


def find_devices(root: Path, read: Reader = read_text) -> list[Device]:
    """hwmon devices with at least one power or energy channel, in hwmon number order."""
    devices = []
    for hwmon in sorted((root / HWMON).glob("hwmon*"), key=_hwmon_number):
        # sensors live next to `name`: in hwmon<N>/, or in hwmon<N>/device/ for old-API drivers
        path = next((p for p in (hwmon, hwmon / "device") if (p / "name").is_file()), None)
        name = read_label(read, path / "name") if path else None
        if path is None or name is None:
            continue
        found: dict[tuple[str, int], dict[str, Path]] = {}
        for f in path.iterdir():
            m = CHANNEL.match(f.name)
            if m and not (m.group(1) == "energy" and m.group(3) == "average"):
                found.setdefault((m.group(1), int(m.group(2))), {})[m.group(3)] = f
        energy, power = [], []
        for (what, k), files in sorted(found.items()):
            label = read_label(read, path / f"{what}{k}_label")
            ch = Channel(f"{name}:{label or f'{what}{k}'}", files.get("input") or files["average"], label)
            (energy if what == "energy" else power).append(ch)
        if energy or power:
            devices.append(Device(name, path, energy, power))
    return devices


def split_totals(channels: list[Channel]) -> tuple[list[Channel], list[Channel]]:
    """(summed, parts): channels labelled as totals alone if there are any, else all of them."""
    for pattern in TOTAL_LABELS:
        totals = [c for c in channels if c.label and pattern.match(c.label)]
        if totals:
            return totals, [c for c in channels if c not in totals]
    return channels, []


def choose_device(devices: list[Device], name: str | None = None) -> Device | None:
    if name is not None:
        return next((d for d in devices if d.name == name), None)
    usable = [d for d in devices if d.name not in SKIPPED]
    return min(usable, key=lambda d: PREFERRED.index(d.name) if d.name in PREFERRED else len(PREFERRED),
               default=None)


class HwmonMeter(PollingMeter):
    """Energy from one hwmon device: its energy counters differenced, or its power readings integrated."""

    kind = "hwmon"
    source = "hwmon"

    def __init__(self, root: Path | str | None = None, *, device: str | None = None,
                 interval_s: float | None = None, min_interval_s: float | None = None,
                 read: Reader = read_text) -> None:
        super().__init__()
        self._read = read
        if not self._open_root(root, HWMON):
            return
        base = self.root / HWMON
        devices = find_devices(self.root, read)
        chosen = choose_device(devices, device)
        if chosen is None:
            skipped = sorted({f"{d.name} ({SKIPPED[d.name]})" for d in devices if d.name in SKIPPED})
            detail = f" (skipped: {', '.join(skipped)})" if skipped and device is None else ""
            what = f"no hwmon device named {device!r}" if device else f"no power or energy sensor in {base}"
            self._unavailable(what + detail)
            return
        self.device = chosen
        summed, parts = split_totals(chosen.energy or chosen.power)
        self._channels = summed + parts
        if chosen.energy:
            self._read_counters = self._read_energy
            self._wrap_uj = {c.domain: None for c in self._channels}  # hwmon energy counters do not wrap
            default = 1.0  # counters need no fast polling; polls only catch a counter reset
        else:
            self._read_power = self._read_watts
            default = 0.1
        try:
            (self._read_counters or self._read_power)()
        except (OSError, MeterError) as exc:
            self._unavailable(self.probe_failure(exc), found=True)
            return
        self.interval_s = self._interval(interval_s, default, min_interval_s)
        self._ready([c.domain for c in summed], [c.domain for c in parts])

    def _read_energy(self) -> dict[str, int]:
        return {c.domain: read_int(self._read, c.path) for c in self._channels}

    def _read_watts(self) -> dict[str, float]:
        return {c.domain: read_int(self._read, c.path) / 1e6 for c in self._channels}
