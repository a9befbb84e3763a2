"""Paired comparison statistics for A/B gates on noisy machines: pure functions of per-round values.

Base and head run back to back in every round (in random order), so the per-round log ratio
d = ln(head / base) cancels most of the drift both sides share. Over the rounds' d values:
- the estimate is the Hodges-Lehmann estimator (the median of the Walsh averages (d_i + d_j) / 2, i <= j);
- its confidence interval is the exact Wilcoxon signed-rank interval (order statistics of the Walsh
  averages; Hollander & Wolfe, Nonparametric Statistical Methods, ch. 3), from the exact null
  distribution of the signed-rank statistic computed here by counting (no scipy: a few lines of dynamic
  programming give exact values for the pair counts a gate uses);
- the one-sided p-value tests "head is slower" with the same statistic (exact without ties or zeros,
  else the normal approximation with tie correction, as scipy and R do);
- Holm's step-down adjustment controls the family-wise error over every (case, metric) tested.
Higher values are better (tokens/s): a slowdown is d < 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np


def log_ratios(base: Sequence[float], head: Sequence[float]) -> np.ndarray:
    """d = ln(head / base) per pair; every value must be positive."""
    b, h = np.asarray(base, dtype=float), np.asarray(head, dtype=float)
    if b.shape != h.shape or b.ndim != 1 or b.size == 0:
        raise ValueError("base and head need the same number (>= 1) of paired values")
    if not (np.all(b > 0) and np.all(h > 0) and np.all(np.isfinite(b)) and np.all(np.isfinite(h))):
        raise ValueError("paired values must be finite and positive")
    return np.log(h / b)


def walsh_averages(d: Sequence[float]) -> np.ndarray:
    """Sorted (d_i + d_j) / 2 over i <= j: n (n + 1) / 2 values."""
    x = np.asarray(d, dtype=float)
    i, j = np.triu_indices(x.size)
    return np.sort((x[i] + x[j]) / 2)


def hodges_lehmann(d: Sequence[float]) -> float:
    """The Hodges-Lehmann estimate of the center of d (the median of its Walsh averages)."""
    return float(np.median(walsh_averages(d)))


@lru_cache(maxsize=256)
def signed_rank_null(n: int) -> tuple[float, ...]:
    """P(T+ = t), t = 0 .. n (n + 1) / 2, for the Wilcoxon signed-rank statistic of n untied nonzero values
    under the null (each rank's sign a fair coin): counts of subsets of {1..n} by their sum, / 2^n."""
    if n < 0:
        raise ValueError("n must be >= 0")
    counts = [1] + [0] * (n * (n + 1) // 2)
    for rank in range(1, n + 1):
        for total in range(rank * (rank + 1) // 2, rank - 1, -1):
            counts[total] += counts[total - rank]
    scale = 2.0**n
    return tuple(c / scale for c in counts)


def signed_rank_cdf(t: int, n: int) -> float:
    """P(T+ <= t) under the null, exactly."""
    probs = signed_rank_null(n)
    return float(sum(probs[: max(0, min(t, len(probs) - 1)) + 1])) if t >= 0 else 0.0


def wilcoxon_interval(d: Sequence[float], confidence: float) -> tuple[float, float]:
    """The exact two-sided `confidence` interval for the center of d: [W_(k), W_(N+1-k)] of the sorted Walsh
    averages, k the largest with P(T+ <= k - 1) <= (1 - confidence) / 2. With too few pairs for that
    confidence, (-inf, inf): they cannot bound anything."""
    if not 0 < confidence < 1:
        raise ValueError("confidence must be between 0 and 1")
    w = walsh_averages(d)
    n = len(d)
    tail = (1 - confidence) / 2
    k = 0
    while k + 1 <= len(w) and signed_rank_cdf(k, n) <= tail:  # P(T+ <= (k+1) - 1) <= tail
        k += 1
    if k == 0:
        return -math.inf, math.inf
    return float(w[k - 1]), float(w[len(w) - k])


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (1-based), ties sharing the mean of their positions."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    sorted_vals = values[order]
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_vals[end + 1] == sorted_vals[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def slowdown_p_value(d: Sequence[float]) -> float:
    """One-sided p-value of the signed-rank test for H1: the center of d is below 0 (head slower).
    Zeros are dropped (Wilcoxon's rule); exact without ties, else the tie-corrected normal approximation."""
    x = np.asarray(d, dtype=float)
    x = x[x != 0]
    n = x.size
    if n == 0:
        return 1.0
    ranks = _ranks(np.abs(x))
    t_plus = float(ranks[x > 0].sum())
    if np.all(ranks == np.round(ranks)) and len(set(np.abs(x))) == n:
        return signed_rank_cdf(int(round(t_plus)), n)  # small T+ = mostly negative d = slower
    mean = n * (n + 1) / 4
    _, tie_counts = np.unique(np.abs(x), return_counts=True)
    var = n * (n + 1) * (2 * n + 1) / 24 - float(np.sum(tie_counts**3 - tie_counts)) / 48
    z = (t_plus - mean + 0.5) / math.sqrt(var)  # continuity correction towards the null
    return 0.5 * math.erfc(-z / math.sqrt(2))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (compare each with the family alpha)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class Comparison:
    """A paired comparison of head against base: ratio = head / base (above 1: head faster)."""

    pairs: int
    ratio: float  # exp(Hodges-Lehmann estimate of d)
    ci: tuple[float, float]  # ratio interval at `confidence`
    confidence: float
    p_slower: float  # one-sided, before any multiplicity adjustment


def compare(base: Sequence[float], head: Sequence[float], confidence: float = 0.98) -> Comparison:
    """Compare paired per-round values (higher is better). The default two-sided 98 % interval has a
    one-sided 99 % bound, matching a one-sided test at alpha 0.01."""
    d = log_ratios(base, head)
    lo, hi = wilcoxon_interval(d, confidence)
    return Comparison(len(d), math.exp(hodges_lehmann(d)), (math.exp(lo), math.exp(hi)), confidence,
                      slowdown_p_value(d))


def verdict(c: Comparison, p_adjusted: float, alpha: float = 0.01, threshold: float = 0.05,
            min_effect: float = 0.01) -> str:
    """'regression': a significant slowdown (adjusted p < alpha) of at least `min_effect`; 'pass': the
    interval rules out a slowdown of `threshold` or more; 'inconclusive': neither. Improvements pass."""
    if p_adjusted < alpha and c.ratio <= 1 - min_effect:
        return "regression"
    if c.ci[0] > 1 - threshold:
        return "pass"
    return "inconclusive"
