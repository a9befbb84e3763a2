"""The ternary decoder in onnxruntime (backends/onnx/decoder.py): the float64 reference that emulates the op,
the weights from presets and GGUF files, the generation session, parity with llama.cpp and `bench run`."""

import numpy as np
import pytest

from .conftest import import_or_skip, read_jsonl, run_bench

onnx = import_or_skip("onnx")
ort = import_or_skip("onnxruntime")

from tritbench.backends.onnx import decoder, native, packing, parity, reference, weights  # noqa: E402
from tritbench.backends.onnx.build import ensure_built  # noqa: E402
from tritbench.models.matrices import ternary_matrix  # noqa: E402

PRESETS = ("tiny", "tiny-bitnet")
Q8_HEAD = "tiny@output_type=q8_0"  # a Q8_0 output tensor: the decoder's 8-bit MatMulNBits head


@pytest.fixture(scope="module", autouse=True)
def built_library():
    return ensure_built()


@pytest.fixture(scope="module")
def preset_weights():
    return {name: weights.from_preset(name) for name in PRESETS}


def runner_for(w, packing_name="tern2", *, max_len=64, kv_type="f32", all_logits=True, rotary_interleaved=None,
               attention="tritbench"):
    model = decoder.build_decoder(w, packing_name, max_len=max_len, kv_type=kv_type, all_logits=all_logits,
                                  rotary_interleaved=rotary_interleaved, attention=attention)
    return decoder.DecoderRunner(decoder.session_for(model, 1), w, max_len, kv_type, all_logits=all_logits)


def trace(vocab: int, n_prompt: int, n_steps: int, seed: int = 0) -> tuple[list[int], list[int]]:
    rng = np.random.default_rng(seed)
    prompt = [1] + rng.integers(3, vocab, n_prompt - 1).tolist()
    return prompt, rng.integers(3, vocab, n_steps).tolist()


# ---- the reference emulates the op bit for bit ----

def test_reference_op_is_bit_exact_against_the_c_op():
    t, scale = ternary_matrix(300, 200, seed=3)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 300)).astype(np.float32) * 3
    x[1] = 0  # an all-zero row gives zeros
    x[2, :5] = [127, 0.5, 1.5, 2.5, -0.5]  # absmax 127: x * 127/127 lands on halves, rounded to even
    x[2, 5:] = 0
    lin = weights.Ternary(t, scale)
    got = native.matmul(x, packing.pack(t, "tern2"), 300, 200, "tern2", scale)
    want = reference.op_matmul(x, lin)
    assert np.array_equal(got.astype(np.float64), want)
    assert not want[1].any()


# ---- the decoder against the float64 reference ----

def tie_free_trace(w, n_prompt: int, n_steps: int) -> tuple[list[int], list[int]]:
    """The first seeded trace on which no op input of the reference lands near an int8 rounding tie: there
    the float32 graph must match the float64 reference to float32 rounding at every position."""
    for seed in range(100):
        prompt, steps = trace(w.vocab, n_prompt, n_steps, seed=seed)
        ref = reference.ReferenceDecoder(w, 64)
        ref.run(prompt)
        for t in steps:
            ref.run([t])
        if not ref.near_ties:
            return prompt, steps
    raise AssertionError("no tie-free trace in 100 seeds")


def errors_along(w, pk, prompt, steps, **kw) -> tuple[list[float], list[int]]:
    """Per-position relative errors: every prompt position, a second prompt chunk (steps[:3]) after it, then
    single-token decode steps through the KV cache; and the reference's near-tie positions."""
    run, ref = runner_for(w, pk, **kw), reference.ReferenceDecoder(w, 64)
    errors = []
    for chunk in [prompt, steps[:3]] + [[t] for t in steps[3:]]:
        a, b = run.run(chunk), ref.run(chunk)
        errors += [reference.rel_error(x, y) for x, y in zip(a, b, strict=True)]
    assert run.pos == ref.pos == len(prompt) + len(steps)
    return errors, ref.near_ties


@pytest.mark.parametrize("attention", list(decoder.ATTENTIONS))
@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("pk", packing.PACKINGS)
def test_decoder_matches_the_reference_through_the_kv_cache(preset_weights, name, pk, attention):
    """f32 KV, a trace without near ties: relative error <= 1e-4 at every position, with either attention op."""
    w = preset_weights[name]
    prompt, steps = tie_free_trace(w, 12, 8)
    errors, ties = errors_along(w, pk, prompt, steps, attention=attention)
    assert not ties and len(errors) == 20 and max(errors) <= 1e-4, errors


