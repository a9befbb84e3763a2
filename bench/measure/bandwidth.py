"""A streaming-read bandwidth probe: how many GB/s this machine's cores can read from DRAM.

Kernel results are reported as a fraction of it, so the probe runs in the same session as the
kernels it judges. Each thread reads its part of a buffer several times the last-level cache with
bench/csrc/stream_read.c (through ctypes, which releases the GIL), as several far-apart streams
interleaved a cache line at a time: one sequential stream per core leaves bandwidth unused (numpy's
bitwise_or.reduce read ~25% less than a FP32 GEMV streams its weights). Best of several passes and
of a few stream counts. Without the built library it falls back to the numpy reduction, and says so.
"""

from __future__ import annotations

import ctypes
import functools
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from tritbench.machine import emulator_command, sysfs_root

MIN_BUFFER_BYTES = 256 << 20
# Built by `make` (bench/csrc/Makefile).
LIB_PATH = Path(__file__).resolve().parent.parent / "lib" / "libtritbench_stream.so"
# Streams per thread tried in each pass, the best kept: on a 2-core Xeon VM one core read ~8-10 GB/s
# with 1 stream, ~10-12 with 2, ~11-12.5 with 4 or 8 (either could win, the machine being noisy) and no
# more with 16.
DEFAULT_STREAMS = (4, 8)


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
            level = int((index / "level").read_text(errors="replace"))
            kind = (index / "type").read_text(errors="replace").strip()
            size = parse_cache_size((index / "size").read_text(errors="replace"))
        except (OSError, ValueError):
            continue
        if kind in ("Unified", "Data") and size and (best is None or level > best[0]):
            best = (level, size)
    return best[1] if best else None


@functools.cache
def _load(path: str) -> ctypes.CDLL | str:
    """The probe library, or why it is unavailable."""
    if not Path(path).exists():
        return "C probe not built: run make"
    try:
        lib = ctypes.CDLL(path)
        for fn in (lib.tb_stream_read, lib.tb_stream_read_portable):
            fn.restype = ctypes.c_uint64
            fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        lib.tb_stream_read_path.restype = ctypes.c_char_p
    except (OSError, AttributeError) as e:  # AttributeError: a stale build without these functions
        return f"C probe failed to load ({e}): run make"
    return lib


def stream_library() -> ctypes.CDLL | str:
    """The loaded C probe (from LIB_PATH), or a string saying why it is unavailable."""
    return _load(str(LIB_PATH))


def stream_xor(buf: np.ndarray, streams: int, portable: bool = False) -> int:
    """XOR of a contiguous buffer's bytes as uint64 words (a partial last word zero-padded), read by
    the C probe with `streams` interleaved streams; `portable` forces the non-SIMD path."""
    lib = stream_library()
    if isinstance(lib, str):
        raise RuntimeError(lib)
    if not buf.flags.c_contiguous:
        raise ValueError("buffer must be contiguous")
    fn = lib.tb_stream_read_portable if portable else lib.tb_stream_read
    return int(fn(buf.ctypes.data, buf.nbytes, streams))


def _timed(fn, jobs: list[tuple]) -> float:
    """Wall time of fn(*job) for every job, one thread per job, until the last one finishes."""
    if len(jobs) == 1:
        t0 = time.perf_counter()
        fn(*jobs[0])
        return time.perf_counter() - t0
    threads = [threading.Thread(target=fn, args=job) for job in jobs]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def _aligned_ones(nbytes: int) -> np.ndarray:
    """A page-aligned uint64 buffer of ones, touched once here so its pages are resident."""
    raw = np.ones(nbytes // 8 + 512, dtype=np.uint64)
    start = (-raw.ctypes.data % 4096) // 8
    return raw[start:start + nbytes // 8]


def _c_probe(lib: ctypes.CDLL, n_threads: int, size: int, passes: int,
             streams: tuple[int, ...]) -> tuple[float, int, str]:
    buf = _aligned_ones(size)
    # Per-thread parts start on page boundaries; the last takes the remainder.
    per = buf.nbytes // n_threads // 4096 * 4096
    starts = [buf.ctypes.data + i * per for i in range(n_threads)]
    sizes = [per] * (n_threads - 1) + [buf.nbytes - per * (n_threads - 1)]
    best: dict[int, float] = {}
    for _ in range(passes):  # stream counts alternate within a pass, so drift in the machine hits all
        for s in streams:
            t = _timed(lib.tb_stream_read, [(p, n, s) for p, n in zip(starts, sizes, strict=True)])
            best[s] = min(best.get(s, t), t)
    s_best = min(best, key=best.get)
    tried = f", best of {'/'.join(map(str, streams))}" if len(streams) > 1 else ""
    method = (f"C interleaved read, {s_best} streams per thread{tried}, "
              f"{lib.tb_stream_read_path().decode()}, best of {passes} passes")
    return buf.nbytes / best[s_best] / 1e9, int(buf.nbytes), method


def read_bandwidth(n_threads: int = 1, buffer_bytes: int | None = None, passes: int = 5,
                   streams: tuple[int, ...] = DEFAULT_STREAMS) -> dict:
    """Best-of-`passes` read bandwidth in GB/s (1e9 bytes/s) with `n_threads` readers, each reading
    its part as each of `streams` interleaved streams (the best count kept); the numpy reduction
    when the C probe is not built."""
    llc = last_level_cache_bytes()
    size = buffer_bytes or max(MIN_BUFFER_BYTES, 4 * (llc or 0))
    lib = stream_library()
    if isinstance(lib, str):
        buf = _aligned_ones(size)
        parts = [(p,) for p in np.array_split(buf, n_threads)]
        best = min(_timed(np.bitwise_or.reduce, parts) for _ in range(passes))
        gbps, nbytes = buf.nbytes / best / 1e9, int(buf.nbytes)
        method = f"numpy bitwise_or.reduce over uint64, best of {passes} passes ({lib})"
    else:
        gbps, nbytes, method = _c_probe(lib, n_threads, size, passes, streams)
    return {"gbps": gbps, "n_threads": n_threads, "buffer_bytes": nbytes, "llc_bytes": llc, "method": method}


def read_bandwidth_in_child(n_threads: int = 1) -> dict:
    """read_bandwidth(n_threads) measured in a child process. A harness that forks its workers must not
    touch the probe's buffer itself: a child's lifetime peak RSS (ru_maxrss) starts from its parent's
    high-water mark, so every later case would report the buffer as its own peak. Falls back to this
    process (and says so in `method`) if the child fails."""
    # under an emulator the child starts through it (an emulated process cannot exec its own binary)
    proc = subprocess.run([*emulator_command(), sys.executable, "-m", "tritbench.measure.bandwidth", str(n_threads)],
                          capture_output=True, text=True, timeout=600)
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        reading = read_bandwidth(n_threads)
        lines = (proc.stderr or "").strip().splitlines()
        reading["method"] += f" (in the harness: the probe's child failed: {lines[-1] if lines else proc.returncode})"
        return reading


if __name__ == "__main__":
    print(json.dumps(read_bandwidth(int(sys.argv[1]) if len(sys.argv) > 1 else 1)))
