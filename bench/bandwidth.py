"""A streaming-read bandwidth probe: how many GB/s this machine's cores can read from DRAM.

Kernel results are reported as a fraction of it, so the probe runs in the same session as the
kernels it judges. It reduces a buffer several times the last-level cache with a bitwise OR
(the cheapest vectorised reduction numpy has), taking the best of several passes.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from bench.machine import sysfs_root

MIN_BUFFER_BYTES = 256 << 20


def parse_cache_size(text: str) -> int | None:
    """sysfs cache `size` text ('32768K', '8M') in bytes."""
    text = text.strip().upper()
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    try:
        if text and text[-1] in units:
            return int(text[:-1]) * units[text[-1]]
        return int(text) if text else None
    except ValueError:
        return None


def last_level_cache_bytes(root: Path | None = None) -> int | None:
    """Size of cpu0's largest cache level from sysfs, None where it is not exposed."""
    base = (root or sysfs_root()) / "sys/devices/system/cpu/cpu0/cache"
    best: tuple[int, int] | None = None
    for index in sorted(base.glob("index*")):
        try:
            level = int((index / "level").read_text())
            kind = (index / "type").read_text().strip()
            size = parse_cache_size((index / "size").read_text())
        except (OSError, ValueError):
            continue
        if kind in ("Unified", "Data") and size and (best is None or level > best[0]):
            best = (level, size)
    return best[1] if best else None


def _pass(parts: list[np.ndarray]) -> float:
    if len(parts) == 1:
        t0 = time.perf_counter()
        np.bitwise_or.reduce(parts[0])
        return time.perf_counter() - t0
    threads = [threading.Thread(target=np.bitwise_or.reduce, args=(p,)) for p in parts]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def read_bandwidth(n_threads: int = 1, buffer_bytes: int | None = None, passes: int = 5) -> dict:
    """Best-of-`passes` read bandwidth in GB/s (1e9 bytes/s) with `n_threads` readers."""
    llc = last_level_cache_bytes()
    size = buffer_bytes or max(MIN_BUFFER_BYTES, 4 * (llc or 0))
    buf = np.ones(size // 8, dtype=np.uint64)  # touched once here, so pages are resident
    parts = np.array_split(buf, n_threads)
    best = min(_pass(parts) for _ in range(passes))
    return {
        "gbps": buf.nbytes / best / 1e9,
        "n_threads": n_threads,
        "buffer_bytes": int(buf.nbytes),
        "llc_bytes": llc,
        "method": f"numpy bitwise_or.reduce over uint64, best of {passes} passes",
    }
