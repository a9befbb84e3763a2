"""The meter interface and the polling engine every hardware meter shares.

A meter is built once (it probes the hardware then), then started and stopped around each window.
It never raises for missing or failing hardware: `stop()` returns an `unavailable:` reading instead.

The engine reads two kinds of channel on every poll:
- counters (cumulative microjoules, e.g. RAPL `energy_uj`): differenced, with wraparound corrected
  at the counter's range; polls must come often enough that no two are a full range apart;
- power (watts, e.g. hwmon `power1_input` or an INA3221 rail): integrated with the trapezoid rule.

A meter whose read runs a program (`vcgencmd` on the Pi 5) sets `_command` and each reading then
records that cost in `sampling_cost` (see `command_cost`): it is never hidden in the figure.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from tritbench.measure.energy.reading import EnergyReading

try:
    import resource
except ImportError:  # not on Windows, where no command-running meter exists
    resource = None  # type: ignore[assignment]

Reader = Callable[[Path], str]


def children_cpu_s() -> float:
    """User + system CPU seconds of this process's children that have been waited for (0 without `resource`)."""
    if resource is None:
        return 0.0
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def command_cost(command: str, processes: int, background: int, cpu_s: float, wall_s: float) -> dict:
    """A reading's `sampling_cost` when every sample ran `command` once, in its own process.

    Children's CPU comes from getrusage(RUSAGE_CHILDREN) around each (waited-for) run; it is
    process-wide, so a child of the measured work itself reaped meanwhile would be counted too.
    """
    return {"processes": processes, "background": background, "cpu_s": cpu_s, "wall_s": wall_s,
            "note": f"one `{command}` process per sample: cpu_s is their user+system time plus the polling "
                    "thread's own while running them, wall_s their total run time; the `background` ones ran "
                    "alongside the measured work, the others in start() and stop(), outside the caller's timed "
                    "region"}


class MeterError(Exception):
    """A meter-specific failure whose message is ready for the user (without the `<kind>: ` prefix)."""


def read_text(path: Path) -> str:
    """The default reader of sysfs files (tests may pass another that raises, e.g. PermissionError). Labels are
    free text a driver (or a captured tree) may fill with any bytes: undecodable ones become U+FFFD."""
    return path.read_text(errors="replace")


def read_int(read: Reader, path: Path) -> int:
    text = read(path).strip()
    try:
        return int(text)
    except ValueError:
        raise MeterError(f"{path} holds {text[:40]!r}, not an integer") from None


def read_label(read: Reader, path: Path) -> str | None:
    try:
        return read(path).strip().strip("\x00") or None
    except OSError:
        return None


def clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


@runtime_checkable
class Meter(Protocol):
    """An energy meter: `start()` and `stop()` around a window, or `with meter:` then `meter.reading`."""

    kind: str
    available: bool
    reason: str | None
    domains: list[str]
    reading: EnergyReading | None

    def start(self) -> None: ...

    def stop(self) -> EnergyReading: ...

    def close(self) -> None: ...

    def __enter__(self) -> Meter: ...

    def __exit__(self, *exc: object) -> None: ...


