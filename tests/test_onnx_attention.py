"""tritbench.GroupQueryAttention through onnxruntime: the cache rows it writes (bit-exact: rotary in float32, then
the cache's type) and its output (against float64 numpy) on every kernel path, for grouped and plain heads, f16
and f32 caches, both rotary layouts, prefill and decode, in place and not; errors."""

import numpy as np
import pytest

from .conftest import import_or_skip

onnx = import_or_skip("onnx")
ort = import_or_skip("onnxruntime")

from tritbench.backends.onnx import graphs, native, reference  # noqa: E402
from tritbench.backends.onnx.build import ensure_built  # noqa: E402

KV = {"f16": np.float16, "f32": np.float32}


@pytest.fixture(scope="module", autouse=True)
def built_library():
    return ensure_built()


@pytest.fixture(params=native.available_kernels() if ensure_built() else [])
def kernel_path(request, monkeypatch):
    monkeypatch.setenv("TRITBENCH_KERNEL", request.param)
    return request.param


def attention_model(H, KVH, P, rot_half, kv, **attrs):
    cos, sin = np.random.default_rng(5).uniform(-1, 1, (2, P, rot_half)).astype(np.float32)
    return graphs.attention_model(H, KVH, P, cos, sin, kv, **attrs), cos, sin


def session(model, threads=1):
    return ort.InferenceSession(model.SerializeToString(), graphs.session_options(threads),
                                providers=["CPUExecutionProvider"])


def run(sess, qkv, pk, pv, past, in_place):
    """One call with the caches bound as OrtValues; in place binds each past and present to one buffer."""
    S = qkv.shape[1]
    bind = sess.io_binding()
    k, v = (ort.OrtValue.ortvalue_from_shape_and_type(c.shape, c.dtype) for c in (pk, pv))
    k.update_inplace(pk)
    v.update_inplace(pv)
    bind.bind_cpu_input("q", qkv)
    bind.bind_ortvalue_input("pk", k)
    bind.bind_ortvalue_input("pv", v)
    bind.bind_cpu_input("sk", (np.asarray(past) + S - 1).astype(np.int32))
    bind.bind_cpu_input("tot", np.array(max(past) + S, np.int32))
    bind.bind_output("o")  # outputs come back in the order they were bound
    if in_place:
        bind.bind_ortvalue_output("k", k)
        bind.bind_ortvalue_output("v", v)
    else:
        bind.bind_output("k")
        bind.bind_output("v")
    sess.run_with_iobinding(bind)
    o, ko, vo = bind.get_outputs()
    if in_place:
        assert ko.data_ptr() == k.data_ptr() and vo.data_ptr() == v.data_ptr()
    return o.numpy(), ko.numpy(), vo.numpy()


@pytest.mark.parametrize("kv", ["f16", "f32"])
@pytest.mark.parametrize(("H", "KVH", "D", "rot_half"), [(4, 1, 64, 32), (3, 3, 48, 24), (2, 1, 36, 8)])
@pytest.mark.parametrize(("past", "S"), [([9], 1), ([3], 5), ([0, 6], 2), ([2], 21)])
@pytest.mark.parametrize("interleaved", [0, 1])
def test_matches_numpy_on_every_path(kernel_path, kv, H, KVH, D, rot_half, past, S, interleaved):
    """Head sizes 64, 48 and 36 (a multiple of 16, of 8 only, of neither: each ISA's loops and the portable
    fallback), a partial rotary (36 dims, 16 rotated), batch rows at different depths, and 21 new tokens (a block
    of 16 queries and one of 5)."""
    P = max(16, max(past) + S + 3)
    model, cos, sin = attention_model(H, KVH, P, rot_half, kv, do_rotary=1, rotary_interleaved=interleaved)
    rng = np.random.default_rng(H * 100 + D + S)
    B = len(past)
    qkv = rng.standard_normal((B, S, (H + 2 * KVH) * D)).astype(np.float32)
    pk, pv = (rng.standard_normal((2, B, KVH, P, D)) * 2).astype(KV[kv])
    want_k, want_v, want_o = reference.group_query_attention(qkv, pk, pv, past, H, cos, sin, interleaved)
    for in_place in (True, False):
        o, k, v = run(session(model, threads=2), qkv, pk.copy(), pv.copy(), past, in_place)
        assert np.array_equal(k, want_k) and np.array_equal(v, want_v)  # rows past the new ones untouched too
        assert o.dtype == np.float32 and o.shape == (B, S, H * D)
        assert np.abs(o - want_o).max() <= 2e-6 * np.abs(want_o).max(), np.abs(o - want_o).max()


