"""TernaryMatMul through onnxruntime: bit-exact against the int64 numpy reference on every kernel path,
packing and thread count; shapes, worst cases, errors."""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import import_or_skip

onnx = import_or_skip("onnx")
ort = import_or_skip("onnxruntime")

from tritbench.backends.onnx import build, graphs, native, packing  # noqa: E402
from tritbench.backends.onnx.build import ensure_built  # noqa: E402

PACKINGS = packing.PACKINGS


@pytest.fixture(scope="session", autouse=True)
def built_library():
    return ensure_built()


def _paths() -> list[str]:
    ensure_built()
    return native.available_kernels()


PATHS = _paths()


@pytest.fixture(params=PATHS)
def kernel_path(request, monkeypatch):
    monkeypatch.setenv("TRITBENCH_KERNEL", request.param)
    return request.param


def run_model(model: onnx.ModelProto, x: np.ndarray, threads: int = 1) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), graphs.session_options(threads),
                                providers=["CPUExecutionProvider"])
    return sess.run(None, {"X": x})[0]


def ternary(rng, K, N) -> np.ndarray:
    return rng.integers(-1, 2, (K, N)).astype(np.int8)


def check(x, t, scale, pk, threads=1, M=None):
    y = run_model(graphs.ternary_matmul_model(t, scale, pk, M=M), x, threads)
    ref = packing.reference_matmul(x, t, scale)
    assert y.dtype == np.float32 and y.shape == ref.shape
    assert np.array_equal(y, ref), f"max diff {np.abs(y - ref).max()}"


def test_every_path_of_this_cpu_is_listed_and_selectable(kernel_path):
    assert "portable" in PATHS
    assert native.kernel_name() == kernel_path


def test_kernel_env_var_rejects_unknown_path(monkeypatch):
    monkeypatch.setenv("TRITBENCH_KERNEL", "sse9")
    assert native.kernel_name() is None
    t = ternary(np.random.default_rng(0), 8, 8)
    with pytest.raises(Exception, match="TRITBENCH_KERNEL=sse9"):
        run_model(graphs.ternary_matmul_model(t, 1.0, "tern2"), np.ones((1, 8), np.float32))


@pytest.mark.parametrize("pk", PACKINGS)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("K,N,M", [(1, 1, 1), (3, 5, 2), (13, 63, 1), (97, 129, 7), (256, 64, 64), (300, 131, 33),
                                   (1000, 70, 9), (130, 300, 24), (97, 65, 80), (50, 20, 100)])
def test_matches_reference_bit_exactly(kernel_path, pk, threads, K, N, M):
    rng = np.random.default_rng(K * 1000 + N + M)
    x = (rng.standard_normal((M, K)) * rng.uniform(0.01, 100)).astype(np.float32)
    check(x, ternary(rng, K, N), 0.0173, pk, threads)


@pytest.mark.parametrize("pk", PACKINGS)
def test_worst_cases_saturated_rows_against_all_plus_and_minus_columns(kernel_path, pk):
    """|q| = 127 everywhere against columns of all +1 / all -1 at K = 20000: sums of +-2.54e6, which
    overflow int16 many times over; also an all-zero token and a zero-sparse matrix. 3 rows use the per-row
    kernels everywhere; 6 rows the unit-table GEMM on avx512 (per-row elsewhere); 40 rows the unit-table or
    row-LUT GEMM (on paths that have one)."""
    K, N = 20000, 67
    rng = np.random.default_rng(5)
    t = ternary(rng, K, N)
    t[:, 0], t[:, 1], t[:, 2], t[:, 66] = 1, -1, 0, -1
    x = rng.standard_normal((40, K)).astype(np.float32)
    x[0], x[1], x[2], x[30], x[39] = 3.0, -3.0, 0.0, -1.0, 1.0
    x[3] = np.where(np.arange(K) % 2, 1.0, -1.0)
    x[4] = np.where(t[:, 3] != 0, np.sign(t[:, 3]), 1.0) * 7  # aligned with column 3: the largest sum there
    for threads in (1, 2):
        check(x[:3], t, 0.5, pk, threads)
        check(x[:6], t, 0.5, pk, threads)
        check(x, t, 0.5, pk, threads)
    q, _ = packing.quantize_activations(x[:2])
    assert (np.abs(q) == 127).all()


@pytest.mark.parametrize("pk", PACKINGS)
def test_leading_batch_dims_and_empty_batch(pk):
    rng = np.random.default_rng(3)
    t = ternary(rng, 40, 24)
    x = rng.standard_normal((2, 3, 40)).astype(np.float32)
    check(x, t, 2.0, pk, M=("b", "s"))
    x1 = rng.standard_normal((40,)).astype(np.float32)
    y1 = run_model(graphs.ternary_matmul_model(t, 2.0, pk, M=()), x1)
    assert y1.shape == (24,) and np.array_equal(y1, packing.reference_matmul(x1, t, 2.0))
    y0 = run_model(graphs.ternary_matmul_model(t, 2.0, pk), np.zeros((0, 40), np.float32))
    assert y0.shape == (0, 24)