class BaseMeter:
    """Start/stop bookkeeping and error reporting shared by all meters.

    Subclasses set `available`, `reason`, `domains` in `__init__` (probing the hardware) and implement
    `_begin()` / `_end()`. `found` says the hardware exists even if it cannot be used (e.g. EACCES),
    so that `auto` can surface that reason instead of "nothing found".
    """

    kind = "meter"

    def __init__(self) -> None:
        self.available = False
        self.reason: str | None = None
        self.found = False
        self.domains: list[str] = []
        self.parts: list[str] = []
        self.reading: EnergyReading | None = None
        self._running = False
        self._failure: str | None = None

    def _unavailable(self, reason: str, *, found: bool = False) -> None:
        self.available, self.found, self.reason = False, found, f"{self.kind}: {reason}"

    def _open_root(self, root: Path | str | None, subdir: Path | str | None = None) -> bool:
        """Set `self.root` (default: the sysfs root) and check that it, and `subdir` under it, exist;
        if not, the meter is unavailable with the reason and this returns False."""
        from tritbench.machine import sysfs_root

        self.root = Path(root) if root is not None else sysfs_root()
        if not self.root.is_dir():
            self._unavailable(f"sysfs root {self.root} does not exist")
            return False
        if subdir is not None and not (self.root / subdir).is_dir():
            self._unavailable(f"{self.root / subdir} not found")
            return False
        return True

    def _ready(self, domains: list[str], parts: list[str] | None = None) -> None:
        self.available, self.found, self.reason = True, True, None
        self.domains, self.parts = list(domains), list(parts or [])

    def describe(self, exc: BaseException) -> str:
        """One line for the user, prefixed with the meter's kind."""
        if isinstance(exc, MeterError):
            return f"{self.kind}: {exc}"
        if isinstance(exc, FileNotFoundError):
            return f"{self.kind}: {exc.filename or exc} disappeared during the measurement"
        if isinstance(exc, PermissionError):
            return f"{self.kind}: permission denied reading {exc.filename or exc}"
        if isinstance(exc, OSError):
            return f"{self.kind}: cannot read {exc.filename or ''}: {exc.strerror or exc}".replace(" :", ":")
        if isinstance(exc, subprocess.TimeoutExpired):
            return f"{self.kind}: {' '.join(map(str, exc.cmd))} did not answer within {exc.timeout:g} s"
        return f"{self.kind}: {type(exc).__name__}: {exc}"

    def probe_failure(self, exc: BaseException) -> str:
        """Why the hardware, found when the meter was built, cannot be read (without the kind prefix)."""
        if isinstance(exc, OSError) and not isinstance(exc, PermissionError) and exc.filename:
            return f"cannot read {exc.filename}: {exc.strerror or exc}"
        return self.describe(exc).removeprefix(f"{self.kind}: ")

    def start(self) -> None:
        """Begin a window (a no-op for an unavailable meter)."""
        self.reading = None
        if not self.available:
            return
        if self._running:
            raise RuntimeError(f"{self.kind} meter started twice")
        self._running, self._failure = True, None
        try:
            self._begin()
        except Exception as exc:  # a meter never stops the benchmark; the reading will say what happened
            self._failure = self.describe(exc)

    def stop(self) -> EnergyReading:
        """End the window and return its reading (an `unavailable:` one if anything went wrong)."""
        if not self.available:
            reading = EnergyReading.unavailable(self.reason or f"{self.kind}: not available")
        elif not self._running:
            reading = EnergyReading.unavailable(f"{self.kind}: stop() without start()")
        else:
            self._running = False
            try:
                reading = self._end()
            except Exception as exc:  # as in start()
                reading = EnergyReading.unavailable(self._failure or self.describe(exc))
            if self._failure:
                reading = EnergyReading.unavailable(self._failure)
            cost = self._cost_so_far() if not reading.available and reading.sampling_cost is None else None
            if cost is not None:
                reading = EnergyReading.unavailable(reading.reason or "?", sampling_cost=cost)
        self.reading = reading
        return reading

    def close(self) -> None:
        """Release what the meter keeps between windows (a streaming process); a no-op for most meters."""

    def __enter__(self) -> BaseMeter:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _begin(self) -> None:
        raise NotImplementedError

    def _end(self) -> EnergyReading:
        raise NotImplementedError

    def _cost_so_far(self) -> dict | None:
        """The sampling cost of a window that failed (a failed window may still have spawned processes)."""
        return None


class UnavailableMeter(BaseMeter):
    """A meter that only ever says why it cannot measure (`--energy none`, nothing found...)."""

    def __init__(self, kind: str, reason: str, *, found: bool = False) -> None:
        super().__init__()
        self.kind, self.reason, self.found = kind, reason, found


