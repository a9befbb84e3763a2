"""The onnxruntime backend: tritbench's add-only TernaryMatMul against onnxruntime's own kernels (gemv/gemm),
and a whole ternary decoder built on the op (pp/tg/pg, generation.py).

Every format multiplies by the same seeded ternary weights (`tritbench.models.matrices.ternary_matrix`). Calls
go through IO binding with preallocated input and output, so a call is the kernel plus onnxruntime's
dispatch, not Python tensor conversion.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from tritbench.models.matrices import ternary_matrix
from tritbench.plugin import MAX_WEIGHT_COPIES, FormatInfo, Option

# Speed-ups are over onnxruntime's FP32 MatMul on the same weights. Bits per weight of the MatMulNBits and
# int8 formats depend on the block size and the layer; records carry the bytes each layer stored.
FORMATS = {
    "tern2": FormatInfo(ternary=True, baseline="fp32", bits=2.0),
    "tern1.67": FormatInfo(ternary=True, baseline="fp32", bits=5 / 3),
    "fp32": FormatInfo(bits=32.0),
    "fp16": FormatInfo(baseline="fp32", bits=16.0),
    "nbits4": FormatInfo(baseline="fp32"),
    "nbits2": FormatInfo(baseline="fp32"),
    "int8": FormatInfo(baseline="fp32"),
}
TERNARY = tuple(f for f, info in FORMATS.items() if info.ternary)
BASELINES = tuple(f for f, info in FORMATS.items() if not info.ternary)


def _choice(name: str, values: tuple[str, ...]) -> type:
    """A str type that refuses anything but `values`, so that a bad `--opt` value is refused (exit 2) before
    any case runs; `name` is what Option's error message calls it."""

    def new(cls, value):
        if value not in values:
            raise ValueError(value)
        return str.__new__(cls, value)

    return type(name, (str,), {"__new__": new})


KvType = _choice("KV type (f16 or f32)", ("f16", "f32"))
# the decoder's attention op: the op library's or onnxruntime's (com.microsoft)
Attention = _choice("choice of attention op (tritbench or onnxruntime)", ("tritbench", "onnxruntime"))


def _model(fmt: str, t: np.ndarray, scale: float, M: int, options: dict):
    from tritbench.backends.onnx import graphs

    if fmt in TERNARY:
        return graphs.ternary_matmul_model(t, scale, fmt, M=M)
    return graphs.baseline_model(fmt, t, scale, M=M, accuracy_level=options["accuracy_level"],
                                 block_size=options["nbits_block"])


def _initializer_bytes(model) -> int:
    from onnx import numpy_helper

    return sum(numpy_helper.to_array(init).nbytes for init in model.graph.initializer)


