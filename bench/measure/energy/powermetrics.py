"""macOS `powermetrics --samplers cpu_power` (root only): one long-running process streams samples.

Apple Silicon prints, among other lines:
    CPU Power: 1234 mW
    GPU Power: 56 mW
    ANE Power: 0 mW
    Combined Power (CPU + GPU + ANE): 1290 mW
CPU, GPU and ANE are summed (Combined is their sum and is used alone only when it is all there is).
Intel Macs print `Intel energy model derived package power (CPUs+GT+SA): 3.20W` instead, taken as the
package. These are Apple's own on-chip estimates; we label them measured:powermetrics, as Apple reports them.

No process is started inside a window. The meter is probed once when built (`-n 1`); the first
`start()` launches `powermetrics -i <ms>`, waits for its first sample, and leaves it running: it prints
one sample per interval, each the mean power over its own interval (`(502.31ms elapsed)` in the sample's
header) ending when it is printed, and a thread of this process parses them. A window's energy is each
sample's watts times the part of its interval inside the window; `stop()` waits for the sample that
covers the window's end (up to one interval, after the caller's timed region). The process's own CPU
time during the window, and the reader thread's, are recorded in the reading's `sampling_cost`.
The process is terminated and waited for by `close()`, when the meter is garbage collected, and at
interpreter exit; if this process dies first, powermetrics exits on its next write to the closed pipe.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tritbench.measure.energy.meter import BaseMeter, MeterError, run_command
from tritbench.measure.energy.reading import EnergyReading

POWER_LINE = re.compile(
    r"^\s*(?P<what>CPU|GPU|ANE|Combined) Power(?: \([^)]*\))?:\s*(?P<value>[\d.]+)\s*(?P<unit>mW|W)\s*$")
INTEL_LINE = re.compile(r"^\s*Intel energy model derived package power \([^)]*\):\s*(?P<value>[\d.]+)\s*W\s*$")
SAMPLE_HEADER = re.compile(r"^\*\*\* Sampled system activity")
ELAPSED = re.compile(r"\((?P<ms>[\d.]+)\s*ms elapsed\)")
PROBE_MS = 100
START_TIMEOUT_S = 10.0  # powermetrics' own start-up, before its first interval begins


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


def stream_command(ms: int) -> list[str]:
    """The streaming command: one sample every `ms` until terminated."""
    return ["powermetrics", "--samplers", "cpu_power", "-i", str(ms)]


@dataclass(frozen=True)
class Sample:
    """One streamed sample: mean watts per domain over [t_end - span_s, t_end] (perf_counter seconds)."""

    t_end: float
    span_s: float
    watts: dict[str, float]


class PowermetricsStream:
    """A running streaming command (powermetrics, or a stand-in in tests) and the thread that parses it.

    A sample is complete as soon as it has a line for every domain in `domains`; its interval is the
    `ms elapsed` of its header (else `interval_s`). The first failure (the process exits, a sample
    lacks a domain) is kept in `error`. While no window is open only the latest sample is kept.
    """

    def __init__(self, cmd: list[str], domains: list[str], interval_s: float) -> None:
        self.cmd, self.domains, self.interval_s = list(cmd), list(domains), interval_s
        self.samples: list[Sample] = []
        self.error: str | None = None
        self.active = False
        self.closing = False
        self._owner = os.getpid()  # a forked child inherits this object but must not stop the process
        self._reader_cpu_s = 0.0
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, encoding="utf-8", errors="replace",
                                     bufsize=1)
        self._ps = None
        self._thread = threading.Thread(target=self._read, name="tritbench-energy-powermetrics", daemon=True)
        self._thread.start()

    # ---- reader thread

    def _read(self) -> None:
        try:
            self._parse()
        except Exception as exc:  # never die silently: the window in progress must become unavailable
            self.fail(f"reading {self.cmd[0]}'s output: {type(exc).__name__}: {exc}")

    def _parse(self) -> None:
        block: dict[str, float] | None = None  # the sample being read, None between samples
        span, last = self.interval_s, ""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if SAMPLE_HEADER.match(line):
                if block is not None:
                    self.fail(f"a sample had no {', '.join(d for d in self.domains if d not in block)} power line")
                m = ELAPSED.search(line)
                block, span = {}, float(m.group("ms")) / 1e3 if m else self.interval_s
            elif block is not None:
                for d, w in parse_powermetrics(line).items():
                    block.setdefault(d, w)
                if all(d in block for d in self.domains):
                    self._add(Sample(time.perf_counter(), span, {d: block[d] for d in self.domains}))
                    block = None
            elif line.strip():
                last = line.strip()  # outside samples: the preamble, or an error message
            self._reader_cpu_s = time.thread_time()
        rc = self.proc.wait()
        if not self.closing:
            self.fail(f"{' '.join(self.cmd)} exited with {rc}" + (f": {last}" if last else ""))

    def _add(self, sample: Sample) -> None:
        with self._cond:
            if not self.active:
                self.samples.clear()
            self.samples.append(sample)
            self._cond.notify_all()

    def fail(self, error: str) -> None:
        """Keep the first failure (later windows see it until the stream is restarted)."""
        with self._cond:
            self.error = self.error or error
            self._cond.notify_all()

    # ---- the meter's side

    def wait_for(self, t: float | None, timeout: float) -> bool:
        """Wait until a sample has ended at or after `t` (None: any sample) or the stream fails."""
        def ready() -> bool:
            return self.error is not None or any(t is None or s.t_end >= t for s in self.samples)

        with self._cond:
            return self._cond.wait_for(ready, timeout) and self.error is None

    def open_window(self, t0: float) -> None:
        with self._cond:
            self.active = True
            self.samples = [s for s in self.samples if s.t_end > t0]

    def close_window(self) -> list[Sample]:
        with self._cond:
            self.active = False
            return list(self.samples)

    def cpu_s(self) -> tuple[float | None, str | None]:
        """CPU seconds used so far by the process plus the reader thread, or (None, why not)."""
        try:
            import psutil

            if self._ps is None:
                self._ps = psutil.Process(self.proc.pid)
            t = self._ps.cpu_times()
            return t.user + t.system + self._reader_cpu_s, None
        except Exception as exc:  # AccessDenied, NoSuchProcess...: say so rather than guess
            return None, f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        """Terminate the process, wait for it, and stop the reader thread (idempotent)."""
        if os.getpid() != self._owner:
            return
        self.closing = True
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._thread.join(timeout=5)
        if self.proc.stdout is not None and not self._thread.is_alive():
            self.proc.stdout.close()


class PowermetricsMeter(BaseMeter):
    """CPU+GPU+ANE energy on macOS from one streaming `powermetrics` process.

    `runner(sample_ms)` returns one `-n 1` sample's text, used only to probe when the meter is built;
    `stream(interval_ms)` is the argv of the streaming command (tests pass a stand-in script).
    """

    kind = "powermetrics"
    source = "powermetrics"
    # powermetrics' own CPU cost grows with its sampling rate
    MIN_INTERVAL_S = 0.2

    def __init__(self, root: Path | str | None = None, *, runner: Callable[[int], str] | None = None,
                 stream: Callable[[int], list[str]] | None = None, platform: str | None = None,
                 interval_s: float | None = None, min_interval_s: float | None = None) -> None:
        super().__init__()
        self._stream: PowermetricsStream | None = None
        self._closer: weakref.finalize | None = None
        self._t0: float | None = None
        self._cpu0: tuple[float | None, str | None] = (None, None)
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

        self._command = stream or stream_command
        try:
            watts = parse_powermetrics(runner(PROBE_MS))
        except (OSError, MeterError, subprocess.SubprocessError) as exc:
            self._unavailable(self.probe_failure(exc), found=True)
            return
        summed = summed_domains(watts)
        if not summed:
            self._unavailable("no CPU/GPU/ANE power lines in the powermetrics output", found=True)
            return
        floor = self.MIN_INTERVAL_S if min_interval_s is None else min_interval_s
        self.interval_s = max(floor, interval_s or 0.5)
        self._ready(summed)

    def _open_stream(self) -> PowermetricsStream:
        """The running stream; (re)started, and its first sample awaited, if it is not running or failed."""
        if self._stream is not None and self._stream.error is None:
            return self._stream
        self.close()
        cmd = self._command(round(self.interval_s * 1e3))
        try:
            stream = PowermetricsStream(cmd, self.domains, self.interval_s)
        except FileNotFoundError:
            raise MeterError(f"cannot start {cmd[0]}: not found") from None
        self._stream, self._closer = stream, weakref.finalize(self, stream.close)
        if not stream.wait_for(None, self.interval_s + START_TIMEOUT_S):
            stream.fail(f"no sample from {' '.join(cmd)} within {self.interval_s + START_TIMEOUT_S:g} s")
            raise MeterError(stream.error)
        return stream

    def _begin(self) -> None:
        self._t0 = None
        stream = self._open_stream()
        self._t0 = time.perf_counter()
        stream.open_window(self._t0)
        self._cpu0 = stream.cpu_s()

    def _end(self) -> EnergyReading:
        t1 = time.perf_counter()
        stream = self._stream
        if stream is None or self._t0 is None:
            raise MeterError("the powermetrics stream is not running")
        cpu1 = stream.cpu_s()
        timeout = 2 * self.interval_s + 5
        ok = stream.wait_for(t1, timeout)
        samples = stream.close_window()
        if not ok:
            raise MeterError(stream.error or f"no powermetrics sample within {timeout:g} s after the window")
        t0, window = self._t0, t1 - self._t0
        joules = dict.fromkeys(self.domains, 0.0)
        covered, n = 0.0, 0
        for s in samples:
            overlap = min(t1, s.t_end) - max(t0, s.t_end - s.span_s)
            if overlap <= 0:
                continue
            n, covered = n + 1, covered + overlap
            for d in self.domains:
                joules[d] += s.watts[d] * overlap
        if covered < 0.5 * window or covered <= 0:
            raise MeterError(f"powermetrics samples covered only {covered:.3f} s of the {window:.3f} s window")
        notes = []
        if covered < 0.9 * window:
            notes.append(f"samples covered {covered / window:.0%} of the window: their mean power was applied to all")
        if window < self.interval_s:
            notes.append(f"window shorter than one {self.interval_s:g} s powermetrics sample: "
                         "the power is the mean over a longer span")
        return EnergyReading.measured(
            self.source, {d: j * window / covered for d, j in joules.items()}, window, samples=n,
            note="; ".join(notes) or None, sampling_cost=self._cost(window, self._cpu0, cpu1))

    def _cost_so_far(self) -> dict | None:
        if self._stream is None or self._t0 is None:
            return None
        return self._cost(time.perf_counter() - self._t0, self._cpu0, self._stream.cpu_s())

    def _cost(self, window: float, cpu0: tuple[float | None, str | None],
              cpu1: tuple[float | None, str | None]) -> dict:
        cpu_s = cpu1[0] - cpu0[0] if cpu0[0] is not None and cpu1[0] is not None else None
        ms = round(self.interval_s * 1e3)
        note = (f"no process started in the window: one long-running `powermetrics -i {ms}`, started before "
                "the first window, streamed the samples; cpu_s is its user+system time and its reader thread's "
                "during the window, wall_s the time it ran in the window")
        if cpu_s is None:
            note += f" (its CPU time could not be read: {cpu0[1] or cpu1[1]})"
        return {"processes": 0, "background": 0, "cpu_s": cpu_s, "wall_s": window, "note": note}

    def close(self) -> None:
        """Terminate and wait for the streaming process (the next start() launches a new one)."""
        if self._closer is not None:
            self._closer()
        self._stream = self._closer = None