@pytest.mark.parametrize("pk", PACKINGS)
def test_stack_model_chains_layers(pk):
    rng = np.random.default_rng(4)
    up, down = ternary(rng, 64, 176), ternary(rng, 176, 64)
    x = rng.standard_normal((5, 64)).astype(np.float32)
    y = run_model(graphs.ternary_stack_model([(up, 0.25), (down, 0.5)], pk), x, threads=2)
    ref = packing.reference_matmul(packing.reference_matmul(x, up, 0.25), down, 0.5)
    assert np.array_equal(y, ref)
    with pytest.raises(ValueError, match="layer 1 has K=64"):
        graphs.ternary_stack_model([(up, 1.0), (up, 1.0)], pk)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(K=st.integers(1, 200), N=st.integers(1, 150), M=st.integers(1, 64), pk=st.sampled_from(PACKINGS),
       path=st.sampled_from(PATHS), threads=st.sampled_from([1, 2]), seed=st.integers(0, 2**32 - 1),
       zero_row=st.booleans())
def test_random_shapes_bit_exact(K, N, M, pk, path, threads, seed, zero_row):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((M, K)).astype(np.float32)
    if zero_row:
        x[rng.integers(M)] = 0
    old = os.environ.get("TRITBENCH_KERNEL")
    os.environ["TRITBENCH_KERNEL"] = path
    try:
        check(x, ternary(rng, K, N), float(rng.uniform(0.001, 10)), pk, threads)
    finally:
        if old is None:
            del os.environ["TRITBENCH_KERNEL"]
        else:
            os.environ["TRITBENCH_KERNEL"] = old


@pytest.mark.parametrize("pk", PACKINGS)
def test_plain_c_api_matches_reference_and_packed_size(kernel_path, pk):
    rng = np.random.default_rng(6)
    K, N = 500, 100
    t = ternary(rng, K, N)
    x = rng.standard_normal((3, K)).astype(np.float32)
    w = packing.pack(t, pk)
    assert native.packed_size(K, N, pk) == packing.packed_size(K, N, pk) == w.size
    assert np.array_equal(native.matmul(x, w, K, N, pk, 0.75), packing.reference_matmul(x, t, 0.75))
    with pytest.raises(ValueError, match="needs"):
        native.matmul(x, w[:-1], K, N, pk, 0.75)


# ---- bad input: onnxruntime raises with the op's own message, the process survives ----

def _bad_model(t, pk, *, x_type=onnx.TensorProto.FLOAT, x_shape=None, packed=None, scale=None, attrs=None):
    model = graphs.ternary_matmul_model(t, 1.0, pk)
    graph = model.graph
    if x_shape is not None or x_type != onnx.TensorProto.FLOAT:
        graph.input[0].CopyFrom(onnx.helper.make_tensor_value_info(
            "X", x_type, x_shape if x_shape is not None else ["M", t.shape[0]]))
    for init in graph.initializer:
        if init.name == "packed" and packed is not None:
            init.CopyFrom(onnx.numpy_helper.from_array(packed, "packed"))
        if init.name == "scale" and scale is not None:
            init.CopyFrom(onnx.numpy_helper.from_array(scale, "scale"))
    for key, value in (attrs or {}).items():
        for attr in graph.node[0].attribute:
            if attr.name == key:
                attr.CopyFrom(onnx.helper.make_attribute(key, value))
    return model


@pytest.mark.parametrize("pk", PACKINGS)
def test_bad_inputs_raise_clear_errors(pk):
    t = ternary(np.random.default_rng(7), 30, 20)
    good = packing.pack(t, pk)
    x = np.ones((2, 30), np.float32)
    cases = [
        (_bad_model(t, pk, x_type=onnx.TensorProto.DOUBLE), x.astype(np.float64),
         "X must be float32 or float16, got float64"),
        (_bad_model(t, pk, x_shape=[]), np.array(1.0, np.float32), "rank >= 1"),
        (_bad_model(t, pk, x_shape=["M", 31]), np.ones((2, 31), np.float32), "last dimension must equal K"),
        (_bad_model(t, pk, packed=good[:-3]), x, "packed weights do not match"),
        (_bad_model(t, pk, packed=good.reshape(-1, 8) if good.size % 8 == 0 else good.reshape(1, -1)), x, "1-D array"),
        (_bad_model(t, pk, packed=good.astype(np.int8)), x, "packed must be uint8, got int8"),
        (_bad_model(t, pk, attrs={"K": 31}), x, "last dimension must equal K"),
        (_bad_model(t, pk, attrs={"N": 200}), x, "packed weights do not match"),
        (_bad_model(t, pk, scale=np.array([1.0, 2.0], np.float32)), x, "scale must be a scalar"),
        (_bad_model(t, pk, scale=np.array(1.0, np.float64)), x, "scale must be float32, got float64"),
    ]
    for model, feed, message in cases:
        with pytest.raises(Exception, match=message):
            run_model(model, feed)
    ok = _bad_model(t, pk, scale=np.array([1.0], np.float32))  # [1] is accepted as a scalar
    assert np.array_equal(run_model(ok, x), packing.reference_matmul(x, t, 1.0))


