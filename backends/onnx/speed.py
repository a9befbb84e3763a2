"""Quick kernel speed check (not a test, not the benchmark): TernaryMatMul vs onnxruntime's baselines.

    .venv/bin/python -m backends.onnx.speed [--shapes 4096x4096,4096x11008,11008x4096] [--m 1,8,64]

One intra-op thread; per-thread CPU time of `session.run` (with one thread onnxruntime runs the kernel on
the calling thread). Cold weights: every model is loaded into enough sessions (each holding its own copy of
the weights) that cycling through them streams more than twice the last-level cache between two runs of
the same session, so only the weights are cold, not the code or onnxruntime's own data. Median of reps.
Prints a markdown table: ternary time, baseline / ternary time ratios, and packed-weight GB/s next to one
core's read bandwidth (bench.bandwidth's probe).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import onnxruntime as ort

from backends.onnx import graphs, native
from backends.onnx.packing import PACKINGS, packed_size
from bench.bandwidth import read_bandwidth

CACHE_BYTES = 64 << 20  # stream at least this much (2x a 32 MB L3) between two runs of one session
MAX_COPIES = 40


def _weight_bytes(fmt: str, K: int, N: int) -> int:
    if fmt in PACKINGS:
        return packed_size(K, N, fmt)
    bits = {"fp32": 32, "fp16": 32, "int8": 8, "nbits4": 5, "nbits2": 3, "nbits2_64": 2.5}[fmt]
    return int(K * N * bits / 8)


def _model(fmt: str, t: np.ndarray):
    if fmt in PACKINGS:
        return graphs.ternary_matmul_model(t, 0.5, fmt), True
    if fmt == "nbits2_64":
        return graphs.baseline_model("nbits2", t, 0.5, block_size=64), False
    return graphs.baseline_model(fmt, t, 0.5), False


def _sessions(fmt: str, t: np.ndarray) -> list[ort.InferenceSession]:
    model, custom = _model(fmt, t)
    blob = model.SerializeToString()
    copies = min(MAX_COPIES, max(2, -(-CACHE_BYTES // _weight_bytes(fmt, *t.shape)) + 1))
    out = []
    for _ in range(copies):
        if custom:
            opts = graphs.session_options(1)
        else:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
        out.append(ort.InferenceSession(blob, opts, providers=["CPUExecutionProvider"]))
    return out


def time_cold(sessions: list[ort.InferenceSession], x: np.ndarray, rounds: int) -> float:
    """Median per-thread CPU seconds of a run whose weights were evicted by the other sessions' runs."""
    feed = {"X": x}
    for s in sessions:
        s.run(None, feed)
    times = []
    for _ in range(rounds):
        for s in sessions:
            t0 = time.thread_time_ns()
            s.run(None, feed)
            times.append(time.thread_time_ns() - t0)
    return float(np.median(times)) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="4096x4096,4096x11008,11008x4096")
    parser.add_argument("--m", default="1,8,64")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baselines", default="fp32,nbits2,nbits2_64,nbits4,int8")
    parser.add_argument("--packings", default=",".join(PACKINGS))
    args = parser.parse_args()
    probe = read_bandwidth(1)
    bw = probe["gbps"]
    print(f"kernel path: {native.kernel_name()}; one-core read bandwidth: {bw:.1f} GB/s ({probe['method']})\n")
    packings = [p for p in args.packings.split(",") if p]
    baselines = [b for b in args.baselines.split(",") if b]
    header = ["K x N", "M", "packing", "us", "GB/s", "% read bw"] + [f"{b} (x)" for b in baselines]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    rng = np.random.default_rng(0)
    for shape in args.shapes.split(","):
        K, N = (int(v) for v in shape.split("x"))
        t = rng.integers(-1, 2, (K, N)).astype(np.int8)
        sessions = {f: _sessions(f, t) for f in packings + baselines}
        for M in (int(v) for v in args.m.split(",")):
            x = rng.standard_normal((M, K)).astype(np.float32)
            secs = {f: time_cold(s, x.astype(np.float16) if f == "fp16" else x, args.rounds)
                    for f, s in sessions.items()}
            for p in packings:
                gbs = packed_size(K, N, p) / secs[p] / 1e9
                ratios = [f"{secs[b] / secs[p]:.2f} ({secs[b] * 1e6:.0f} us)" for b in baselines]
                row = [f"{K}x{N}", str(M), p, f"{secs[p] * 1e6:.0f}", f"{gbs:.1f}", f"{100 * gbs / bw:.0f}"] + ratios
                print("| " + " | ".join(row) + " |", flush=True)
        del sessions


if __name__ == "__main__":
    main()
