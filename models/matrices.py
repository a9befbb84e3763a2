"""Ternary weight matrices for kernel benchmarks, and whole synthesized models for runtimes that build their own
graph (the onnx decoder): the same seeded weights for every format and backend."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .synth import linear_scale


def ternary_matrix(K: int, N: int, seed: int = 0) -> tuple[np.ndarray, float]:
    """(t, scale): t int8 [K, N] in {-1, 0, +1}, a third each on average, and a per-tensor scale
    exactly representable in f16, as in the synthetic models. Depends only on (K, N, seed)."""
    rng = np.random.default_rng([seed, K, N])
    t = rng.integers(-1, 2, size=(K, N), dtype=np.int8)
    return t, float(linear_scale(K))


def preset_tensors(ref: str) -> tuple[dict, Iterator[tuple[str, np.ndarray]]]:
    """A preset's (or `PRESET@FIELD=VALUE` reference's) synthesized model without writing a file: its spec as a
    dict (plus `rope_freq_base`) and an iterator over (GGUF tensor name, float32 values in GGUF's row order),
    the values the preset's F16 file stores (linear layers exactly t * s, as every ternary file stores them too),
    so a runtime that reads them runs the same model as the files."""
    from .overrides import preset_spec
    from .synth import ROPE_FREQ_BASE, tensor_plan

    spec = preset_spec(ref)
    info = {**spec.to_dict(), "rope_freq_base": ROPE_FREQ_BASE}
    return info, ((plan.name, _stored_values(spec, plan)) for plan in tensor_plan(spec))


def _stored_values(spec, plan) -> np.ndarray:
    """One tensor as the F16 file stores it: embedding and output rounded through their GGML type."""
    from gguf.quants import dequantize, quantize

    from .synth import make_tensor, tensor_type

    values = make_tensor(spec, plan)
    if plan.role in ("embd", "output"):
        qtype = tensor_type(spec, "f16", plan)
        values = dequantize(quantize(values, qtype), qtype).astype(np.float32).reshape(values.shape)
    return values
