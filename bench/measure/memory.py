"""Resident memory of the measuring process, per phase (load, prefill, decode).

Linux keeps a peak-RSS high-water mark (VmHWM) per process that the process can reset by writing
"5" to /proc/self/clear_refs; resetting it between phases gives each phase its own peak. RssAnon
and RssFile split heap from file-backed pages (mmap'd weights count as file-backed).
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

from tritbench.machine import sysfs_root

_FIELDS = {"VmHWM": "peak_rss_bytes", "VmRSS": "rss_bytes", "RssAnon": "rss_anon_bytes",
           "RssFile": "rss_file_bytes", "RssShmem": "rss_shmem_bytes"}


def parse_status(text: str) -> dict[str, int]:
    """Memory fields of /proc/<pid>/status text, in bytes."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in _FIELDS:
            parts = value.split()
            if parts and parts[0].isdigit():
                out[_FIELDS[key]] = int(parts[0]) * 1024 if parts[1:2] == ["kB"] else int(parts[0])
    return out


def ru_maxrss_bytes() -> int:
    """getrusage's peak RSS. Not this program's own on Linux: the kernel keeps it across execve and starts it at
    the spawning process's high-water mark (a child of a 500 MiB parent reads >= 500 MiB), so it is only the
    fallback where /proc is missing."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # KiB on Linux, bytes on macOS


def status_peak_bytes(status: Path) -> int | None:
    """VmHWM of a /proc/<pid>/status file (the process image's own peak since exec), None if unreadable."""
    try:
        return parse_status(status.read_text(errors="replace")).get("peak_rss_bytes")
    except OSError:
        return None


def process_peak_bytes(root: Path | None = None) -> int:
    """This process's peak RSS since it was exec'd: VmHWM, else getrusage (see ru_maxrss_bytes)."""
    peak = status_peak_bytes((root or sysfs_root()) / "proc/self/status")
    return peak if peak is not None else ru_maxrss_bytes()


class PhaseMemory:
    """Snapshots of this process's memory, with the peak reset at each phase start where possible."""

    def __init__(self, root: Path | None = None):
        self.proc = (root or sysfs_root()) / "proc/self"
        self.lifetime = status_peak_bytes(self.proc / "status") or 0  # VmHWM before any reset
        self.per_phase_peaks = self._reset()

    def _reset(self) -> bool:
        try:
            (self.proc / "clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def start_phase(self) -> None:
        if self.per_phase_peaks:
            self.peak()  # the reset forgets the peak so far: keep it for the process's lifetime peak
            self._reset()

    def peak(self) -> int:
        """The process's peak RSS since exec, over every phase reset (getrusage where /proc is missing)."""
        now = status_peak_bytes(self.proc / "status")
        if now is None:
            return ru_maxrss_bytes()
        self.lifetime = max(self.lifetime, now)
        return self.lifetime

    def snapshot(self) -> dict[str, int]:
        """Current and peak RSS; without a per-phase reset the peak is the process's lifetime peak."""
        try:
            snap = parse_status((self.proc / "status").read_text(errors="replace"))
        except OSError:
            snap = {}
        if "peak_rss_bytes" not in snap:
            snap["peak_rss_bytes"] = ru_maxrss_bytes()
        else:  # VmHWM: the phase's peak with a reset, else the process's own peak since exec
            self.lifetime = max(self.lifetime, snap["peak_rss_bytes"])
        return snap


def merge_peaks(a: dict | None, b: dict) -> dict:
    """Field-wise maximum of two snapshots (a phase measured over several repetitions)."""
    return {k: max(v, (a or {}).get(k, v)) for k, v in b.items()}