def test_near_ties_are_the_only_departures(preset_weights):
    """A trace with near ties (tiny, seed 1: one int8 rounding goes the other way at position 5): exact up to
    the first near tie, within the load check's loose limit after it."""
    from tritbench.backends.onnx.generation import LOOSE_LIMIT

    w = preset_weights["tiny"]
    prompt, steps = trace(w.vocab, 12, 8, seed=1)
    errors, ties = errors_along(w, "tern2", prompt, steps)
    assert ties
    assert max(errors[: min(ties)]) <= 1e-4 and max(errors) <= LOOSE_LIMIT, (errors, ties)


def test_near_tie_rows():
    x = np.zeros((3, 4), np.float32)
    x[:, 0] = 127
    x[0, 1], x[1, 1], x[2, 1] = 2.5, 2.4, np.nextafter(np.float32(2.5), np.float32(3))
    assert reference.near_tie_rows(x, 8).tolist() == [True, False, True]


@pytest.mark.parametrize("attention", list(decoder.ATTENTIONS))
def test_f16_kv_is_close_and_a_wrong_rope_layout_is_not(preset_weights, attention):
    """The load-time check's loose limit passes the f16 decoder and fails a wrong RoPE pairing."""
    from tritbench.backends.onnx.generation import LOOSE_LIMIT

    w = preset_weights["tiny"]
    prompt, steps = trace(w.vocab, 8, 4, seed=2)
    for interleaved, ok in ((None, True), (False, False)):
        run = runner_for(w, kv_type="f16", all_logits=False, rotary_interleaved=interleaved, attention=attention)
        ref = reference.ReferenceDecoder(w, 64, kv_type="f16")
        got, want = [run.run(prompt)[-1]], [ref.run(prompt)[-1]]
        for t in steps:
            got.append(run.run([t])[-1])
            want.append(ref.run([t])[-1])
        err = reference.rel_error(np.array(got), np.array(want))
        assert (err <= LOOSE_LIMIT) == ok, err


def test_graph_has_genai_names_and_fused_ternary_layers(preset_weights):
    w = preset_weights["tiny"]
    model = decoder.build_decoder(w, "tern2", max_len=32)
    g = model.graph
    assert [i.name for i in g.input][:2] == ["input_ids", "attention_mask"]
    assert {i.name for i in g.input[2:]} == {f"past_key_values.{i}.{k}" for i in range(2) for k in ("key", "value")}
    assert [o.name for o in g.output][0] == "logits"
    ops = [n.op_type for n in g.node]
    assert ops.count("TernaryMatMul") == 4 * w.layers  # qkv, o, gate|up, down
    assert ops.count("GroupQueryAttention") == w.layers and "Concat" not in ops
    assert ops.count("SkipSimplifiedLayerNormalization") == 2 * w.layers
    gqa = next(n for n in g.node if n.op_type == "GroupQueryAttention")
    attrs = {a.name: a.i for a in gqa.attribute}
    assert attrs["do_rotary"] == 1 and attrs["rotary_interleaved"] == 1
    (head,) = [n for n in g.node if n.op_type == "F16MatMul"]  # the F16 head, 2 bytes per weight
    assert head.input[1] == "lm_head.weight" and head.output[0] == "logits"
    # bitnet ties its head to the embedding: the same F16 initializer, read by Gather and F16MatMul
    tied = decoder.build_decoder(preset_weights["tiny-bitnet"], "tern2", max_len=32).graph
    (h,) = [n for n in tied.node if n.op_type == "F16MatMul"]
    assert h.input[1] == "model.embed_tokens.weight" and "lm_head.weight" not in {i.name for i in tied.initializer}
    tq = next(n for n in g.node if n.op_type == "TernaryMatMul")
    assert {a.name: a.i for a in tq.attribute if a.name == "N"}["N"] == w.hidden + 2 * w.kv_heads * w.head_dim


