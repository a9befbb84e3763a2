"""onnxruntime's baselines are fed exactly the ternary weights: each model's output equals x @ (t * scale)
up to what its format does to the activations."""

import numpy as np
import pytest

from .conftest import import_or_skip

import_or_skip("onnx")
ort = import_or_skip("onnxruntime")

from tritbench.backends.onnx import graphs  # noqa: E402

K, N, SCALE = 200, 72, 0.37  # K not a multiple of the 32-wide nbits block


def run(model, x):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {"X": x})[0]


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(11)
    t = rng.integers(-1, 2, (K, N)).astype(np.int8)
    x = rng.standard_normal((5, K)).astype(np.float32)
    exact = x.astype(np.float64) @ (t.astype(np.float64) * np.float64(np.float32(SCALE)))
    return t, x, exact


def test_fp32_matmul(case):
    t, x, exact = case
    np.testing.assert_allclose(run(graphs.baseline_model("fp32", t, SCALE), x), exact, rtol=1e-5, atol=1e-4)


def test_fp16_runs_float16_io_and_says_it_computes_in_fp32(case):
    t, x, exact = case
    model = graphs.baseline_model("fp16", t, SCALE)
    y = run(model, x.astype(np.float16))
    assert y.dtype == np.float16
    np.testing.assert_allclose(y.astype(np.float64), exact, rtol=2e-2, atol=0.1)
    meta = {p.key: p.value for p in model.metadata_props}
    assert "NOT fp16 compute" in meta["compute"] and meta == {"format": "fp16", **graphs.baseline_metadata("fp16")}


@pytest.mark.parametrize("fmt", ["nbits4", "nbits2"])
@pytest.mark.parametrize("block", [32, 64])
def test_nbits_weights_are_exact(case, fmt, block):
    """accuracy_level 0 computes in fp32 from the dequantized weights: equal to x @ W up to float rounding."""
    t, x, exact = case
    y = run(graphs.baseline_model(fmt, t, SCALE, accuracy_level=0, block_size=block), x)
    np.testing.assert_allclose(y, exact, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("fmt", ["nbits4", "nbits2"])
def test_nbits_benchmark_setting_int8_activations(case, fmt):
    """accuracy_level 4 (the benchmarked setting) quantizes activations per block to int8: close, not exact."""
    t, x, exact = case
    model = graphs.baseline_model(fmt, t, SCALE)
    y = run(model, x)
    assert np.linalg.norm(y - exact) / np.linalg.norm(exact) < 2e-2
    meta = {p.key: p.value for p in model.metadata_props}
    assert "accuracy_level=4" in meta["compute"] and f"bits={fmt[-1]}" in meta["compute"]


def dynamic_quantize_reference(x: np.ndarray, t: np.ndarray, scale: float) -> np.ndarray:
    """DynamicQuantizeMatMul's math: x to uint8 with a per-tensor scale and zero point, integer product."""
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    a_scale = np.float32((hi - lo) / 255.0)
    zero = np.clip(np.rint(-lo / a_scale), 0, 255)
    q = np.clip(np.rint(x / a_scale) + zero, 0, 255) - zero
    return (q @ t.astype(np.float64)) * np.float64(a_scale) * np.float64(np.float32(scale))


def test_int8_dynamic_quantize_matmul_uses_the_ternary_weights(case):
    t, x, exact = case
    y = run(graphs.baseline_model("int8", t, SCALE), x)
    ref = dynamic_quantize_reference(x, t, SCALE)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-3 * np.abs(ref).max())
    assert np.linalg.norm(y - exact) / np.linalg.norm(exact) < 2e-2


@pytest.mark.parametrize("fmt", graphs.BASELINES)
def test_symbolic_and_fixed_m(case, fmt):
    t, x, _ = case
    feed = x.astype(np.float16) if fmt == "fp16" else x
    y_sym = run(graphs.baseline_model(fmt, t, SCALE, M=None), feed)
    y_fix = run(graphs.baseline_model(fmt, t, SCALE, M=5), feed)
    assert y_sym.shape == y_fix.shape == (5, N)


def test_unknown_format_is_rejected(case):
    with pytest.raises(ValueError, match="unknown baseline"):
        graphs.baseline_model("int3", case[0], SCALE)
