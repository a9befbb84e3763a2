"""ONNX graphs for the ternary op and for onnxruntime's own baselines, all fed the same ternary weights.

`ternary_matmul_model` / `ternary_stack_model` use the `tritbench.TernaryMatMul` custom op from
`libtritbench_ternary.so` (build it with `make -C backends/onnx/csrc`; `session_options` registers it).
`baseline_model` builds onnxruntime's built-in and contrib equivalents of one BitLinear, so a benchmark
compares kernels on identical weights W = t * scale. Every model carries `metadata_props` describing what
it computes (format, bits per weight, compute precision).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tritbench.backends.onnx.build import BUILD_COMMAND, LibraryNotBuiltError, library_path
from tritbench.backends.onnx.packing import BITS_PER_WEIGHT, PACKINGS, pack

__all__ = ["BASELINES", "BUILD_COMMAND", "LibraryNotBuiltError", "baseline_metadata", "baseline_model",
           "library_path", "session_options", "ternary_matmul_model", "ternary_stack_model"]

DOMAIN = "tritbench"
OP_TYPE = "TernaryMatMul"
OPSET = 17
IR_VERSION = 8
BASELINES = ("fp32", "fp16", "nbits4", "nbits2", "int8")
NBITS_BLOCK_SIZE = 32

Dims = int | str | None | Sequence[int | str]


def session_options(n_threads: int, *, spinning: bool = True):
    """onnxruntime SessionOptions with the ternary op registered, n_threads intra-op threads, full optimisation.

    Every session owns its intra-op pool (n_threads - 1 threads that spin between runs by default): a
    harness holding many sessions at once (weight copies for cold-cache runs) should pass spinning=False.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = n_threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.register_custom_ops_library(str(library_path()))
    return opts


def _leading_dims(M: Dims) -> list[int | str]:
    if M is None:
        return ["M"]
    if isinstance(M, (int, str)):
        return [M]
    return list(M)


def _model(nodes, inputs, outputs, initializers, metadata: dict[str, str], custom: bool = False) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "tritbench", inputs, outputs, initializer=initializers)
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)]
    if custom:
        opsets.append(helper.make_opsetid(DOMAIN, 1))
    model = helper.make_model(graph, opset_imports=opsets, producer_name="tritbench")
    model.ir_version = IR_VERSION
    helper.set_model_props(model, metadata)
    return model


def _ternary_node(t: np.ndarray, scale: float, packing: str, x: str, y: str, prefix: str):
    if packing not in PACKINGS:
        raise ValueError(f"unknown packing {packing!r}; expected one of {', '.join(PACKINGS)}")
    K, N = t.shape
    packed = numpy_helper.from_array(pack(t, packing), f"{prefix}packed")
    scale_t = numpy_helper.from_array(np.array(scale, np.float32), f"{prefix}scale")
    node = helper.make_node(OP_TYPE, [x, packed.name, scale_t.name], [y], domain=DOMAIN, name=f"{prefix}bitlinear",
                            K=int(K), N=int(N), packing=packing)
    return node, [packed, scale_t]


def _ternary_metadata(packing: str) -> dict[str, str]:
    return {"format": f"ternary-{packing}", "bits_per_weight": f"{BITS_PER_WEIGHT[packing]:.4f}",
            "compute": "int8 activations (per-row absmax), add-only integer sums, one float rescale per output"}


def ternary_matmul_model(t: np.ndarray, scale: float, packing: str, M: Dims = None) -> onnx.ModelProto:
    """One BitLinear X [M, K] -> Y [M, N] through TernaryMatMul; M symbolic when None, or a tuple of leading dims."""
    t = np.asarray(t)
    K, N = t.shape
    lead = _leading_dims(M)
    node, inits = _ternary_node(t, scale, packing, "X", "Y", "")
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [*lead, K])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [*lead, N])
    return _model([node], [x], [y], inits, _ternary_metadata(packing), custom=True)


def attention_model(num_heads: int, kv_num_heads: int, positions: int, cos: np.ndarray, sin: np.ndarray,
                    kv_type: str, **attrs) -> onnx.ModelProto:
    """One tritbench.GroupQueryAttention node: inputs q (packed Q|K|V, float32), pk and pv (the caches: float16
    for kv_type "f16", else float32, `positions` long), sk (seqlens_k) and tot (total_sequence_length);
    outputs o, k and v; cos and sin caches as initializers; attrs as the node's attributes."""
    elem = TensorProto.FLOAT16 if kv_type == "f16" else TensorProto.FLOAT
    node = helper.make_node("GroupQueryAttention", ["q", "", "", "pk", "pv", "sk", "tot", "cos", "sin"],
                            ["o", "k", "v"], domain=DOMAIN, num_heads=num_heads, kv_num_heads=kv_num_heads, **attrs)
    cache = ["B", kv_num_heads, positions, None]
    inputs = [helper.make_tensor_value_info("q", TensorProto.FLOAT, ["B", "S", None]),
              helper.make_tensor_value_info("pk", elem, cache), helper.make_tensor_value_info("pv", elem, cache),
              helper.make_tensor_value_info("sk", TensorProto.INT32, ["B"]),
              helper.make_tensor_value_info("tot", TensorProto.INT32, [])]
    outputs = [helper.make_tensor_value_info(name, t, None)
               for name, t in (("o", TensorProto.FLOAT), ("k", elem), ("v", elem))]
    inits = [numpy_helper.from_array(np.asarray(cos, np.float32), "cos"),
             numpy_helper.from_array(np.asarray(sin, np.float32), "sin")]
    return _model([node], inputs, outputs, inits, {"op": "tritbench.GroupQueryAttention"}, custom=True)


