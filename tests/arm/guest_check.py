"""Run inside the emulated aarch64 Python: load the aarch64 build of the op in onnxruntime and compare
every kernel path with the int64 numpy reference, bit for bit. Prints one line per check, then 'all ok'.

Usage: python guest_check.py LIBRARY KERNEL[,KERNEL...]
"""

import os
import sys

import numpy as np
import onnxruntime as ort

from tritbench.backends.onnx.graphs import ternary_matmul_model
from tritbench.backends.onnx.packing import PACKINGS, reference_matmul

SHAPES = [(1, 256, 64), (3, 100, 33), (8, 520, 130), (1, 4099, 7)]


def session(model, lib: str) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.register_custom_ops_library(lib)
    return ort.InferenceSession(model.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"])


def main(lib: str, kernels: list[str]) -> int:
    rng = np.random.default_rng(0)
    failures = 0
    for kernel in kernels:
        os.environ["TRITBENCH_KERNEL"] = kernel  # read by the library at every call
        for packing in PACKINGS:
            for M, K, N in SHAPES:
                t = rng.integers(-1, 2, size=(K, N), dtype=np.int8)
                x = rng.standard_normal((M, K)).astype(np.float32)
                x[0, :] = 0.0 if M > 1 else x[0, :]  # an all-zero token
                y = session(ternary_matmul_model(t, 0.5, packing, M=M), lib).run(None, {"X": x})[0]
                ok = np.array_equal(y, reference_matmul(x, t, 0.5))
                failures += not ok
                print(f"{kernel} {packing} M={M} K={K} N={N}: {'ok' if ok else 'MISMATCH'}", flush=True)
    print("all ok" if not failures else f"{failures} mismatches")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2].split(",")))