def test_weights_stream_to_the_data_file_and_compute_the_same(preset_weights, tmp_path):
    """A graph built with a folder holds no weights in memory: every initializer above a page is written to the
    data file as it is packed (page-aligned, so onnxruntime can map it), and the session computes the same."""
    w = preset_weights["tiny"]
    in_memory = decoder.build_decoder(w, "tern2", max_len=32, all_logits=True)
    streamed = decoder.build_decoder(w, "tern2", max_len=32, all_logits=True, folder=str(tmp_path))
    external = [t for t in streamed.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    packed = [t for t in external if t.name.endswith(".packed")]
    assert len(packed) == 4 * w.layers and streamed.ByteSize() < 64 * 1024 < in_memory.ByteSize()
    for t in external:
        info = {e.key: e.value for e in t.external_data}
        assert info["location"] == decoder.DATA_FILE and int(info["offset"]) % decoder.DATA_ALIGN == 0
    data = (tmp_path / decoder.DATA_FILE).stat().st_size
    assert data >= sum(int({e.key: e.value for e in t.external_data}["length"]) for t in external)
    prompt, _ = trace(w.vocab, 5, 0)
    want = decoder.DecoderRunner(decoder.session_for(in_memory, 1), w, 32, "f16", all_logits=True).run(prompt)
    got = decoder.DecoderRunner(decoder.session_for(streamed, 1, folder=str(tmp_path)), w, 32, "f16",
                                all_logits=True).run(prompt)
    assert np.array_equal(got, want)


def test_linear_layers_are_held_in_two_bits(preset_weights):
    rng = np.random.default_rng(5)
    for K, N in ((64, 96), (30, 7), (1, 1)):
        t = rng.integers(-1, 2, (K, N)).astype(np.int8)
        lin = weights.Ternary(t, 0.25)
        assert lin.shape == (K, N) and np.array_equal(lin.t, t) and np.array_equal(lin.values(np.float32), t)
        assert lin._codes.nbytes == K * -(-N // 4)  # a quarter of int8's bytes
    parts = [weights.Ternary(rng.integers(-1, 2, (16, n)).astype(np.int8), 1.0) for n in (8, 5, 3)]
    assert np.array_equal(weights.Ternary.concat(parts, 1.0).t, np.concatenate([p.t for p in parts], axis=1))


@pytest.mark.parametrize("attention", list(decoder.ATTENTIONS))
@pytest.mark.parametrize("kv_type", ["f16", "f32"])
def test_kv_cache_is_allocated_once_and_shared_by_past_and_present(preset_weights, kv_type, attention):
    w = preset_weights["tiny"]
    run = runner_for(w, max_len=32, kv_type=kv_type, all_logits=False, attention=attention)
    ptrs = [v.data_ptr() for v in run.kv]
    assert len(ptrs) == 2 * w.layers and run.kv[0].shape() == [1, w.kv_heads, 32, w.head_dim]
    run.run([1, 5, 6])
    run.run([7])
    present = {o.data_ptr() for o in run.binding.get_outputs()}
    assert set(ptrs) <= present and [v.data_ptr() for v in run.kv] == ptrs  # written in place, no copy
    k = run.kv[0].numpy()
    assert k.dtype == np.dtype(kv_type.replace("f", "float")) and np.abs(k[0, :, :4]).sum() > 0


def test_unequal_scales_are_not_fused_but_compute_the_same(preset_weights):
    w = preset_weights["tiny"]
    b = w.blocks[0]
    k = b.linear["attn_k"]
    b.linear["attn_k"] = weights.Ternary(k.t, k.scale * 2)
    try:
        ops = [n.op_type for n in decoder.build_decoder(w, "tern2", max_len=32).graph.node]
        assert "Concat" in ops
        prompt, _ = trace(w.vocab, 6, 0)
        err = reference.rel_error(runner_for(w).run(prompt), reference.ReferenceDecoder(w, 64).run(prompt))
        assert err <= 1e-4
    finally:
        b.linear["attn_k"] = k


def test_q8_0_output_runs_as_an_exact_8_bit_head():
    w = weights.from_preset(Q8_HEAD)
    assert w.output_type == "Q8_0" and decoder.head_is_q8(w)
    model = decoder.build_decoder(w, "tern2", max_len=32)
    (head,) = [n for n in model.graph.node if n.op_type == "MatMulNBits"]
    assert {a.name: a.i for a in head.attribute if a.type == onnx.AttributeProto.INT}["bits"] == 8
    q, d = decoder.q8_0_blocks(w.output)
    assert np.array_equal((q.reshape(w.vocab, -1, 32) * d[..., None]).reshape(w.vocab, -1), w.output)
    bpt = decoder.bytes_per_token(w, "tern2", "f16")
    assert bpt["head"] == w.vocab * w.hidden * 9 // 8 and "MatMulNBits bits=8" in bpt["head_compute"]
    # the head's int8 activations (onnxruntime's own quantization) are all that departs from the reference
    prompt, steps = tie_free_trace(w, 12, 8)
    errors, _ = errors_along(w, "tern2", prompt, steps)
    assert max(errors) <= 2e-2, errors
    with pytest.raises(weights.DecoderError, match="not made of Q8_0 blocks"):
        decoder.q8_0_blocks(w.output + np.float32(1e-3))


@pytest.mark.parametrize("kernel", ["portable", "best"])
def test_f16_matmul_entry_point(monkeypatch, kernel):
    """The op library's F16 GEMV: every half value (normal, subnormal, signed zero) widened exactly, float32 sums
    within rounding of a float64 product, through ctypes and through onnxruntime."""
    if kernel == "portable":
        monkeypatch.setenv("TRITBENCH_KERNEL", "portable")
        assert native.f16_kernel_name() == "portable"
    else:
        monkeypatch.delenv("TRITBENCH_KERNEL", raising=False)
        assert native.f16_kernel_name() in ("portable", "f16c")
    halves = np.array([1, 0x3FF, 0x400, 0x7BFF, 0x8001, 0x3C00, 0xBC00, 0x1234, 0, 0x8000], np.uint16)
    w = halves.view(np.float16).reshape(1, -1)
    assert np.array_equal(native.f16_matmul(np.eye(10, dtype=np.float32), w).ravel(), w.astype(np.float32).ravel())
    rng = np.random.default_rng(0)
    for M, K, N in ((1, 768, 200), (3, 37, 70), (5, 256, 129)):
        x = rng.standard_normal((M, K)).astype(np.float32)
        w = (rng.standard_normal((N, K)) * 0.02).astype(np.float16)
        want = x.astype(np.float64) @ w.astype(np.float64).T
        assert np.abs(native.f16_matmul(x, w) - want).max() <= 1e-5 * np.abs(want).max()
        node = onnx.helper.make_node("F16MatMul", ["X", "W"], ["Y"], domain="tritbench", K=K, N=N)
        graph = onnx.helper.make_graph(
            [node], "f16", [onnx.helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, [M, K])],
            [onnx.helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, [M, N])],
            initializer=[onnx.numpy_helper.from_array(w, "W")])
        model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17),
                                                             onnx.helper.make_opsetid("tritbench", 1)])
        model.ir_version = 8
        sess = ort.InferenceSession(model.SerializeToString(), decoder_session_options(2),
                                    providers=["CPUExecutionProvider"])
        assert np.array_equal(sess.run(None, {"X": x})[0], native.f16_matmul(x, w))


