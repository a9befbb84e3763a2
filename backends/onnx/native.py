"""ctypes access to the library's plain C API (no onnxruntime): which kernel path runs, a direct matmul,
the packed size and the F16 GEMV (the read-bandwidth probe lives in tritbench.measure.bandwidth)."""

from __future__ import annotations

import ctypes
import functools

import numpy as np

from tritbench.backends.onnx.build import library_path


@functools.cache
def _lib() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(library_path()))
    lib.tritbench_kernel_name.restype = ctypes.c_char_p
    lib.tritbench_available_kernels.restype = ctypes.c_char_p
    lib.tritbench_packed_size.restype = ctypes.c_int64
    lib.tritbench_packed_size.argtypes = [ctypes.c_int64, ctypes.c_int64, ctypes.c_char_p]
    lib.tritbench_f16_kernel_name.restype = ctypes.c_char_p
    lib.tritbench_f16_matmul.restype = ctypes.c_int
    lib.tritbench_f16_matmul.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                                         ctypes.c_int64, ctypes.c_void_p]
    lib.tritbench_op_clock_stop.restype = ctypes.c_uint64
    lib.tritbench_matmul.restype = ctypes.c_int
    lib.tritbench_matmul.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64,
                                     ctypes.c_char_p, ctypes.c_int64, ctypes.c_float, ctypes.c_void_p,
                                     ctypes.c_char_p, ctypes.c_size_t]
    return lib


def kernel_name() -> str | None:
    """The kernel path the next call will use (TRITBENCH_KERNEL honoured); None if TRITBENCH_KERNEL is invalid."""
    name = _lib().tritbench_kernel_name()
    return name.decode() if name else None


def available_kernels() -> list[str]:
    """Kernel paths this CPU and build can run, best first (e.g. ['avx2', 'portable'])."""
    return _lib().tritbench_available_kernels().decode().split(",")


def packed_size(K: int, N: int, packing: str) -> int:
    """The C library's packed size (must agree with packing.packed_size)."""
    return int(_lib().tritbench_packed_size(K, N, packing.encode()))


def matmul(x: np.ndarray, packed: np.ndarray, K: int, N: int, packing: str, scale: float) -> np.ndarray:
    """TernaryMatMul on the calling thread, without onnxruntime: x [..., K] -> [..., N] float32."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim < 1 or x.shape[-1] != K:
        raise ValueError(f"x must have shape [..., K={K}], got {x.shape}")
    packed = np.ascontiguousarray(packed, dtype=np.uint8)
    M = int(np.prod(x.shape[:-1], dtype=np.int64)) if x.ndim > 1 else 1
    y = np.empty((*x.shape[:-1], N), np.float32)
    err = ctypes.create_string_buffer(512)
    rc = _lib().tritbench_matmul(x.ctypes.data, M, x.shape[-1], packed.ctypes.data, packed.size, packing.encode(), N,
                                 scale, y.ctypes.data, err, len(err))
    if rc != 0:
        raise ValueError(err.value.decode())
    return y


def f16_kernel_name() -> str:
    """The F16 GEMV path the next call uses: 'f16c' (x86 AVX2 + FMA + F16C) or 'portable'."""
    return _lib().tritbench_f16_kernel_name().decode()


def f16_matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """x [..., K] float32 times w [N, K] float16, transposed: [..., N] float32, on the calling thread."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    w = np.ascontiguousarray(w, dtype=np.float16)
    if w.ndim != 2 or x.ndim < 1 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"x [..., K] and w [N, K] do not match: {x.shape}, {w.shape}")
    M = int(np.prod(x.shape[:-1], dtype=np.int64)) if x.ndim > 1 else 1
    y = np.empty((*x.shape[:-1], w.shape[0]), np.float32)
    if _lib().tritbench_f16_matmul(x.ctypes.data, M, w.shape[1], w.ctypes.data, w.shape[0], y.ctypes.data):
        raise ValueError("F16 matmul: bad shape")
    return y


def op_clock_start() -> None:
    """Start summing the wall time inside TernaryMatMul and F16MatMul calls, in any session of this process."""
    _lib().tritbench_op_clock_start()


def op_clock_stop() -> int:
    """Stop the ops' clock; the nanoseconds spent inside their calls since op_clock_start."""
    return int(_lib().tritbench_op_clock_stop())