def test_bad_attributes_fail_at_session_creation():
    t = ternary(np.random.default_rng(8), 30, 20)
    for attrs, message in [({"packing": "tern9"}, "unknown packing"), ({"K": 0}, "must be positive")]:
        with pytest.raises(Exception, match=message):
            run_model(_bad_model(t, "tern2", attrs=attrs), np.ones((1, 30), np.float32))
    for N, activation, message in [(20, "gelu", "unknown activation"), (21, "swiglu", "needs an even N")]:
        with pytest.raises(Exception, match=message):
            run_model(_swiglu_model(ternary(np.random.default_rng(8), 30, N), 1.0, "tern2", activation),
                      np.ones((1, 30), np.float32))


@pytest.mark.parametrize("pk", PACKINGS)
def test_float16_x_is_widened_exactly(kernel_path, pk):
    """A float16 X (the attention output of an f16 KV decoder, with no Cast node) gives what its exact float32
    widening gives, bit for bit, on every path; odd K so the widening's tail runs too."""
    rng = np.random.default_rng(12)
    t = ternary(rng, 203, 40)
    x16 = (rng.standard_normal((3, 203)) * 4).astype(np.float16)
    x16[0, :3] = [np.float16(6e-8), np.float16(-65504), np.float16(0)]  # a subnormal, the largest, zero
    model = graphs.ternary_matmul_model(t, 0.5, pk)
    model.graph.input[0].CopyFrom(onnx.helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT16, ["M", 203]))
    assert np.array_equal(run_model(model, x16), packing.reference_matmul(x16.astype(np.float32), t, 0.5))


def _swiglu_model(t, scale, pk, activation="swiglu"):
    model = graphs.ternary_matmul_model(t, scale, pk)
    model.graph.node[0].attribute.append(onnx.helper.make_attribute("activation", activation))
    model.graph.output[0].CopyFrom(onnx.helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT,
                                                                      ["M", t.shape[1] // 2]))
    return model


@pytest.mark.parametrize("pk", PACKINGS)
@pytest.mark.parametrize("M", [1, 5])
def test_swiglu_epilogue_matches_silu_gate_times_up(kernel_path, pk, M):
    """activation="swiglu" (the decoder's fused gate|up layer): silu of the first half of the product times the
    second half, within float32 rounding of numpy's; every path, with gates beyond +-88 in the first row (where
    float32 e^-x overflows)."""
    rng = np.random.default_rng(11)
    t = ternary(rng, 96, 2 * 37)
    x = rng.standard_normal((M, 96)).astype(np.float32)
    x[0] *= 60
    z = packing.reference_matmul(x, t, 0.7).astype(np.float64)
    gate, up = z[:, :37], z[:, 37:]
    assert gate[0].max() > 88 and gate[0].min() < -88
    want = gate / (1 + np.exp(-gate)) * up
    y = run_model(_swiglu_model(t, 0.7, pk), x)
    assert y.shape == (M, 37) and y.dtype == np.float32
    assert np.abs(y - want).max() <= 1e-6 * np.abs(want).max(), np.abs(y - want).max()
    assert np.array_equal(run_model(graphs.ternary_matmul_model(t, 0.7, pk), x), z.astype(np.float32))


def test_library_path_reports_the_build_command(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "LIB_PATH", tmp_path / "lib" / "libtritbench_ternary.so")
    monkeypatch.setattr(build, "CSRC_DIR", tmp_path)
    (tmp_path / "a.c").write_text("int x;\n")
    with pytest.raises(graphs.LibraryNotBuiltError, match="make -C backends/onnx/csrc"):
        graphs.library_path()
    build.LIB_PATH.parent.mkdir()
    build.LIB_PATH.write_bytes(b"")
    os.utime(build.LIB_PATH, (1, 1))
    with pytest.raises(graphs.LibraryNotBuiltError, match="older than a.c.*make -C backends/onnx/csrc"):
        graphs.library_path()
    assert isinstance(graphs.LibraryNotBuiltError("x"), RuntimeError)


def test_session_options_threads_and_spinning():
    opts = graphs.session_options(2, spinning=False)
    assert opts.intra_op_num_threads == 2 and opts.inter_op_num_threads == 1
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL


@pytest.mark.parametrize("bad", [0.5, np.nan, 2.0, -3.0])
def test_pack_refuses_weights_that_are_not_ternary(bad):
    t = ternary(np.random.default_rng(7), 64, 32).astype(np.float32)
    assert packing.pack(t, "tern2").size == packing.packed_size(64, 32, "tern2")
    t[5, 7] = bad
    for pk in ("tern2", "tern1.67"):
        with pytest.raises(ValueError, match="only hold -1, 0 and \\+1"):
            packing.pack(t, pk)