def decoder_session_options(threads: int):
    from tritbench.backends.onnx.graphs import session_options

    return session_options(threads)


# ---- weights from GGUF files ----

def test_gguf_files_hold_the_preset_weights(tiny_models, preset_weights):
    want = preset_weights["tiny"]
    for fmt, linear_type in (("f16", "F16"), ("tq2_0", "TQ2_0"), ("tq1_0", "TQ1_0")):
        got = weights.from_gguf(str(tiny_models[fmt]))
        assert got.linear_type == linear_type and got.bos_token == 1
        assert (got.arch, got.hidden, got.heads, got.kv_heads, got.ffn, got.vocab) == \
            (want.arch, want.hidden, want.heads, want.kv_heads, want.ffn, want.vocab)
        assert np.array_equal(got.embd, want.embd) and np.array_equal(got.head, want.head)
        for gb, wb in zip(got.blocks, want.blocks, strict=True):
            assert np.array_equal(gb.attn_norm, wb.attn_norm)
            for name, lin in wb.linear.items():
                assert np.array_equal(gb.linear[name].t, lin.t) and gb.linear[name].scale == lin.scale


def test_a_gguf_that_is_not_ternary_is_refused_in_one_line(tiny_models):
    with pytest.raises(weights.DecoderError) as exc:
        weights.from_gguf(str(tiny_models["q4_0"]))  # Q4_0 turns +-s into s and -0.875 s
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("blk.0.attn_q.weight is not ternary times one scale: 2 distinct")


def test_ternarize():
    t = weights.ternarize("w", np.array([[0.5, -0.5, 0], [0, 0, 0.5]], np.float32))
    assert t.scale == 0.5 and t.t.tolist() == [[1, 0], [-1, 0], [0, 1]]  # stored [in, out]
    with pytest.raises(weights.DecoderError, match="w is not ternary times one scale: 2 distinct magnitudes"):
        weights.ternarize("w", np.array([[0.5, 0.25]], np.float32))
    with pytest.raises(weights.DecoderError, match="non-finite"):
        weights.ternarize("w", np.array([[np.inf, 0]], np.float32))


# ---- the generation session (tritbench.plugin.GenerationSession) ----

