"""Summary statistics over repetition samples: pure functions, no I/O."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# A case whose IQR exceeds this share of its median, or whose worst sample is this far
# from the median, is flagged unstable (pyperf and llama-bench users ask for such a flag).
UNSTABLE_IQR_RATIO = 0.05
UNSTABLE_MAX_RATIO = 1.5


def bootstrap_median_ci(
    samples: Sequence[float], confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the median (seeded, so reproducible)."""
    x = np.asarray(samples, dtype=float)
    if x.size == 0:
        raise ValueError("no samples")
    if x.size == 1:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_resamples, x.size))
    medians = np.median(x[idx], axis=1)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(medians, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def summarize(samples: Sequence[float], higher_is_better: bool = True) -> dict:
    """Median, IQR, mean, sd, percentiles, bootstrap CI of the median and an `unstable` flag.

    `higher_is_better` says which tail is the bad one for the max/median outlier check
    (a slow repetition is a low tokens/s but a high latency).
    """
    x = np.asarray(samples, dtype=float)
    if x.size == 0:
        raise ValueError("no samples")
    median = float(np.median(x))
    q1, q3 = (float(v) for v in np.quantile(x, [0.25, 0.75]))
    iqr = q3 - q1
    sd = float(np.std(x, ddof=1)) if x.size > 1 else 0.0
    ci_lo, ci_hi = bootstrap_median_ci(x)
    if median > 0:
        worst = float(x.min()) if higher_is_better else float(x.max())
        outlier = (median / worst if higher_is_better else worst / median) if worst > 0 else math.inf
        iqr_ratio = iqr / median
    else:
        outlier, iqr_ratio = math.inf, math.inf
    unstable = bool(iqr_ratio > UNSTABLE_IQR_RATIO or outlier > UNSTABLE_MAX_RATIO)
    p50, p90, p99 = (float(v) for v in np.percentile(x, [50, 90, 99]))
    return {
        "n": int(x.size),
        "median": median,
        "q1": q1,
        "q3": q3,
        "iqr": iqr,
        "mean": float(np.mean(x)),
        "sd": sd,
        "min": float(x.min()),
        "max": float(x.max()),
        "p50": p50,
        "p90": p90,
        "p99": p99,
        "ci95_median": [ci_lo, ci_hi],
        "unstable": unstable,
        "samples": [float(v) for v in x],
    }
