"""macOS `powermetrics --samplers cpu_power -i <ms> -n 1` (root only), polled and integrated.

Apple Silicon prints, among other lines:
    CPU Power: 1234 mW
    GPU Power: 56 mW
    ANE Power: 0 mW
    Combined Power (CPU + GPU + ANE): 1290 mW
CPU, GPU and ANE are summed (Combined is their sum and is used alone only when it is all there is).
Intel Macs print `Intel energy model derived package power (CPUs+GT+SA): 3.20W` instead, taken as the
package. Each call averages power over its own `-i` interval, so the calls are made back to back,
each sampling most of one polling interval; the value belongs to the middle of the call.
These are Apple's own on-chip estimates; we label them measured:powermetrics, as Apple reports them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tritbench.measure.energy.meter import MeterError, PollingMeter, run_command

POWER_LINE = re.compile(
    r"^\s*(?P<what>CPU|GPU|ANE|Combined) Power(?: \([^)]*\))?:\s*(?P<value>[\d.]+)\s*(?P<unit>mW|W)\s*$")
INTEL_LINE = re.compile(r"^\s*Intel energy model derived package power \([^)]*\):\s*(?P<value>[\d.]+)\s*W\s*$")
PROBE_MS = 100


def parse_powermetrics(text: str) -> dict[str, float]:
    """Watts per domain (cpu, gpu, ane, combined, or package on Intel) from one sample's text.

    The first line of each kind wins: with the gpu_power sampler too, GPU Power appears twice.
    """
    watts: dict[str, float] = {}
    for line in text.splitlines():
        m = POWER_LINE.match(line)
        if m:
            value = float(m.group("value")) / (1e3 if m.group("unit") == "mW" else 1.0)
            watts.setdefault(m.group("what").lower(), value)
            continue
        m = INTEL_LINE.match(line)
        if m:
            watts.setdefault("package", float(m.group("value")))
    return watts


def summed_domains(watts: dict[str, float]) -> list[str]:
    parts = [d for d in ("cpu", "gpu", "ane") if d in watts]
    if parts:
        return parts
    return [d for d in ("combined", "package") if d in watts][:1]


class PowermetricsMeter(PollingMeter):
    """CPU+GPU+ANE energy on macOS; `runner(sample_ms)` returns one sample's text (tests pass captured output)."""

    kind = "powermetrics"
    source = "powermetrics"
    # each call starts a process and samples for most of the interval
    MIN_INTERVAL_S = 0.2

    def __init__(self, root: Path | str | None = None, *, runner: Callable[[int], str] | None = None,
                 platform: str | None = None, interval_s: float | None = None,
                 min_interval_s: float | None = None) -> None:
        super().__init__()
        platform = platform or sys.platform
        if platform != "darwin":
            self._unavailable(f"macOS only (this is {platform})")
            return
        if runner is None:
            if shutil.which("powermetrics") is None:
                self._unavailable("powermetrics not found on PATH")
                return
            if os.geteuid() != 0:
                self._unavailable("powermetrics needs root: run the benchmark with sudo", found=True)
                return

            def runner(ms: int) -> str:
                cmd = ["powermetrics", "--samplers", "cpu_power", "-i", str(ms), "-n", "1"]
                return run_command(cmd, timeout=ms / 1e3 + 10)

        self._runner = runner
        try:
            watts = parse_powermetrics(runner(PROBE_MS))
        except (OSError, MeterError, subprocess.SubprocessError) as exc:
            self._unavailable(self.probe_failure(exc), found=True)
            return
        summed = summed_domains(watts)
        if not summed:
            self._unavailable("no CPU/GPU/ANE power lines in the powermetrics output", found=True)
            return
        self.interval_s = self._interval(interval_s, 0.5, min_interval_s)
        self._sample_ms = max(PROBE_MS // 2, int(self.interval_s * 1e3 * 0.8))
        self._read_power = self._sample
        self._ready(summed)

    def _sample(self) -> dict[str, float]:
        watts = parse_powermetrics(self._runner(self._sample_ms))
        return {d: watts[d] for d in self.domains if d in watts}
