"""numpy FP32 matmul as a kernel baseline: what plain numpy (and the BLAS under it) does with the same
ternary weights stored as float32."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from tritbench.models.matrices import ternary_matrix
from tritbench.plugin import MAX_WEIGHT_COPIES, FormatInfo, Option


class NumpyKernelSession:
    def __init__(self, M: int, K: int, N: int, seed: int, min_total_bytes: int):
        t, scale = ternary_matrix(K, N, seed)
        w = t.astype(np.float32) * np.float32(scale)
        self.weight_bytes = w.nbytes
        self.copies = min(MAX_WEIGHT_COPIES, max(1, -(-min_total_bytes // w.nbytes)))
        # distinct buffers (np.copy), so each call reads its own weights from memory
        self.weights = [w] + [w.copy() for _ in range(self.copies - 1)]
        self.x = np.random.default_rng(seed).standard_normal((M, K), dtype=np.float32)
        self.y = np.empty((M, N), dtype=np.float32)
        self._next = 0

    def effective_settings(self) -> dict:
        blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
        return {"blas": blas.get("name"), "blas_version": blas.get("version")}

    def run(self) -> None:
        np.matmul(self.x, self.weights[self._next], out=self.y)
        self._next = (self._next + 1) % self.copies

    def close(self) -> None:
        self.weights = []


class NumpyBackend:
    name: ClassVar[str] = "numpy"
    formats: ClassVar[dict[str, FormatInfo]] = {"fp32": FormatInfo(bits=32.0)}
    workload_kinds: ClassVar[tuple[str, ...]] = ("gemv", "gemm")
    libraries: ClassVar[tuple[str, ...]] = ("numpy",)
    options: ClassVar[dict[str, Option]] = {}

    def info(self) -> dict:
        return {"version": np.__version__}

    def open_kernel(self, fmt, M, K, N, n_threads, options, seed, min_total_bytes) -> NumpyKernelSession:
        return NumpyKernelSession(M, K, N, seed, min_total_bytes)
