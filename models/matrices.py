"""Ternary weight matrices for kernel benchmarks: the same seeded weights for every format and backend."""

from __future__ import annotations

import numpy as np

from .synth import linear_scale


def ternary_matrix(K: int, N: int, seed: int = 0) -> tuple[np.ndarray, float]:
    """(t, scale): t int8 [K, N] in {-1, 0, +1}, a third each on average, and a per-tensor scale
    exactly representable in f16, as in the synthetic models. Depends only on (K, N, seed)."""
    rng = np.random.default_rng([seed, K, N])
    t = rng.integers(-1, 2, size=(K, N), dtype=np.int8)
    return t, float(linear_scale(K))