def ternary_stack_model(layers: Sequence[tuple[np.ndarray, float]], packing: str, M: Dims = None) -> onnx.ModelProto:
    """A chain of BitLinears (e.g. FFN up -> down): layer i's N must equal layer i+1's K."""
    if not layers:
        raise ValueError("ternary_stack_model needs at least one layer")
    lead = _leading_dims(M)
    nodes, inits = [], []
    name = "X"
    for i, (t, scale) in enumerate(layers):
        t = np.asarray(t)
        if i and t.shape[0] != layers[i - 1][0].shape[1]:
            raise ValueError(f"layer {i} has K={t.shape[0]} but layer {i - 1} has N={layers[i - 1][0].shape[1]}")
        out = "Y" if i == len(layers) - 1 else f"h{i}"
        node, extra = _ternary_node(t, scale, packing, name, out, f"l{i}_")
        nodes.append(node)
        inits += extra
        name = out
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [*lead, layers[0][0].shape[0]])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [*lead, layers[-1][0].shape[1]])
    return _model(nodes, [x], [y], inits, _ternary_metadata(packing), custom=True)


def nbits_weights(t: np.ndarray, bits: int, block: int) -> np.ndarray:
    """MatMulNBits B [N, blocks, block*bits/8]: code = t + 2^(bits-1), low bits first along K."""
    K, N = t.shape
    blocks = -(-K // block)
    zero = 1 << (bits - 1)
    codes = np.full((N, blocks * block), zero, np.uint8)
    codes[:, :K] = (t.T + zero).astype(np.uint8)
    per = 8 // bits
    codes = codes.reshape(N, blocks * block // per, per)
    shifts = (np.arange(per, dtype=np.uint8) * bits)
    packed = np.bitwise_or.reduce(codes << shifts, axis=2).astype(np.uint8)
    return packed.reshape(N, blocks, block * bits // 8)


def baseline_metadata(fmt: str) -> dict[str, str]:
    """What a baseline format stores and computes (also put in the model's metadata_props)."""
    table = {
        "fp32": {"bits_per_weight": "32", "compute": "fp32 MatMul"},
        "fp16": {"bits_per_weight": "16", "compute": "fp32 on x86: onnxruntime has no fp16 MatMul CPU kernel, it "
                 "inserts Casts and folds the fp16 weight to an fp32 initializer, so this is NOT fp16 compute"},
        "nbits4": {"bits_per_weight": f"{4 + 32 / NBITS_BLOCK_SIZE:g}",
                   "compute": f"com.microsoft.MatMulNBits bits=4 block={NBITS_BLOCK_SIZE} accuracy_level=4 (int8 A)"},
        "nbits2": {"bits_per_weight": f"{2 + 32 / NBITS_BLOCK_SIZE:g}",
                   "compute": f"com.microsoft.MatMulNBits bits=2 block={NBITS_BLOCK_SIZE} accuracy_level=4 (int8 A)"},
        "int8": {"bits_per_weight": "8",
                 "compute": "com.microsoft.DynamicQuantizeMatMul: uint8 per-tensor dynamic A, int8 weights"},
    }
    if fmt not in table:
        raise ValueError(f"unknown baseline {fmt!r}; expected one of {', '.join(BASELINES)}")
    return {"format": fmt, **table[fmt]}


def baseline_model(fmt: str, t: np.ndarray, scale: float, M: Dims = None, *, accuracy_level: int = 4,
                   block_size: int = NBITS_BLOCK_SIZE) -> onnx.ModelProto:
    """onnxruntime's own BitLinear equivalent in `fmt` (one of BASELINES), fed exactly W = t * scale.

    fp16 takes and returns float16 tensors; on x86 onnxruntime computes it in fp32 (see its metadata).
    `accuracy_level` and `block_size` only apply to nbits2/nbits4 (accuracy_level 0 = fp32 compute, exact
    but very slow for 2 bits: meant for tests).
    """
    meta = baseline_metadata(fmt)
    t = np.asarray(t).astype(np.int8)
    K, N = t.shape
    lead = _leading_dims(M)
    scale = np.float32(scale)
    if fmt in ("fp32", "fp16"):
        dtype, elem = (np.float32, TensorProto.FLOAT) if fmt == "fp32" else (np.float16, TensorProto.FLOAT16)
        w = numpy_helper.from_array((t.astype(np.float32) * scale).astype(dtype), "W")
        node = helper.make_node("MatMul", ["X", "W"], ["Y"])
        inits = [w]
    elif fmt in ("nbits4", "nbits2"):
        bits = int(fmt[-1])
        elem = TensorProto.FLOAT
        b = numpy_helper.from_array(nbits_weights(t, bits, block_size), "B")
        blocks = b.dims[1]
        scales = numpy_helper.from_array(np.full(N * blocks, scale, np.float32), "scales")
        node = helper.make_node("MatMulNBits", ["X", "B", "scales"], ["Y"], domain="com.microsoft", K=K, N=N,
                                bits=bits, block_size=block_size, accuracy_level=accuracy_level)
        inits = [b, scales]
        meta["compute"] = meta["compute"].replace("block=32", f"block={block_size}").replace(
            "accuracy_level=4", f"accuracy_level={accuracy_level}")
    elif fmt == "int8":
        elem = TensorProto.FLOAT
        b = numpy_helper.from_array(t, "B")
        b_scale = numpy_helper.from_array(np.array(scale, np.float32), "b_scale")
        node = helper.make_node("DynamicQuantizeMatMul", ["X", "B", "b_scale"], ["Y"], domain="com.microsoft")
        inits = [b, b_scale]
    else:  # baseline_metadata already rejected unknown formats
        raise AssertionError(fmt)
    x = helper.make_tensor_value_info("X", elem, [*lead, K])
    y = helper.make_tensor_value_info("Y", elem, [*lead, N])
    return _model([node], [x], [y], inits, meta)
