"""Raspberry Pi 5 PMIC rails from `vcgencmd pmic_read_adc`, polled and integrated.

The command prints one line per ADC channel, currents then voltages:
      VDD_CORE_A current(7)=0.41925110A
      VDD_CORE_V volt(15)=0.72000000V
A rail's power is V x A, pairing `<rail>_A` with `<rail>_V`; channels without a partner (`EXT5V_V`,
the 5 V input, and `BATT_V`, the RTC battery) are skipped. The sum covers the PMIC's output rails,
not the board's input power (the 5 V input current is not measured), and the reading says so.

The command has no streaming mode, so every sample starts a process (~26 firmware ADC reads): on a
4-core board running the benchmark on all cores that steals CPU inside the window. Each reading
therefore records that cost in `sampling_cost` (processes, their CPU and wall time); a longer
`interval_s` lowers it.
"""

from __future__ import annotations

import math
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from tritbench.measure.energy.meter import MeterError, PollingMeter, Reader, read_label, read_text, run_command

MODEL_FILES = (Path("proc/device-tree/model"), Path("sys/firmware/devicetree/base/model"))
ADC_LINE = re.compile(r"^\s*(?P<rail>\S+)_(?P<unit>[AV])\s+(?:current|volt)\(\d+\)=(?P<value>\S+?)[AV]\s*$")
DOMAIN = "pmic-rails"
NOTE = "sum of the Raspberry Pi 5 PMIC output rails, not the board's 5 V input power"


def parse_pmic_read_adc(text: str) -> dict[str, float]:
    """Watts per rail that has both a current and a voltage line, in the command's order."""
    amps: dict[str, float] = {}
    volts: dict[str, float] = {}
    for line in text.splitlines():
        m = ADC_LINE.match(line)
        if not m:
            continue
        try:
            value = float(m.group("value"))
        except ValueError:
            continue
        if math.isfinite(value):
            (amps if m.group("unit") == "A" else volts)[m.group("rail")] = value
    return {rail: a * volts[rail] for rail, a in amps.items() if rail in volts}


def model_name(root: Path, read: Reader = read_text) -> str | None:
    """The device-tree model string (`Raspberry Pi 5 Model B Rev 1.0`), if the board has one."""
    for rel in MODEL_FILES:
        name = read_label(read, root / rel)
        if name:
            return name
    return None


class Pi5Meter(PollingMeter):
    """PMIC rail energy on a Raspberry Pi 5; `runner` returns the command's text (tests pass captured output).

    One `runner` call counts as one `vcgencmd` process in the reading's `sampling_cost`.
    """

    kind = "pi5"
    source = "vcgencmd"
    # one call talks to the firmware and reads ~26 ADC channels: polling faster would cost a core
    MIN_INTERVAL_S = 0.25

    def __init__(self, root: Path | str | None = None, *, runner: Callable[[], str] | None = None,
                 interval_s: float | None = None, min_interval_s: float | None = None,
                 read: Reader = read_text) -> None:
        super().__init__()
        if not self._open_root(root):
            return
        model = model_name(self.root, read)
        if not model or "Raspberry Pi" not in model:
            self._unavailable(f"not a Raspberry Pi (no 'Raspberry Pi' in {self.root / MODEL_FILES[0]})")
            return
        self._runner = runner or (lambda: run_command(["vcgencmd", "pmic_read_adc"]))
        try:
            rails = parse_pmic_read_adc(self._runner())
        except FileNotFoundError:
            self._unavailable("vcgencmd not found (it comes with Raspberry Pi OS: package raspi-utils)", found=True)
            return
        except (OSError, MeterError, subprocess.SubprocessError) as exc:
            self._unavailable(self.probe_failure(exc), found=True)
            return
        if not rails:
            self._unavailable(f"vcgencmd pmic_read_adc gave no rail currents and voltages on a {model} "
                              "(only the Raspberry Pi 5 has this PMIC)", found=True)
            return
        self.interval_s = self._interval(interval_s, 0.5, min_interval_s)
        self._read_power = self._sample
        self._note = NOTE
        self._command = "vcgencmd pmic_read_adc"
        self._ready([DOMAIN], list(rails))

    def _sample(self) -> dict[str, float]:
        rails = parse_pmic_read_adc(self._runner())
        if not rails:
            raise MeterError("vcgencmd pmic_read_adc returned no rail readings")
        return {DOMAIN: sum(rails.values()), **rails}
