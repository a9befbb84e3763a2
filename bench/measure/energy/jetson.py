"""NVIDIA Jetson INA3221 power monitors: per-rail power, polled and integrated.

JetPack >= 5 (hwmon driver `ina3221`):
    sys/bus/i2c/drivers/ina3221/<bus>-<addr>/hwmon/hwmon<N>/in<k>_label   rail name, k = 1..3
    .../in<k>_input (bus voltage, mV), .../curr<k>_input (mA); no power file: P = mV x mA
JetPack 4 (iio driver `ina3221x`):
    sys/bus/i2c/drivers/ina3221x/<bus>-<addr>/iio:device<N>/rail_name_<k>, k = 0..2
    .../in_power<k>_input (mW), .../in_voltage<k>_input (mV), .../in_current<k>_input (mA)

When the board's input rail (VDD_IN, or POM_5V_IN on JetPack 4) is monitored it is the total and
the other rails, which it feeds, are only kept as parts; otherwise the monitored rails are summed
(separate rails, e.g. on AGX Xavier/Orin, whose sum leaves out what no monitor sees).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tritbench.measure.energy.meter import MeterError, PollingMeter, Reader, read_int, read_label, read_text

HWMON_DRIVER = Path("sys/bus/i2c/drivers/ina3221")
IIO_DRIVER = Path("sys/bus/i2c/drivers/ina3221x")
TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")
UNCONNECTED = ("NC", "")


@dataclass(frozen=True)
class Rail:
    """One monitored rail: either a power file (mW) or a voltage (mV) and current (mA) pair."""

    name: str
    power_mw: Path | None = None
    voltage_mv: Path | None = None
    current_ma: Path | None = None

    def watts(self, read: Reader) -> float:
        if self.power_mw is not None:
            return read_int(read, self.power_mw) / 1e3
        if self.voltage_mv is None or self.current_ma is None:
            raise MeterError(f"rail {self.name} has neither a power file nor a voltage and current")
        return read_int(read, self.voltage_mv) * read_int(read, self.current_ma) / 1e6


def _hwmon_rails(root: Path, read: Reader) -> list[Rail]:
    rails = []
    for dev in sorted((root / HWMON_DRIVER).glob("*/hwmon/hwmon*")):
        for label_file in sorted(dev.glob("in*_label")):
            k = label_file.name[2:-len("_label")]
            name = read_label(read, label_file) or ""
            enable = read_label(read, dev / f"in{k}_enable")
            volt, curr = dev / f"in{k}_input", dev / f"curr{k}_input"
            if name not in UNCONNECTED and enable != "0" and volt.exists() and curr.exists():
                rails.append(Rail(name, voltage_mv=volt, current_ma=curr))
    return rails


def _iio_rails(root: Path, read: Reader) -> list[Rail]:
    rails = []
    for dev in sorted((root / IIO_DRIVER).glob("*/iio:device*")):
        for name_file in sorted(dev.glob("rail_name_*")):
            k = name_file.name.rsplit("_", 1)[1]
            name = read_label(read, name_file) or ""
            if name in UNCONNECTED:
                continue
            power = dev / f"in_power{k}_input"
            volt, curr = dev / f"in_voltage{k}_input", dev / f"in_current{k}_input"
            if power.exists():
                rails.append(Rail(name, power_mw=power))
            elif volt.exists() and curr.exists():
                rails.append(Rail(name, voltage_mv=volt, current_ma=curr))
    return rails


def find_rails(root: Path, read: Reader = read_text) -> list[Rail]:
    """Every connected INA3221 rail, hwmon layout first, with names made unique across chips."""
    rails = _hwmon_rails(root, read) or _iio_rails(root, read)
    seen: dict[str, int] = {}
    out = []
    for r in rails:
        seen[r.name] = seen.get(r.name, 0) + 1
        out.append(r if seen[r.name] == 1 else Rail(f"{r.name}#{seen[r.name]}", r.power_mw, r.voltage_mv,
                                                     r.current_ma))
    return out


class JetsonMeter(PollingMeter):
    """Board energy from the Jetson INA3221 rails (VDD_IN when present), polled every `interval_s`."""

    kind = "jetson"
    source = "ina3221"

    def __init__(self, root: Path | str | None = None, *, interval_s: float | None = None,
                 min_interval_s: float | None = None, read: Reader = read_text) -> None:
        super().__init__()
        self._read = read
        if not self._open_root(root):
            return
        self._rails = find_rails(self.root, read)
        if not self._rails:
            self._unavailable(f"no INA3221 rails under {self.root / HWMON_DRIVER} or {self.root / IIO_DRIVER}")
            return
        try:
            self._sample()
        except (OSError, MeterError) as exc:
            self._unavailable(self.probe_failure(exc), found=True)
            return
        names = [r.name for r in self._rails]
        total = next((n for n in TOTAL_RAILS if n in names), None)
        summed = [total] if total else names
        self.interval_s = self._interval(interval_s, 0.1, min_interval_s)
        self._read_power = self._sample
        self._ready(summed, [n for n in names if n not in summed])

    def _sample(self) -> dict[str, float]:
        return {r.name: r.watts(self._read) for r in self._rails}