def test_generation_session(tiny_models):
    from tritbench.backends.onnx.backend import OnnxBackend

    opts = {"kv_type": "f16", "n_ctx": None}
    s = OnnxBackend().open(str(tiny_models["tq1_0"]), 1, opts, 24)
    try:
        st = s.effective_settings()
        assert st["packing"] == "tern1.67" and st["kv_type"] == "f16" and st["n_ctx"] == 24
        check = st["parity_check"]
        assert check["passed"] and check["positions"] == [5, 6, 7] and max(check["rel_errors"]) <= 0.15
        bpt = st["bytes_per_token"]
        assert bpt["ternary_weights"] == sum(packing.packed_size(K, N, "tern1.67") for K, N in
                                             [(256, 512), (256, 256), (256, 1024), (512, 256)]) * 2
        assert bpt["head"] == 1536 * 256 * 2 and bpt["embedding_row"] == 512 and bpt["kv_per_position"] == 1024
        assert st["head"].startswith("tritbench.F16MatMul")
        assert s.n_vocab == 1536 and s.bos_token == 1 and s.weights_mapped is True
        s.reset()
        s.reset_counters()
        s.prefill([1, 5, 6, 7])
        s.decode(9)
        c = s.counters()
        assert (c["n_prompt"], c["n_gen"]) == (4, 1) and s.check_counters(4, 1, c) is None
        assert "n_gen=1" in s.check_counters(4, 2, c)
        s.prefill(list(range(3, 22)))  # 24 positions used: full
        with pytest.raises(ValueError, match="exceed the KV cache of n_ctx=24"):
            s.decode(3)
    finally:
        s.close()
    with pytest.raises(weights.DecoderError, match="kv_type must be one of f16, f32"):
        OnnxBackend().open(str(tiny_models["tq2_0"]), 1, {"kv_type": "bf16", "n_ctx": None}, 24)


def test_a_decoder_that_fails_its_load_check_is_not_benchmarked(tiny_models, monkeypatch):
    """The negative control of the check every load runs: a graph with the wrong RoPE pairing is refused."""
    from tritbench.backends.onnx import generation

    build = decoder.build_decoder
    monkeypatch.setattr(generation.decoder, "build_decoder",
                        lambda *a, **kw: build(*a, **kw, rotary_interleaved=False))
    with pytest.raises(weights.DecoderError, match="the decoder does not compute the model: relative error"):
        generation.OnnxDecoderSession(str(tiny_models["tq2_0"]), 1, {"kv_type": "f16", "n_ctx": None}, 16)


# ---- the same model as llama.cpp ----

def llama_trace(llama_cpp, path, prompt, steps) -> np.ndarray:
    """llama.cpp's logits of the prompt's last position, then of each single-token decode step."""
    lib = llama_cpp
    lib.llama_backend_init()
    mp = lib.llama_model_default_params()
    mp.n_gpu_layers = 0
    model = lib.llama_model_load_from_file(str(path).encode(), mp)
    cp = lib.llama_context_default_params()
    cp.n_ctx = cp.n_batch = cp.n_ubatch = len(prompt) + len(steps)
    cp.n_threads = cp.n_threads_batch = 1
    ctx = lib.llama_init_from_model(model, cp)
    vocab = lib.llama_vocab_n_tokens(lib.llama_model_get_vocab(model))
    out = []
    try:
        for batch in [prompt] + [[t] for t in steps]:
            arr = (lib.llama_token * len(batch))(*batch)
            assert lib.llama_decode(ctx, lib.llama_batch_get_one(arr, len(batch))) == 0
            out.append(np.ctypeslib.as_array(lib.llama_get_logits_ith(ctx, -1), shape=(vocab,)).copy())
    finally:
        lib.llama_free(ctx)
        lib.llama_model_free(model)
    return np.array(out)


@pytest.mark.parametrize("name", [*PRESETS, Q8_HEAD])
def test_parity_with_llamacpp_f16_and_a_wrong_rope_fails(tb_home, name):
    """A seeded trace (16-token prompt, 128 decode steps) through both engines; tolerances calibrated from
    llama.cpp's own TQ2_0-vs-F16 gap in this run (with a Q8_0 output tensor in both llama.cpp files for the
    8-bit head). The negative control pairs RoPE dimensions the other way (llama.cpp rotates adjacent pairs for
    llama, pairs head_dim/2 apart for bitnet)."""
    llama_cpp = import_or_skip("llama_cpp")
    from tritbench.models import preset_spec, synthesize_many

    files = synthesize_many(preset_spec(name), ["f16", "tq2_0"], cache=tb_home / "models")
    w = weights.from_preset(name)
    prompt, steps = trace(w.vocab, 16, 128, seed=7)
    f16 = llama_trace(llama_cpp, files["f16"], prompt, steps)
    tq2 = llama_trace(llama_cpp, files["tq2_0"], prompt, steps)
    n = len(prompt) + len(steps)
    results = {}
    for interleaved in (None, not decoder.default_rotary_interleaved(w.arch)):
        run = runner_for(w, max_len=n, kv_type="f16", all_logits=False, rotary_interleaved=interleaved)
        got = np.array([run.run(prompt)[-1]] + [run.run([t])[-1] for t in steps])
        results[interleaved] = parity.check_parity(got, f16, tq2)
    ok, wrong = results.values()
    assert ok.passed, ok.to_dict()
    assert ok.clear_positions >= 32 and ok.baseline_rel_rms > 0
    assert not wrong.passed and wrong.rel_rms > 5 * ok.rel_rms_limit, wrong.to_dict()


