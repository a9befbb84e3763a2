"""The gate's paired statistics against hand-computed values, brute force and published tables, and their
behaviour on seeded simulated noise (coverage, false alarms, power): they must be able to fail."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from tritbench.analysis.paired import (
    Comparison,
    compare,
    hodges_lehmann,
    holm,
    log_ratios,
    signed_rank_cdf,
    signed_rank_null,
    slowdown_p_value,
    verdict,
    walsh_averages,
    wilcoxon_interval,
)


@pytest.mark.parametrize("n", range(0, 11))
def test_null_distribution_matches_enumeration(n):
    sums = [sum(r for r, s in zip(range(1, n + 1), signs, strict=True) if s)
            for signs in itertools.product((0, 1), repeat=n)]
    brute = [sums.count(t) / 2**n for t in range(n * (n + 1) // 2 + 1)]
    assert signed_rank_null(n) == pytest.approx(brute, abs=1e-15)


def test_published_critical_values():
    # two-sided 5 % critical values of T (tables in Hollander & Wolfe): n=10 -> 8, n=20 -> 52
    assert signed_rank_cdf(8, 10) <= 0.025 < signed_rank_cdf(9, 10)
    assert signed_rank_cdf(8, 10) == pytest.approx(25 / 1024)
    assert signed_rank_cdf(52, 20) <= 0.025 < signed_rank_cdf(53, 20)


def test_hodges_lehmann_by_hand():
    assert list(walsh_averages([1, 2, 4])) == [1, 1.5, 2, 2.5, 3, 4]
    assert hodges_lehmann([1, 2, 4]) == 2.25
    assert hodges_lehmann([-3.0]) == -3.0


def test_interval_is_the_walsh_order_statistics():
    d = np.linspace(-0.05, 0.04, 10) + np.array([0.001 * i * i for i in range(10)])
    w = walsh_averages(d)
    assert wilcoxon_interval(d, 0.95) == (w[8], w[55 - 9])  # k = 9 for n = 10 at 95 %
    assert wilcoxon_interval(d[:3], 0.98) == (-math.inf, math.inf)  # 3 pairs cannot bound anything at 98 %


def test_p_values():
    assert slowdown_p_value([-0.1, -0.2, -0.3, -0.4, -0.5]) == pytest.approx(1 / 32)  # all slower, exact
    assert slowdown_p_value([0.1, 0.2, 0.3, 0.4, 0.5]) == 1.0
    assert slowdown_p_value([0.0, 0.0]) == 1.0  # zeros are dropped: no evidence
    tied = slowdown_p_value([-0.1, -0.1, -0.2, 0.05, -0.3, -0.3, -0.4, -0.1])
    assert 0 < tied < 0.05  # normal approximation with tie correction


def test_holm_by_hand():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5]) == [0.5] and holm([]) == []


def test_log_ratios_refuse_what_is_not_a_speed():
    with pytest.raises(ValueError):
        log_ratios([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        log_ratios([1.0, 0.0], [1.0, 1.0])
    assert log_ratios([2.0], [1.0]) == pytest.approx([math.log(0.5)])


def test_verdicts():
    slower = Comparison(32, 0.95, (0.93, 0.97), 0.98, 1e-6)
    same = Comparison(32, 1.0, (0.98, 1.02), 0.98, 0.5)
    wide = Comparison(8, 0.99, (0.80, 1.10), 0.98, 0.3)
    faster = Comparison(32, 1.2, (1.1, 1.3), 0.98, 1.0)
    assert verdict(slower, 1e-5) == "regression"
    assert verdict(same, 0.5) == "pass" and verdict(faster, 1.0) == "pass"
    assert verdict(wide, 0.3) == "inconclusive"
    tiny = Comparison(64, 0.995, (0.99, 0.999), 0.98, 1e-4)  # significant but below the minimum effect
    assert verdict(tiny, 1e-4) == "pass"


def _trials(rng, ratio: float, sd: float, pairs: int, trials: int) -> list[Comparison]:
    out = []
    for _ in range(trials):
        base = np.exp(rng.normal(5.0, 0.3, pairs))  # a drifting machine: both sides share it per round
        head = base * ratio * np.exp(rng.normal(0.0, sd, pairs))
        out.append(compare(base, head))
    return out


def test_on_simulated_noise_false_alarms_are_rare_and_real_slowdowns_are_found():
    rng = np.random.default_rng(20261202)
    aa = _trials(rng, 1.0, 0.08, 32, 300)
    false_alarms = sum(verdict(c, c.p_slower) == "regression" for c in aa)
    assert false_alarms <= 9  # alpha 0.01 one-sided: ~3 expected of 300
    covered = sum(c.ci[0] <= 1.0 <= c.ci[1] for c in aa)
    assert covered >= 0.96 * 300  # a 98 % interval
    ab = _trials(rng, 0.95, 0.05, 48, 100)  # the gates note's 5 % slowdown at its measured noise
    found = sum(verdict(c, c.p_slower) == "regression" for c in ab)
    assert found >= 90
    assert all(0.93 < c.ratio < 0.97 for c in ab[:10])