def test_scale_attribute_and_no_rotary():
    model, _, _ = attention_model(2, 1, 8, 4, "f32", scale=0.5)
    rng = np.random.default_rng(3)
    qkv = rng.standard_normal((1, 1, 4 * 16)).astype(np.float32)
    pk, pv = rng.standard_normal((2, 1, 1, 8, 16)).astype(np.float32)
    o, k, v = run(session(model), qkv, pk, pv, [4], True)
    q = qkv[0, 0].reshape(4, 16)
    assert np.array_equal(k[0, 0, 4], q[2]) and np.array_equal(v[0, 0, 4], q[3])  # not rotated
    none = np.zeros((8, 0), np.float32)
    want_k, _, want_o = reference.group_query_attention(qkv, pk, pv, [4], 2, none, none, False, scale=0.5)
    assert np.array_equal(k, want_k)
    assert np.abs(o - want_o).max() <= 2e-6 * np.abs(want_o).max()


def test_a_cache_too_short_and_unsupported_attributes_fail_with_the_ops_message():
    model, _, _ = attention_model(2, 1, 8, 4, "f16", do_rotary=1)
    qkv = np.zeros((1, 2, 4 * 8), np.float32)
    pk = np.zeros((1, 1, 8, 8), np.float16)
    with pytest.raises(Exception, match="GroupQueryAttention: the cache cannot hold 9 tokens"):
        run(session(model), qkv, pk, pk.copy(), [7], True)
    for attrs, what in (({"local_window_size": 4}, "local_window_size"), ({"softcap": 30.0}, "softcap")):
        with pytest.raises(Exception, match=f"GroupQueryAttention: {what}.* is not supported"):
            session(attention_model(2, 1, 8, 4, "f16", **attrs)[0])
    with pytest.raises(Exception, match="num_heads and kv_num_heads"):
        session(attention_model(3, 2, 8, 4, "f16")[0])


@pytest.mark.parametrize("D", [64, 36])
def test_f16_cache_rows_round_as_numpy_does(kernel_path, D):
    """New K and V rows narrowed to float16 on every path (F16C, NEON, portable; 36 also runs a path's scalar
    tail): ties to even, subnormals, values that round up to the largest half or overflow to infinity."""
    special = np.array([1 + 2**-11, 1 + 3 * 2**-11, 2**-25, 3 * 2**-26, 6e-8, 1e-5, 65519.0, 65520.0, -7e4, 0.0, -0.0,
                        2**-14 * (1 - 2**-11), 3.0e-3], np.float32)
    rng = np.random.default_rng(9)
    model, _, _ = attention_model(2, 1, 8, 4, "f16")
    for _ in range(3):
        qkv = rng.standard_normal((1, 1, 4 * D)).astype(np.float32)
        kv = qkv[0, 0, 2 * D:]
        kv[rng.choice(kv.size, special.size, replace=False)] = special
        _, k, v = run(session(model), qkv, np.zeros((1, 1, 8, D), np.float16), np.zeros((1, 1, 8, D), np.float16),
                      [3], True)
        with np.errstate(over="ignore"):  # 65520 and -7e4 overflow to infinity, as they should
            want = kv.astype(np.float16)
        assert np.array_equal(k[0, 0, 3].view(np.uint16), want[:D].view(np.uint16))
        assert np.array_equal(v[0, 0, 3].view(np.uint16), want[D:].view(np.uint16))