def test_nbits2_is_onnxruntimes_own_2_bit_kernel_in_the_same_graph(tb_home, preset_weights):
    """`-f nbits2`: every linear layer a MatMulNBits (bits 2: 3 bits per weight with a fp32 scale per 32), no
    TernaryMatMul; the same model by llama.cpp F16's logits, as the ternary packings are."""
    llama_cpp = import_or_skip("llama_cpp")
    from tritbench.models import preset_spec, synthesize_many

    w = preset_weights["tiny"]
    model = decoder.build_decoder(w, "nbits2", max_len=160, kv_type="f16", all_logits=False)
    ops = [n.op_type for n in model.graph.node]
    assert decoder.OP_TYPE not in ops and ops.count("MatMulNBits") == 4 * w.layers  # qkv, o, gate|up, down
    n_linear = sum(b.linear[n].t.size for b in w.blocks for n in b.linear)
    counted = decoder.bytes_per_token(w, "nbits2", "f16")["ternary_weights"]
    assert counted * 8 / n_linear == pytest.approx(2 + 32 / 32)  # 2-bit codes and a 4-byte scale per 32
    files = synthesize_many(preset_spec("tiny"), ["f16", "tq2_0"], cache=tb_home / "models")
    prompt, steps = trace(w.vocab, 16, 128, seed=7)
    f16 = llama_trace(llama_cpp, files["f16"], prompt, steps)
    tq2 = llama_trace(llama_cpp, files["tq2_0"], prompt, steps)
    run = decoder.DecoderRunner(decoder.session_for(model, 1), w, 160, "f16")
    got = np.array([run.run(prompt)[-1]] + [run.run([t])[-1] for t in steps])
    result = parity.check_parity(got, f16, tq2)
    assert result.passed, result.to_dict()


def test_parity_metrics():
    want = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.95]])
    assert parity.rel_rms(want, want) == 0 and parity.mean_kl(want, want) == pytest.approx(0, abs=1e-12)
    got = np.array([[3.0, 1.0, 0.0], [0.0, 1.9, 2.0]])  # the second position swaps a near tie
    assert parity.top1_agreement(got, want, 0.0) == (0.5, 2)
    assert parity.top1_agreement(got, want, 0.1) == (1.0, 1)
    assert parity.mean_kl(got, want) > 0


# ---- bench run ----

def test_bench_run_runs_the_decoder(tb_home, tmp_path):
    out = tmp_path / "res"
    proc = run_bench(["run", "-b", "onnx", "-m", "tiny", "-f", "tern2,tern1.67", "-p", "16", "-n", "8", "-t", "1",
                      "-r", "1", "--warmups", "0", "--energy", "none", "--out", str(out)], tb_home)
    assert proc.returncode == 0, proc.stderr
    recs = read_jsonl(out)
    assert {(r["model"]["format"], r["workload"]["name"]) for r in recs} == \
        {(f, t) for f in ("tern2", "tern1.67") for t in ("pp16", "tg8")}
    for r in recs:
        assert r["status"] == "ok" and r["backend"]["name"] == "onnx" and r["model"]["name"] == "tiny"
        st, m = r["settings"], r["metrics"]
        assert st["packing"] == r["model"]["format"] and st["kv_type"] == "f16"
        assert st["attention"].startswith("tritbench.GroupQueryAttention")
        assert st["parity_check"]["passed"] and st["bytes_per_token"]["ternary_weights"] > 0
        assert m["tokens_per_s"]["median"] > 0 and m["memory"]["mmap"] is True
        if r["workload"]["name"] == "pp16":
            assert m["ttft_ms"]["median"] > 0 and "prefill" in m["memory"]
        else:
            assert len(m["token_latency_ms"]["samples"]) == 8 and "decode" in m["memory"]
            # bytes per decode step from the loaded tensors: tg8 attends to 1..8 positions, 4.5 on average
            b = m["bytes_per_token"]
            assert b["kv_read"] == b["kv_per_position"] * 4.5
            assert b["total"] == b["ternary_weights"] + b["head"] + b["embedding_row"] + b["kv_read"]
    for fmt in ("tern2", "tern1.67"):  # every loaded decoder's check, printed
        assert f"check: onnx/tiny/{fmt}: passed (logits within" in proc.stderr