class OnnxKernelSession:
    def __init__(self, fmt, M, K, N, n_threads, options, seed, min_total_bytes):
        import onnxruntime as ort

        from tritbench.backends.onnx import graphs

        t, scale = ternary_matrix(K, N, seed)
        model = _model(fmt, t, scale, M, options)
        stored = _initializer_bytes(model)
        # x86 onnxruntime folds fp16 weights into an fp32 initializer: 4 bytes per weight are streamed
        self.weight_bytes = K * N * 4 if fmt == "fp16" else stored
        self.copies = min(MAX_WEIGHT_COPIES, max(1, -(-min_total_bytes // self.weight_bytes)))
        blob = model.SerializeToString()
        # many sessions' idle pools must not spin and steal the cores from the one that is running
        spinning = self.copies == 1
        opts = graphs.session_options(n_threads, spinning=spinning)
        # one session per weight copy: each holds its own weights, so cold calls really read DRAM
        self.sessions = [ort.InferenceSession(blob, sess_options=opts, providers=["CPUExecutionProvider"])
                         for _ in range(self.copies)]
        dtype = np.float16 if fmt == "fp16" else np.float32
        x = np.random.default_rng(seed).standard_normal((M, K)).astype(dtype)
        self._x = ort.OrtValue.ortvalue_from_numpy(x)
        self._y = ort.OrtValue.ortvalue_from_shape_and_type([M, N], dtype)
        self.bindings = []
        for sess in self.sessions:
            b = sess.io_binding()
            b.bind_ortvalue_input(sess.get_inputs()[0].name, self._x)
            b.bind_ortvalue_output(sess.get_outputs()[0].name, self._y)
            self.bindings.append(b)
        meta = graphs.baseline_metadata(fmt) if fmt in BASELINES else {"compute": "tritbench TernaryMatMul"}
        self._settings = {
            "n_threads": n_threads,
            "compute": meta["compute"],
            "stored_weight_bytes": stored,
            "thread_pool_spinning": spinning,
            "onnxruntime": ort.__version__,
        }
        if fmt in TERNARY:
            from tritbench.backends.onnx import native

            # which kernel path ran (TRITBENCH_KERNEL or the CPU's best): avx512, avx2, neon or portable
            self._settings["kernel_path"] = native.kernel_name()
        self._next = 0

    def effective_settings(self) -> dict:
        return self._settings

    def run(self) -> None:
        self.sessions[self._next].run_with_iobinding(self.bindings[self._next])
        self._next = (self._next + 1) % self.copies

    def close(self) -> None:
        self.bindings, self.sessions = [], []


class OnnxBackend:
    name: ClassVar[str] = "onnx"
    formats: ClassVar[dict[str, FormatInfo]] = FORMATS
    # pp/tg/pg run the ternary decoder (generation.py) on the GGUF file of the same trits (models.synth)
    generation_formats: ClassVar[tuple[str, ...]] = (*TERNARY, "nbits2")
    workload_kinds: ClassVar[tuple[str, ...]] = ("gemv", "gemm", "pp", "tg", "pg")
    libraries: ClassVar[tuple[str, ...]] = ("onnxruntime", "onnx")
    options: ClassVar[dict[str, Option]] = {
        "accuracy_level": Option(int, 4, "MatMulNBits accuracy_level (4: int8 activations, its fast path)"),
        "nbits_block": Option(int, 32, "MatMulNBits block size", minimum=16),
        "kv_type": Option(KvType, "f16", "decoder KV cache element type: f16 or f32"),
        "attention": Option(Attention, "tritbench", "decoder attention: tritbench (the op library's "
                            "GroupQueryAttention, the cache read once per kv head) or onnxruntime (com.microsoft's)"),
        "n_ctx": Option(int, None, "decoder KV cache positions (default: depth + n_prompt + n_gen of the largest "
                        "workload)", minimum=1),
        "op_profile": Option(int, None, "decoder: profile this many decode steps with onnxruntime's profiler "
                             "before timing (untimed); records settings.op_profile, the time share of each op type",
                             minimum=1),
        "op_profile_depth": Option(int, 0, "decoder: KV cache depth the profiled steps start from (filled with "
                                   "seeded tokens, untimed), to see where a deep decode step's time goes",
                                   minimum=0),
    }

    def info(self) -> dict:
        import onnx
        import onnxruntime as ort

        from tritbench.backends.onnx import graphs

        info = {"version": ort.__version__, "onnx": onnx.__version__}
        try:
            info["custom_op_library"] = str(graphs.library_path())
        except graphs.LibraryNotBuiltError as exc:
            info["custom_op_library"] = f"unavailable: {exc}"
        return info

    def open_kernel(self, fmt, M, K, N, n_threads, options, seed, min_total_bytes) -> OnnxKernelSession:
        return OnnxKernelSession(fmt, M, K, N, n_threads, options, seed, min_total_bytes)

    def open(self, model_path: str, n_threads: int, options: dict, n_ctx: int, fmt: str | None = None):
        from tritbench.backends.onnx.generation import OnnxDecoderSession

        return OnnxDecoderSession(model_path, n_threads, options, n_ctx, packing=fmt)
