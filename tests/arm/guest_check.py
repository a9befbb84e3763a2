"""Run inside the emulated aarch64 Python: load the aarch64 build of the op in onnxruntime and compare
every kernel path with the int64 numpy reference, bit for bit; then the F16 GEMV (the decoder's F16 head) on
the same path names: every half widened exactly, sums within float32 rounding of float64; then the attention
op on an f16 cache. Prints one line per check, then 'all ok'.

Usage: python guest_check.py LIBRARY KERNEL[,KERNEL...]
"""

import ctypes
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort

from tritbench.backends.onnx.graphs import attention_model, ternary_matmul_model
from tritbench.backends.onnx.packing import PACKINGS, reference_matmul
from tritbench.backends.onnx.reference import group_query_attention

SHAPES = [(1, 256, 64), (3, 100, 33), (8, 520, 130), (1, 4099, 7)]


def session(model, lib: str) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.register_custom_ops_library(lib)
    return ort.InferenceSession(model.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"])


F16_SHAPES = [(1, 768, 200), (3, 37, 70), (2, 4099, 9)]
# every kind of half: subnormals, the largest normal, signed zeros, one, minus one
HALVES = np.array([1, 0x3FF, 0x400, 0x7BFF, 0x8001, 0x3C00, 0xBC00, 0x1234, 0, 0x8000], np.uint16)


def f16_checks(lib: str, kernel: str, rng) -> int:
    """F16 GEMV through the library's C entry point: the path's name, exact widening, float32-close sums."""
    c = ctypes.CDLL(lib)
    c.tritbench_f16_kernel_name.restype = ctypes.c_char_p
    c.tritbench_f16_matmul.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                                       ctypes.c_int64, ctypes.c_void_p]
    name = c.tritbench_f16_kernel_name().decode()

    def matmul(x, w):
        y = np.empty((x.shape[0], w.shape[0]), np.float32)
        assert c.tritbench_f16_matmul(x.ctypes.data, x.shape[0], x.shape[1], w.ctypes.data, w.shape[0],
                                      y.ctypes.data) == 0
        return y

    failures = 0
    if name != kernel:
        print(f"f16 {kernel}: the library ran {name!r}: MISMATCH", flush=True)
        return 1
    w = HALVES.view(np.float16).reshape(1, -1)
    ok = np.array_equal(matmul(np.eye(10, dtype=np.float32), w).ravel(), w.astype(np.float32).ravel())
    failures += not ok
    print(f"f16 {kernel} widening of every kind of half: {'ok' if ok else 'MISMATCH'}", flush=True)
    for M, K, N in F16_SHAPES:
        x = rng.standard_normal((M, K)).astype(np.float32)
        w = (rng.standard_normal((N, K)) * 0.02).astype(np.float16)
        want = x.astype(np.float64) @ w.astype(np.float64).T
        ok = bool(np.abs(matmul(x, w) - want).max() <= 1e-5 * np.abs(want).max())
        failures += not ok
        print(f"f16 {kernel} M={M} K={K} N={N}: {'ok' if ok else 'MISMATCH'}", flush=True)
    return failures


def float_work_checks(lib: str, kernel: str, rng) -> int:
    """The op's float work around its kernels: the SwiGLU epilogue (silu(gate) * up within float32 rounding) and a
    float16 X's exact widening."""
    t = rng.integers(-1, 2, size=(96, 74), dtype=np.int8)
    x = rng.standard_normal((3, 96)).astype(np.float32)
    x[0] *= 60  # gates beyond +-88, where float32 e^-x overflows
    model = ternary_matmul_model(t, 0.7, "tern2", M=3)
    model.graph.node[0].attribute.append(onnx.helper.make_attribute("activation", "swiglu"))
    model.graph.output[0].CopyFrom(onnx.helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, [3, 37]))
    z = reference_matmul(x, t, 0.7).astype(np.float64)
    want = z[:, :37] / (1 + np.exp(-z[:, :37])) * z[:, 37:]
    y = session(model, lib).run(None, {"X": x})[0]
    ok = bool(np.abs(y - want).max() <= 1e-6 * np.abs(want).max())
    print(f"{kernel} swiglu: {'ok' if ok else 'MISMATCH'}", flush=True)
    # a float16 X is widened exactly (on this path's widening): bit for bit its float32 widening's result
    x16 = (rng.standard_normal((3, 203)) * 4).astype(np.float16)
    t16 = rng.integers(-1, 2, size=(203, 40), dtype=np.int8)
    model = ternary_matmul_model(t16, 0.5, "tern2", M=3)
    model.graph.input[0].CopyFrom(onnx.helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT16, [3, 203]))
    same = np.array_equal(session(model, lib).run(None, {"X": x16})[0],
                          reference_matmul(x16.astype(np.float32), t16, 0.5))
    print(f"{kernel} float16 X: {'ok' if same else 'MISMATCH'}", flush=True)
    return int(not ok) + int(not same)


def attention_checks(lib: str, kernel: str, rng) -> int:
    """tritbench.GroupQueryAttention on an f16 cache, in place: the rows it writes bit for bit, its output within
    float32 rounding of float64; head size 64 (this path's row loops) and 36 (the portable fallback)."""
    failures = 0
    for D, rot_half in ((64, 32), (36, 8)):
        H, KVH, P, past, S = 4, 2, 16, [5], 3
        cos, sin = rng.uniform(-1, 1, (2, P, rot_half)).astype(np.float32)
        sess = session(attention_model(H, KVH, P, cos, sin, "f16", do_rotary=1, rotary_interleaved=1), lib)
        qkv = rng.standard_normal((1, S, (H + 2 * KVH) * D)).astype(np.float32)
        pk, pv = rng.standard_normal((2, 1, KVH, P, D)).astype(np.float16)
        want_k, want_v, want_o = group_query_attention(qkv, pk, pv, past, H, cos, sin, True)
        k, v = (ort.OrtValue.ortvalue_from_shape_and_type(c.shape, c.dtype) for c in (pk, pv))
        k.update_inplace(pk)
        v.update_inplace(pv)
        bind = sess.io_binding()
        bind.bind_cpu_input("q", qkv)
        bind.bind_ortvalue_input("pk", k)
        bind.bind_ortvalue_input("pv", v)
        bind.bind_cpu_input("sk", np.array([past[0] + S - 1], np.int32))
        bind.bind_cpu_input("tot", np.array(past[0] + S, np.int32))
        bind.bind_output("o")
        bind.bind_ortvalue_output("k", k)
        bind.bind_ortvalue_output("v", v)
        sess.run_with_iobinding(bind)
        o = bind.get_outputs()[0].numpy()
        ok = (np.array_equal(k.numpy(), want_k) and np.array_equal(v.numpy(), want_v) and
              bool(np.abs(o - want_o).max() <= 2e-6 * np.abs(want_o).max()))
        failures += not ok
        print(f"{kernel} attention D={D}: {'ok' if ok else 'MISMATCH'}", flush=True)
    return failures


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
        failures += float_work_checks(lib, kernel, rng) + f16_checks(lib, kernel, rng)
        failures += attention_checks(lib, kernel, rng)
    print("all ok" if not failures else f"{failures} mismatches")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2].split(",")))
