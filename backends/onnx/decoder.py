"""An end-to-end llama-style decoder in onnxruntime whose linear layers are tritbench's `TernaryMatMul` op.

The graph follows the structure onnxruntime-genai's model builder emits for llama (built here with
`onnx.helper`, no torch): a `Gather` embedding, `SimplifiedLayerNormalization` then
`SkipSimplifiedLayerNormalization` (its fourth output, input + skip, is the next residual), Q|K|V and
gate|up fused into one `TernaryMatMul` each where their scales are equal (else one op each and a Concat),
`GroupQueryAttention` with rotary inside (cos/sin caches as initializers), SiLU as `Sigmoid` + `Mul`, a
final norm and the head. The attention node is the op library's `tritbench.GroupQueryAttention` by default
(the same inputs, outputs and attributes as `com.microsoft`'s, for the subset used here; it reads f16 or f32
cache rows in place once per kv head, where onnxruntime's CPU kernel took 3-4x that time at depth 1024), or
onnxruntime's own (`attention="onnxruntime"`), whose f16 cache needs Q|K|V cast to f16. Inputs and outputs
carry genai's names: `input_ids`, `attention_mask`, `past_key_values.N.key/value`, `logits`,
`present.N.key/value`.

The head: an F16 output tensor (or the F16 embedding a bitnet head is tied to) runs through the op library's
`tritbench.F16MatMul` (an F16 GEMV with F16C/FMA on x86, 2 bytes per weight as in llama.cpp; onnxruntime has
no FP16 GEMM on x86 CPUs); a Q8_0 output tensor (`--output-type q8_0`) as an 8-bit `MatMulNBits` holding
exactly its weights (1 byte per weight plus an fp32 scale per 32); any other type as FP32 `MatMul`.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tritbench.backends.onnx.graphs import DOMAIN, NBITS_BLOCK_SIZE, OP_TYPE, nbits_weights
from tritbench.backends.onnx.packing import PACKINGS, pack, packed_size
from tritbench.backends.onnx.weights import DecoderError, DecoderWeights, Ternary

OPSET = 21
IR_VERSION = 10
KV_TYPES = {"f16": (TensorProto.FLOAT16, np.float16), "f32": (TensorProto.FLOAT, np.float32)}
MAX_PROTO_BYTES = 2**31 - 1  # protobuf's limit for an in-memory model
MODEL_FILE, DATA_FILE = "decoder.onnx", "decoder.data"
DATA_ALIGN = 4096  # each external tensor starts on a page, so onnxruntime can map it
F16_OP = "F16MatMul"
Q8_BLOCK = 32
ATTENTIONS = {
    "tritbench": "tritbench.GroupQueryAttention: the cache read in place once per kv head, float32 scores",
    "onnxruntime": "com.microsoft.GroupQueryAttention (onnxruntime's CPU kernel)",
}
HEAD_COMPUTE = {
    "f16": "tritbench.F16MatMul: F16 weights (2 bytes each, as llama.cpp reads them), fp32 products and sums",
    "q8_0": f"com.microsoft.MatMulNBits bits=8 block={Q8_BLOCK} accuracy_level=4: the Q8_0 head's weights exactly "
            "(fp32 scale per block), int8 activations",
    "fp32": "fp32 MatMul (onnxruntime has no fp16 GEMM on x86 CPUs: 4 bytes per head weight)",
}


def q8_0_blocks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(q int8 [rows, cols], d float32 [rows, cols / 32]) with values == q * d, for values a Q8_0 tensor holds
    (re-quantizing dequantized Q8_0 values gives the same blocks back)."""
    from gguf import GGMLQuantizationType
    from gguf.quants import quantize

    rows, cols = values.shape
    raw = quantize(np.asarray(values, np.float32), GGMLQuantizationType.Q8_0).reshape(rows, cols // Q8_BLOCK, 34)
    d = raw[:, :, :2].copy().view(np.float16)[..., 0].astype(np.float32)
    q = raw[:, :, 2:].copy().view(np.int8).reshape(rows, cols)
    if not np.array_equal((q.reshape(rows, -1, Q8_BLOCK) * d[..., None]).reshape(rows, cols), values):
        raise DecoderError("the output tensor is not made of Q8_0 blocks")
    return q, d


def head_kind(w: DecoderWeights) -> str:
    """How the head runs: an untied Q8_0 output tensor as an 8-bit MatMulNBits ("q8_0"), an F16 one (or an F16
    embedding it is tied to) through the op library's F16 GEMV ("f16"), anything else as FP32 MatMul ("fp32")."""
    if w.output is not None and w.output_type == "Q8_0":
        return "q8_0"
    return "f16" if (w.output_type if w.output is not None else w.embd_type) == "F16" else "fp32"


def head_is_q8(w: DecoderWeights) -> bool:
    return head_kind(w) == "q8_0"


def default_rotary_interleaved(arch: str) -> bool:
    """llama.cpp rotates adjacent pairs ("NORM" RoPE) for llama and pairs n_rot/2 apart ("NEOX") for bitnet."""
    return arch != "bitnet"


def rope_cache(max_len: int, head_dim: int, base: float) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin [max_len, head_dim / 2] of position p times base^(-2i / head_dim), in float64."""
    inv = base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    angles = np.arange(max_len, dtype=np.float64)[:, None] * inv[None, :]
    return np.cos(angles), np.sin(angles)


class _Graph:
    """Nodes and initializers being collected, with unique names."""

    def __init__(self, data=None):
        self.nodes: list = []
        self.inits: list = []
        self.data = data  # an open file: initializers are written there as they are made, not held in the proto

    def init(self, name: str, array: np.ndarray) -> str:
        array = np.ascontiguousarray(array)
        if self.data is None or array.nbytes < DATA_ALIGN:
            self.inits.append(numpy_helper.from_array(array, name))
            return name
        offset = -(-self.data.tell() // DATA_ALIGN) * DATA_ALIGN
        self.data.seek(offset)
        self.data.write(memoryview(array).cast("B"))
        tensor = TensorProto(name=name, data_type=helper.np_dtype_to_tensor_dtype(array.dtype), dims=array.shape,
                             data_location=TensorProto.EXTERNAL)
        for key, value in (("location", os.path.basename(self.data.name)), ("offset", offset),
                           ("length", array.nbytes)):
            tensor.external_data.add(key=key, value=str(value))
        self.inits.append(tensor)
        return name

    def node(self, op: str, inputs: list[str], outputs: list[str], name: str, domain: str = "", **attrs) -> list[str]:
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, domain=domain or None, **attrs))
        return outputs


def _fuse(parts: list[Ternary]) -> Ternary | None:
    """One Ternary of concatenated columns when every part has the same scale, else None."""
    if len({p.scale for p in parts}) != 1:
        return None
    return Ternary.concat(parts, parts[0].scale)


# onnxruntime's own 2-bit kernel in the same graph, a row with no code of ours in its matmuls: codes t + 2
# (MatMulNBits' default zero point for 2 bits), one fp32 scale per block of 32, int8 activations per block
NBITS = "nbits2"
NBITS_ACCURACY_LEVEL = 4


def _bitlinear(g: _Graph, lin: Ternary, packing: str, x: str, prefix: str, activation: str = "none") -> str:
    if packing == NBITS:
        codes = nbits_weights(lin.t, 2, NBITS_BLOCK_SIZE)
        b = g.init(f"{prefix}.B", codes)
        scales = g.init(f"{prefix}.scales", np.full(lin.N * codes.shape[1], lin.scale, np.float32))
        return g.node("MatMulNBits", [x, b, scales], [f"{prefix}/out"], f"{prefix}/MatMulNBits", "com.microsoft",
                      K=lin.K, N=lin.N, bits=2, block_size=NBITS_BLOCK_SIZE,
                      accuracy_level=NBITS_ACCURACY_LEVEL)[0]
    packed = g.init(f"{prefix}.packed", pack(lin.t, packing))
    scale = g.init(f"{prefix}.scale", np.array(lin.scale, np.float32))
    attrs = {"activation": activation} if activation != "none" else {}
    return g.node(OP_TYPE, [x, packed, scale], [f"{prefix}/out"], f"{prefix}/TernaryMatMul", DOMAIN,
                  K=lin.K, N=lin.N, packing=packing, **attrs)[0]


def _fused_bitlinear(g: _Graph, parts: list[Ternary], packing: str, x: str, prefix: str) -> str:
    fused = _fuse(parts)
    if fused is not None:
        return _bitlinear(g, fused, packing, x, prefix)
    outs = [_bitlinear(g, p, packing, x, f"{prefix}.{i}") for i, p in enumerate(parts)]
    return g.node("Concat", outs, [f"{prefix}/out"], f"{prefix}/Concat", axis=-1)[0]


def build_decoder(w: DecoderWeights, packing: str = "tern2", *, max_len: int, kv_type: str = "f16",
                  all_logits: bool = False, rotary_interleaved: bool | None = None,
                  folder: str | None = None, attention: str = "tritbench") -> onnx.ModelProto:
    """The decoder graph of `w` with linear layers in `packing`, RoPE caches for `max_len` positions.

    `all_logits` False gives the logits of the last position only ([batch, 1, vocab], as llama.cpp computes
    for a batch), True of every position. `rotary_interleaved` None takes the architecture's layout. With
    `folder`, every initializer is written to DATA_FILE there as it is packed and the graph refers to it (a
    model's packed weights are never all in memory at once); session_for(..., folder=) loads it from there.
    `attention` is a key of ATTENTIONS."""
    if folder is None:
        return _build(w, packing, max_len, kv_type, all_logits, rotary_interleaved, attention, None)
    with open(os.path.join(folder, DATA_FILE), "wb") as data:
        return _build(w, packing, max_len, kv_type, all_logits, rotary_interleaved, attention, data)


def _build(w: DecoderWeights, packing: str, max_len: int, kv_type: str, all_logits: bool,
           rotary_interleaved: bool | None, attention: str, data) -> onnx.ModelProto:
    if attention not in ATTENTIONS:
        raise DecoderError(f"unknown attention {attention!r} (known: {', '.join(ATTENTIONS)})")
    if packing not in (*PACKINGS, NBITS):
        raise DecoderError(f"unknown packing {packing!r} (known: {', '.join((*PACKINGS, NBITS))})")
    if kv_type not in KV_TYPES:
        raise DecoderError(f"unknown kv_type {kv_type!r} (known: {', '.join(KV_TYPES)})")
    kv_elem, kv_np = KV_TYPES[kv_type]
    if rotary_interleaved is None:
        rotary_interleaved = default_rotary_interleaved(w.arch)
    hd, kvh = w.head_dim, w.kv_heads
    g = _Graph(data)
    ours = attention == "tritbench"
    f16_attn = kv_type == "f16" and not ours  # onnxruntime's attention on an f16 cache takes and gives f16

    embd = g.init("model.embed_tokens.weight", w.embd.astype(np.float16) if w.embd_type == "F16" else w.embd)
    h = g.node("Gather", [embd, "input_ids"], ["/model/embed_tokens/out"], "/model/embed_tokens/Gather")[0]
    if w.embd_type == "F16":  # F16 rows widen exactly, and a row read costs what llama.cpp's F16 row does
        h = g.node("Cast", [h], ["/model/embed_tokens/Cast/out"], "/model/embed_tokens/Cast", to=TensorProto.FLOAT)[0]
    one = g.init("/model/constants/one_i64", np.array(1, np.int64))
    axis1 = g.init("/model/constants/axes_1", np.array([1], np.int64))
    total = g.node("ReduceSum", ["attention_mask", axis1], ["/model/attn_mask/sum"], "/model/attn_mask/ReduceSum",
                   keepdims=0)[0]
    last = g.node("Sub", [total, one], ["/model/attn_mask/sub"], "/model/attn_mask/Sub")[0]
    seqlens_k = g.node("Cast", [last], ["seqlens_k"], "/model/attn_mask/Cast_seqlens", to=TensorProto.INT32)[0]
    shape = g.node("Shape", ["attention_mask"], ["/model/attn_mask/shape"], "/model/attn_mask/Shape")[0]
    tot64 = g.node("Gather", [shape, one], ["/model/attn_mask/total64"], "/model/attn_mask/Gather", axis=0)[0]
    total_len = g.node("Cast", [tot64], ["total_seq_len"], "/model/attn_mask/Cast_total", to=TensorProto.INT32)[0]
    cos, sin = rope_cache(max_len, hd, w.rope_base)
    rope_np = np.float32 if ours else kv_np
    cos_name = g.init("cos_cache", cos.astype(rope_np))
    sin_name = g.init("sin_cache", sin.astype(rope_np))

    residual, pending = h, None
    for i, b in enumerate(w.blocks):
        p = f"/model/layers.{i}"
        norm_w = g.init(f"model.layers.{i}.input_layernorm.weight", b.attn_norm)
        if pending is None:
            x = g.node("SimplifiedLayerNormalization", [residual, norm_w], [f"{p}/input_layernorm/out"],
                       f"{p}/input_layernorm/LayerNorm", axis=-1, epsilon=w.eps, stash_type=1)[0]
        else:
            x, _, _, residual = g.node(
                "SkipSimplifiedLayerNormalization", [pending, residual, norm_w],
                [f"{p}/input_layernorm/out", "", "", f"{p}/input_layernorm/residual"],
                f"{p}/input_layernorm/SkipLayerNorm", "com.microsoft", epsilon=w.eps)
        lin = b.linear
        qkv = _fused_bitlinear(g, [lin["attn_q"], lin["attn_k"], lin["attn_v"]], packing, x, f"{p}/attn/qkv_proj")
        if f16_attn:
            qkv = g.node("Cast", [qkv], [f"{p}/attn/qkv_f16"], f"{p}/attn/Cast_qkv", to=TensorProto.FLOAT16)[0]
        attn = g.node("GroupQueryAttention",
                      [qkv, "", "", f"past_key_values.{i}.key", f"past_key_values.{i}.value", seqlens_k, total_len,
                       cos_name, sin_name],
                      [f"{p}/attn/out", f"present.{i}.key", f"present.{i}.value"], f"{p}/attn/GroupQueryAttention",
                      DOMAIN if ours else "com.microsoft", num_heads=w.heads, kv_num_heads=kvh, do_rotary=1,
                      rotary_interleaved=int(rotary_interleaved))[0]
        # the op widens an f16 X itself (exactly, as Cast would); the sub-norm and MatMulNBits want float32
        if f16_attn and (b.attn_sub_norm is not None or packing == NBITS):
            attn = g.node("Cast", [attn], [f"{p}/attn/out_f32"], f"{p}/attn/Cast_out", to=TensorProto.FLOAT)[0]
        if b.attn_sub_norm is not None:
            sub = g.init(f"model.layers.{i}.attn.sub_norm.weight", b.attn_sub_norm)
            attn = g.node("SimplifiedLayerNormalization", [attn, sub], [f"{p}/attn/sub_norm/out"],
                          f"{p}/attn/sub_norm/LayerNorm", axis=-1, epsilon=w.eps, stash_type=1)[0]
        o = _bitlinear(g, lin["attn_output"], packing, attn, f"{p}/attn/o_proj")
        post_w = g.init(f"model.layers.{i}.post_attention_layernorm.weight", b.ffn_norm)
        x2, _, _, residual = g.node(
            "SkipSimplifiedLayerNormalization", [o, residual, post_w],
            [f"{p}/post_attention_layernorm/out", "", "", f"{p}/post_attention_layernorm/residual"],
            f"{p}/post_attention_layernorm/SkipLayerNorm", "com.microsoft", epsilon=w.eps)
        gate_up = _fuse([lin["ffn_gate"], lin["ffn_up"]])
        if gate_up is not None and packing != NBITS:  # SwiGLU in the op's epilogue: one node, not four
            m = _bitlinear(g, gate_up, packing, x2, f"{p}/mlp/gate_up_proj", activation="swiglu")
        else:
            if gate_up is not None:
                gu = _bitlinear(g, gate_up, packing, x2, f"{p}/mlp/gate_up_proj")
                gate, up = g.node("Split", [gu], [f"{p}/mlp/gate", f"{p}/mlp/up"], f"{p}/mlp/Split", axis=-1,
                                  num_outputs=2)
            else:
                gate = _bitlinear(g, lin["ffn_gate"], packing, x2, f"{p}/mlp/gate_proj")
                up = _bitlinear(g, lin["ffn_up"], packing, x2, f"{p}/mlp/up_proj")
            sig = g.node("Sigmoid", [gate], [f"{p}/mlp/act/sigmoid"], f"{p}/mlp/act/Sigmoid")[0]
            silu = g.node("Mul", [gate, sig], [f"{p}/mlp/act/out"], f"{p}/mlp/act/Mul")[0]
            m = g.node("Mul", [silu, up], [f"{p}/mlp/mul"], f"{p}/mlp/Mul")[0]
        if b.ffn_sub_norm is not None:
            sub = g.init(f"model.layers.{i}.mlp.sub_norm.weight", b.ffn_sub_norm)
            m = g.node("SimplifiedLayerNormalization", [m, sub], [f"{p}/mlp/sub_norm/out"],
                       f"{p}/mlp/sub_norm/LayerNorm", axis=-1, epsilon=w.eps, stash_type=1)[0]
        pending = _bitlinear(g, lin["ffn_down"], packing, m, f"{p}/mlp/down_proj")

    final_w = g.init("model.norm.weight", w.output_norm)
    x = g.node("SkipSimplifiedLayerNormalization", [pending, residual, final_w], ["/model/norm/out", "", "", ""],
               "/model/norm/SkipLayerNorm", "com.microsoft", epsilon=w.eps)[0]
    seq_out: int | str = "sequence_length"
    if not all_logits:
        starts = g.init("/model/constants/minus_one", np.array([-1], np.int64))
        ends = g.init("/model/constants/int_max", np.array([np.iinfo(np.int64).max], np.int64))
        x = g.node("Slice", [x, starts, ends, axis1], ["/model/norm/last"], "/model/norm/Slice_last")[0]
        seq_out = 1
    head_type = head_kind(w)
    if head_type == "f16":  # a tied head reads the embedding's own initializer
        weight = embd if w.output is None else g.init("lm_head.weight", w.output.astype(np.float16))
        g.node(F16_OP, [x, weight], ["logits"], "/lm_head/F16MatMul", DOMAIN, K=w.hidden, N=w.vocab)
    elif head_type == "q8_0":
        q, d = q8_0_blocks(w.output)
        codes = g.init("lm_head.qweight", (q.astype(np.int16) + 128).astype(np.uint8).reshape(w.vocab, -1, Q8_BLOCK))
        scales = g.init("lm_head.scales", d.reshape(-1))
        g.node("MatMulNBits", [x, codes, scales], ["logits"], "/lm_head/MatMulNBits", "com.microsoft", K=w.hidden,
               N=w.vocab, bits=8, block_size=Q8_BLOCK, accuracy_level=4)
    else:
        head = g.init("lm_head.weight_t", np.ascontiguousarray(w.head.T.astype(np.float32)))
        g.node("MatMul", [x, head], ["logits"], "/lm_head/MatMul")

    kv_shape = ["batch_size", kvh, "past_sequence_length", hd]
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64,
                                            ["batch_size", "total_sequence_length"])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch_size", seq_out, w.vocab])]
    for i in range(w.layers):
        for kind in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(f"past_key_values.{i}.{kind}", kv_elem, kv_shape))
            outputs.append(helper.make_tensor_value_info(f"present.{i}.{kind}", kv_elem,
                                                         ["batch_size", kvh, "total_sequence_length", hd]))
    graph = helper.make_graph(g.nodes, "tritbench-decoder", inputs, outputs, initializer=g.inits)
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1), helper.make_opsetid(DOMAIN, 1)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="tritbench")
    model.ir_version = IR_VERSION
    helper.set_model_props(model, {"format": f"ternary-{packing}", "architecture": w.arch, "kv_type": kv_type,
                                   "attention": ATTENTIONS[attention],
                                   "rotary_interleaved": str(int(rotary_interleaved)),
                                   "head": HEAD_COMPUTE[head_type],
                                   "source": w.source})
    return model


def linear_bytes(K: int, N: int, packing: str) -> int:
    """Bytes of one linear layer's weights as the graph holds them (nbits2: 2-bit codes and a scale per block)."""
    if packing == NBITS:
        blocks = -(-K // NBITS_BLOCK_SIZE)
        return N * blocks * (NBITS_BLOCK_SIZE // 4 + 4)
    return packed_size(K, N, packing)


def bytes_per_token(w: DecoderWeights, packing: str, kv_type: str) -> dict:
    """Bytes one decode step reads, by component: ternary weights (packed), the head (as it runs, see
    head_kind), one embedding row, and the KV cache per position of depth (K and V of every layer)."""
    ternary = 0
    for b in w.blocks:
        lin = b.linear
        for group in (["attn_q", "attn_k", "attn_v"], ["attn_output"], ["ffn_gate", "ffn_up"], ["ffn_down"]):
            fused = _fuse([lin[n] for n in group])
            parts = [fused] if fused is not None else [lin[n] for n in group]
            ternary += sum(linear_bytes(p.K, p.N, packing) for p in parts)
    row_bytes = w.hidden * (2 if w.embd_type == "F16" else 4)
    kv_elem = np.dtype(KV_TYPES[kv_type][1]).itemsize
    kv_per_position = 2 * w.layers * w.kv_heads * w.head_dim * kv_elem
    kind = head_kind(w)
    per_weight = {"f16": 2, "q8_0": 1 + 4 / Q8_BLOCK, "fp32": 4}[kind]
    head = int(w.vocab * w.hidden * per_weight)
    return {"ternary_weights": ternary, "head": head, "embedding_row": row_bytes,
            "kv_per_position": kv_per_position, "at_depth_0": ternary + head + row_bytes,
            "head_compute": HEAD_COMPUTE[kind]}


def session_for(model: onnx.ModelProto, n_threads: int, *, spinning: bool = True, folder: str | None = None,
                profile_prefix: str | None = None):
    """An onnxruntime InferenceSession of the decoder (the ternary op registered).

    With `folder`, the graph is written there with its initializers in one external data file, which
    onnxruntime memory-maps: the weights are file-backed pages read on demand (as llama.cpp maps a GGUF), held
    once rather than twice (graph and session), and a model may exceed protobuf's 2 GiB. The files can be
    deleted once the session exists. Without it, the graph goes in memory (DecoderError above 2 GiB).
    With `profile_prefix`, onnxruntime's profiler times every run until `session.end_profiling()`."""
    import onnxruntime as ort

    from tritbench.backends.onnx.graphs import session_options

    opts = session_options(n_threads, spinning=spinning)
    if profile_prefix is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    if folder is not None:
        path = os.path.join(folder, MODEL_FILE)
        if any(t.data_location == TensorProto.EXTERNAL for t in model.graph.initializer):
            onnx.save_model(model, path)  # built with this folder: its weights are in DATA_FILE already
        else:
            onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                            location=DATA_FILE, size_threshold=1024)
        return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
    size = model.ByteSize()
    if size > MAX_PROTO_BYTES:
        raise DecoderError(f"the decoder graph needs {size / 2**30:.2f} GiB, more than an in-memory ONNX model can "
                           "hold (2 GiB)")
    return ort.InferenceSession(model.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"])


class DecoderRunner:
    """Runs a decoder session token batch by token batch for one sequence (batch 1). The KV cache is one
    OrtValue per layer for K and one for V, allocated once at `n_ctx` positions and bound both as
    `past_key_values.N.*` and `present.N.*`, so GroupQueryAttention writes new rows in place."""

    def __init__(self, session, w: DecoderWeights, n_ctx: int, kv_type: str, all_logits: bool = False):
        import onnxruntime as ort

        self.session, self.n_ctx, self.all_logits = session, n_ctx, all_logits
        self.vocab = w.vocab
        kv_np = KV_TYPES[kv_type][1]
        shape = [1, w.kv_heads, n_ctx, w.head_dim]
        self.binding = session.io_binding()
        self.kv = []
        for i in range(w.layers):
            for kind in ("key", "value"):
                value = ort.OrtValue.ortvalue_from_shape_and_type(shape, kv_np)
                self.binding.bind_ortvalue_input(f"past_key_values.{i}.{kind}", value)
                self.binding.bind_ortvalue_output(f"present.{i}.{kind}", value)
                self.kv.append(value)
        self._mask = np.ones((1, n_ctx), np.int64)
        self._logits = ort.OrtValue.ortvalue_from_shape_and_type([1, 1, w.vocab], np.float32)
        if not all_logits:
            self.binding.bind_ortvalue_output("logits", self._logits)
        self.pos = 0

    def reset(self) -> None:
        """Start a new sequence at position 0 (old rows stay, masked out by seqlens_k)."""
        self.pos = 0

    def run(self, tokens, read: bool = True) -> np.ndarray | None:
        """Feed `tokens` at the next positions; a copy of the logits [n, vocab] (n = 1 unless all_logits),
        or None when `read` is False (a benchmark needs no copy)."""
        ids = np.ascontiguousarray(np.asarray(tokens, np.int64).reshape(1, -1))
        n = ids.shape[1]
        if n == 0:
            raise ValueError("no tokens to run")
        if self.pos + n > self.n_ctx:
            raise ValueError(f"{self.pos + n} positions exceed the KV cache of n_ctx={self.n_ctx}")
        self.binding.bind_cpu_input("input_ids", ids)
        self.binding.bind_cpu_input("attention_mask", self._mask[:, : self.pos + n])
        out = self._logits
        if self.all_logits:
            import onnxruntime as ort

            out = ort.OrtValue.ortvalue_from_shape_and_type([1, n, self.vocab], np.float32)
            self.binding.bind_ortvalue_output("logits", out)
        self.session.run_with_iobinding(self.binding)
        self.pos += n
        return out.numpy().reshape(-1, self.vocab).copy() if read else None