def test_op_profile_shares_of_a_decode_step():
    from tritbench.backends.onnx.profile import step_shares

    def run(ts, dur):
        return {"cat": "Session", "name": "model_run", "ts": ts, "dur": dur}

    def node(ts, dur, op):
        return {"cat": "Node", "name": f"n{ts}_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}

    # a first run (the prompt) that must not count, then two steps of 100 us each
    events = [run(0, 1000), node(10, 900, "TernaryMatMul"),
              run(2000, 100), node(2005, 60, "TernaryMatMul"), node(2070, 20, "GroupQueryAttention"),
              run(3000, 100), node(3005, 70, "TernaryMatMul"), node(3080, 10, "F16MatMul"),
              node(3081, 5, "Cast")]
    shares = step_shares(events, 2)
    assert shares["by_op_type"] == pytest.approx({"TernaryMatMul": 0.65, "GroupQueryAttention": 0.1,
                                                  "F16MatMul": 0.05, "Cast": 0.025})
    assert shares["matmul_share"] == pytest.approx(0.7) and shares["non_matmul_share"] == pytest.approx(0.3)
    assert shares["framework_share"] == pytest.approx(0.175) and shares["step_us_median"] == 100
    assert shares["matmul_ops"] == ["TernaryMatMul", "F16MatMul"]
    with pytest.raises(ValueError, match="holds 3 runs"):
        step_shares(events, 4)


def test_bench_run_prints_a_profile_line_per_thread_count():
    from types import SimpleNamespace

    from tritbench.cli.run import model_checks

    shares = {"by_op_type": {"TernaryMatMul": 0.9, "Cast": 0.05}, "matmul_ops": ["TernaryMatMul"],
              "matmul_share": 0.9, "non_matmul_share": 0.1, "framework_share": 0.05, "steps": 4,
              "op_clock": {"ops": ["TernaryMatMul", "F16MatMul"], "ops_share": 0.93, "non_matmul_share": 0.07,
                           "steps": 4}}
    records = [SimpleNamespace(backend={"name": "onnx"}, model={"name": "1b", "format": "tern2"},
                               settings={"n_threads": t, "op_profile": shares}) for t in (1, 2)]
    lines = model_checks(records)
    assert [ln.split(":")[1].strip() for ln in lines] == ["onnx/1b/tern2 t1", "onnx/1b/tern2 t2"]
    assert "unprofiled, 93.0% in TernaryMatMul + F16MatMul, 7.0% other, 4 steps" in lines[0]


def test_op_clock_shares_of_unprofiled_steps():
    from tritbench.backends.onnx.profile import clock_shares

    shares = clock_shares(1_700, [1_000, 1_000], ["TernaryMatMul", "F16MatMul"])
    assert shares["ops_share"] == pytest.approx(0.85) and shares["non_matmul_share"] == pytest.approx(0.15)
    assert shares["steps"] == 2 and shares["step_us_median"] == 1.0
    q8 = clock_shares(1_500, [1_000, 1_000], ["TernaryMatMul", "MatMulNBits"])  # an 8-bit head is not ours
    assert q8["non_matmul_share"] is None and "MatMulNBits" in q8["why_not"]
    with pytest.raises(ValueError, match="no measurable time"):
        clock_shares(0, [], ["TernaryMatMul"])


def test_the_op_clock_counts_time_inside_the_ops_only():
    """The library's clock runs only between start and stop, and sums time inside TernaryMatMul calls."""
    from tritbench.backends.onnx import graphs

    t = np.random.default_rng(3).integers(-1, 2, (512, 512)).astype(np.int8)
    sess = ort.InferenceSession(graphs.ternary_matmul_model(t, 1.0, "tern2").SerializeToString(),
                                graphs.session_options(1), providers=["CPUExecutionProvider"])
    x = np.ones((4, 512), np.float32)
    sess.run(None, {"X": x})
    native.op_clock_start()
    assert native.op_clock_stop() == 0
    native.op_clock_start()
    for _ in range(5):
        sess.run(None, {"X": x})
    ns = native.op_clock_stop()
    sess.run(None, {"X": x})  # stopped: not counted
    assert 0 < ns and native.op_clock_stop() == ns


def test_bench_run_profiles_decode_steps_before_timing(tb_home, tmp_path):
    out, tmp = tmp_path / "res", tmp_path / "tmp"
    tmp.mkdir()
    proc = run_bench(["run", "-b", "onnx", "-m", "tiny", "-f", "tern2", "-w", "tg", "-n", "4", "-t", "1", "-r", "1",
                      "--warmups", "0", "--energy", "none", "--opt", "op_profile=6", "--opt", "op_profile_depth=40",
                      "--out", str(out)], tb_home, TMPDIR=str(tmp))
    assert proc.returncode == 0, proc.stderr
    (rec,) = read_jsonl(out)
    shares = rec["settings"]["op_profile"]
    assert shares["depth"] == 41 and "profiled steps from depth 41" in " ".join(proc.stderr.split())
    assert shares["steps"] == 6 and "TernaryMatMul" in shares["matmul_ops"] and "F16MatMul" in shares["matmul_ops"]
    assert sum(shares["by_op_type"].values()) + shares["framework_share"] == pytest.approx(1.0)
    assert {"GroupQueryAttention", "SkipSimplifiedLayerNormalization"} <= set(shares["by_op_type"])
    assert "profile: onnx/tiny/tern2 t1: a decode step is" in proc.stderr
    clock = shares["op_clock"]  # the same number of unprofiled steps on the op library's own clock
    assert clock["steps"] == 6 and 0 < clock["ops_share"] < 1
    assert clock["non_matmul_share"] == pytest.approx(1 - clock["ops_share"])
    assert "; unprofiled, " in proc.stderr
    assert not list(tmp.glob("tritbench-op-profile*")), "profiling must end (and its file go) before timing"


def test_bench_run_refuses_what_the_decoder_cannot_run(tb_home, tiny_models, tmp_path):
    proc = run_bench(["run", "-b", "onnx", "-m", "tiny", "-f", "fp32", "-w", "pp", "-p", "8", "--out",
                      str(tmp_path / "a")], tb_home)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "only in formats tern2, tern1.67, nbits2" in lines[0], \
        proc.stderr
    proc = run_bench(["run", "-b", "onnx", "-m", "tiny", "-f", "tern2", "-p", "8", "--opt", "kv_type=bf16", "--out",
                      str(tmp_path / "a")], tb_home)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and lines == ["bench: error: option kv_type takes a KV type (f16 or f32), got 'bf16'"]
    proc = run_bench(["run", "-b", "onnx", "-m", "tiny", "-f", "tern2", "-p", "8", "--opt", "attention=flash",
                      "--out", str(tmp_path / "a")], tb_home)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and lines == [
        "bench: error: option attention takes a choice of attention op (tritbench or onnxruntime), got 'flash'"], lines
    # a GGUF whose linear layers are not ternary: a failed record that names the tensor
    out = tmp_path / "b"
    proc = run_bench(["run", "-b", "onnx", "-m", str(tiny_models["q4_0"]), "-f", "tern2", "-p", "8", "-n", "0", "-t",
                      "1", "-r", "1", "--warmups", "0", "--energy", "none", "--out", str(out)], tb_home)
    assert proc.returncode == 1, proc.stderr
    (rec,) = read_jsonl(out)
    assert rec["status"] == "failed" and "blk.0.attn_q.weight is not ternary times one scale" in rec["error"]


def test_plan_runs_the_decoder_only_without_kernel_workloads():
    """`-b onnx -f tern2` with pp/tg runs the decoder on the tq2_0 file; in a run that also has kernel workloads
    (as the gate's suite) the onnx formats name kernels only, and a pp asked of onnx alone there is refused."""
    from tritbench.errors import ConfigError
    from tritbench.plan.cases import KernelVariant, build_plan
    from tritbench.plan.suite import make_config

    base = {"backends": ["onnx"], "models": ["tiny"], "formats": ["tern2", "tern1.67"], "n_prompt": [8], "n_gen": [4]}
    (v2, v167) = build_plan(make_config({}, base), 1)
    assert (v2.model.format, v2.model.path.name) == ("tern2", "tiny-tq2_0.gguf")
    assert (v167.model.format, v167.model.path.name) == ("tern1.67", "tiny-tq1_0.gguf")
    assert [w.name for w in v2.workloads] == ["pp8", "tg4"]
    mixed = build_plan(make_config({}, {**base, "backends": ["llamacpp", "onnx"],
                                               "formats": ["tq2_0", "tern2"], "kinds": ["pp", "tg", "gemv"],
                                               "shapes": ["256x256"]}), 1)
    assert {(v.backend, type(v) is KernelVariant) for v in mixed} == {("llamacpp", False), ("onnx", True)}
    with pytest.raises(ConfigError, match="no selected backend runs pp workloads in this run"):
        build_plan(make_config({}, {**base, "kinds": ["pp", "gemv"], "shapes": ["256x256"]}), 1)


def test_derived_formats_read_the_gguf_of_the_same_trits(tb_home, tiny_models):
    from tritbench.models import ModelError, get_preset, model_path, synthesize_many

    spec = get_preset("tiny")
    cache = tb_home / "models"
    assert model_path(spec, "tern2", cache) == tiny_models["tq2_0"] == model_path(spec, "TQ2_0", cache)
    assert synthesize_many(spec, ["tern1.67", "tern2"], cache) == {"tern1.67": tiny_models["tq1_0"],
                                                                   "tern2": tiny_models["tq2_0"]}
    with pytest.raises(ModelError, match=r"known: f16, q8_0, q4_0, tq1_0, tq2_0; made by a backend from one of them: "
                                         r"tern2, tern1.67"):
        model_path(spec, "tern3", cache)