class PollingMeter(BaseMeter):
    """Reads counters and/or power channels at start, every `interval_s` in a background thread, and at stop.

    Subclasses set in `__init__`: `source` (the name in `measured:<source>/...`), `interval_s`, and
    `_read_counters` (-> {domain: microjoules}, with `_wrap_uj` {domain: range or None}) and/or
    `_read_power` (-> {domain: watts}); `_stall_s` is the longest gap between counter reads that
    cannot hide a wrap (None: no check). Summed domains are `domains`; `parts` are read but not added.
    A meter whose reads run a program sets `_command` (its name): each poll is then counted as one
    process and its CPU and wall time go into the reading's `sampling_cost`.
    """

    source = "polled"
    MIN_INTERVAL_S = 0.01

    def __init__(self) -> None:
        super().__init__()
        self.interval_s = 0.1
        self._read_counters: Callable[[], dict[str, int]] | None = None
        self._read_power: Callable[[], dict[str, float]] | None = None
        self._wrap_uj: dict[str, int | None] = {}
        self._stall_s: float | None = None
        self._note: str | None = None
        self._command: str | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._halt = threading.Event()

    def _interval(self, interval_s: float | None, default: float, min_interval_s: float | None) -> float:
        """The polling interval: the one asked for (or the source's default), never below the floor."""
        floor = self.MIN_INTERVAL_S if min_interval_s is None else min_interval_s
        return max(floor, interval_s or default)

    def _begin(self) -> None:
        self._joules = dict.fromkeys(self.domains + self.parts, 0.0)
        self._wraps = self._samples = 0
        self._counts: dict[str, int] = {}
        self._power: dict[str, float] = {}
        self._t_first = self._t_last = 0.0
        self._cost_cpu_s = self._cost_wall_s = 0.0
        self._cost_processes = self._cost_background = 0
        self._thread = None
        self._poll(first=True)
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"tritbench-energy-{self.kind}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        next_t = time.perf_counter() + self.interval_s
        while not self._halt.wait(max(0.0, next_t - time.perf_counter())):
            next_t += self.interval_s
            try:
                self._poll(background=True)
            except Exception as exc:  # any failure, even unforeseen, must void the window, not shorten it
                self._failure = self.describe(exc)
                return
            # after a stall, poll again at once rather than in a burst of catch-up polls
            next_t = max(next_t, time.perf_counter())

    def _end(self) -> EnergyReading:
        self._halt.set()
        if self._thread is not None:
            self._thread.join(timeout=max(10.0, 3 * self.interval_s))
            if self._thread.is_alive():
                raise MeterError("the polling thread did not stop")
        if self._failure:
            return EnergyReading.unavailable(self._failure)
        self._poll()
        window = self._t_last - self._t_first
        note = self._note
        if self._read_counters is not None and window < 0.1:
            note = "; ".join(filter(None, [note, "window under 0.1 s: counters update about every 1 ms"]))
        return EnergyReading.measured(
            self.source, {d: self._joules[d] for d in self.domains}, window, samples=self._samples,
            wraps=self._wraps, parts={d: self._joules[d] for d in self.parts}, note=note,
            sampling_cost=self._cost_so_far())

    def _cost_so_far(self) -> dict | None:
        if self._command is None or not hasattr(self, "_cost_cpu_s"):
            return None
        with self._lock:
            return command_cost(self._command, self._cost_processes, self._cost_background, self._cost_cpu_s,
                                self._cost_wall_s)

    def _read_channels(self, background: bool) -> tuple[dict[str, int], dict[str, float], float, float]:
        """Counters, power, and when the read began and ended; a command's cost is counted even if it fails."""
        cpu0 = children_cpu_s() + time.thread_time() if self._command is not None else 0.0
        t0 = time.perf_counter()
        try:
            counts = self._read_counters() if self._read_counters else {}
            power = self._read_power() if self._read_power else {}
        finally:
            t1 = time.perf_counter()
            if self._command is not None:  # the command has been waited for: its time is in RUSAGE_CHILDREN
                cpu_s = children_cpu_s() + time.thread_time() - cpu0
                with self._lock:
                    self._cost_processes += 1
                    self._cost_background += background
                    self._cost_cpu_s += cpu_s
                    self._cost_wall_s += t1 - t0
        return counts, power, t0, t1

    def _poll(self, first: bool = False, background: bool = False) -> None:
        counts, power, t0, t1 = self._read_channels(background)
        t = (t0 + t1) / 2  # a slow command's reading belongs to the middle of its call
        tracked = self.domains + self.parts
        for d in tracked:
            if d not in counts and d not in power:
                raise MeterError(f"{d} is missing from a reading")
        counts = {d: v for d, v in counts.items() if d in tracked}
        power = {d: v for d, v in power.items() if d in tracked}
        with self._lock:
            if not first:
                gap = t - self._t_last
                if counts and self._stall_s is not None and gap > self._stall_s:
                    raise MeterError(
                        f"{gap:.2f} s between counter reads, longer than the {self._stall_s:.2f} s a counter "
                        "can take to wrap: wraps may have been missed")
                for d, value in counts.items():
                    delta = value - self._counts[d]
                    if delta < 0:
                        wrap = self._wrap_uj.get(d)
                        if not wrap:
                            raise MeterError(f"the {d} counter went backwards ({self._counts[d]} -> {value})")
                        delta += wrap
                        self._wraps += 1
                    self._joules[d] += delta / 1e6
                for d, watts in power.items():
                    self._joules[d] += (self._power[d] + watts) / 2 * gap
            else:
                self._t_first = t
            self._counts, self._power, self._t_last = counts, power, t
            self._samples += 1


def run_command(cmd: list[str], timeout: float = 10.0) -> str:
    """stdout of `cmd`; a missing program raises FileNotFoundError, a failure MeterError with its stderr."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        detail = f": {lines[-1]}" if lines else ""
        raise MeterError(f"{' '.join(cmd)} exited with {proc.returncode}{detail}")
    return proc.stdout
