import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tritbench.analysis.stats import bootstrap_median_ci, summarize


def test_summary_of_known_samples():
    s = summarize([10.0, 11.0, 12.0, 13.0, 14.0])
    assert s["median"] == 12.0
    assert s["mean"] == 12.0
    assert s["q1"] == 11.0 and s["q3"] == 13.0 and s["iqr"] == 2.0
    assert s["sd"] == pytest.approx(np.std([10, 11, 12, 13, 14], ddof=1))
    assert s["min"] == 10.0 and s["max"] == 14.0
    assert s["p50"] == 12.0
    assert s["p90"] == pytest.approx(13.6)
    assert s["n"] == 5 and s["samples"] == [10.0, 11.0, 12.0, 13.0, 14.0]
    # IQR is 2/12 = 17 % of the median
    assert s["unstable"] is True


def test_tight_samples_are_stable():
    s = summarize([100.0, 100.5, 101.0, 99.5, 100.2])
    assert s["unstable"] is False
    lo, hi = s["ci95_median"]
    assert lo <= s["median"] <= hi


def test_one_slow_outlier_flags_unstable_in_the_right_direction():
    tps = [100.0] * 9 + [50.0]  # one repetition at half speed: bad for a throughput
    assert summarize(tps, higher_is_better=True)["unstable"] is True
    lat = [10.0] * 9 + [6.0]  # one fast latency sample is not a 1.5x outlier
    assert summarize(lat, higher_is_better=False)["unstable"] is False
    lat_slow = [10.0] * 9 + [16.0]
    assert summarize(lat_slow, higher_is_better=False)["unstable"] is True


def test_single_sample_and_empty():
    s = summarize([5.0])
    assert s["median"] == 5.0 and s["sd"] == 0.0 and s["ci95_median"] == [5.0, 5.0]
    with pytest.raises(ValueError):
        summarize([])


def reference_bootstrap(x, confidence=0.95, n_resamples=2000, seed=0):
    """The documented algorithm written out independently: n_resamples rows of n indices drawn with
    replacement from default_rng(seed), each row's median by sorting, and the linear-interpolated
    alpha/2 and 1 - alpha/2 quantiles of those medians, also by hand."""
    x = np.asarray(x, dtype=float)
    n = x.size
    rng = np.random.default_rng(seed)
    rows = np.sort(x[rng.integers(0, n, size=(n_resamples, n))], axis=1)
    medians = np.sort((rows[:, (n - 1) // 2] + rows[:, n // 2]) / 2)

    def quantile(q):
        pos = q * (n_resamples - 1)
        lo = int(np.floor(pos))
        hi = min(lo + 1, n_resamples - 1)
        return medians[lo] + (pos - lo) * (medians[hi] - medians[lo])

    alpha = (1 - confidence) / 2
    return quantile(alpha), quantile(1 - alpha)


# 30 irregularly spaced values (an even count: a median is the mean of two of them), so that resampled
# medians take many values and the interval's ends move with the draw.
SPREAD = [7.7, 5.86, 7.58, 10.41, 3.07, 17.15, 5.88, 5.48, 4.38, 11.77, 10.36, 13.77, 11.55, 8.43, 8.71,
          11.79, 4.76, 7.22, 8.94, 5.89, 10.6, 6.2, 10.34, 7.93, 9.31, 3.46, 4.81, 14.47, 8.08, 7.09]


@pytest.mark.parametrize("x", [SPREAD, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], [5.0, 5.0, 9.0, 1.0]])
@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_bootstrap_matches_an_independent_percentile_bootstrap(x, seed):
    assert bootstrap_median_ci(x, seed=seed) == pytest.approx(reference_bootstrap(x, seed=seed), rel=1e-12)
    assert bootstrap_median_ci(x, confidence=0.5, n_resamples=301, seed=seed) == pytest.approx(
        reference_bootstrap(x, confidence=0.5, n_resamples=301, seed=seed), rel=1e-12)


def test_bootstrap_defaults_are_the_documented_ones():
    # 95 %, 2000 resamples, seed 0: the default call is the reference with those values
    default = bootstrap_median_ci(SPREAD)
    assert default == pytest.approx(reference_bootstrap(SPREAD, 0.95, 2000, 0), rel=1e-12)
    for other in [(0.90, 2000, 0), (0.95, 1000, 0), (0.95, 2000, 1)]:  # each default matters on this sample
        assert default != pytest.approx(reference_bootstrap(SPREAD, *other), rel=1e-12), other


def test_bootstrap_of_two_samples_by_hand():
    # Resamples of [1, 3] are (1,1), (1,3), (3,1) or (3,3): medians 1, 2, 2, 3 with chances 1/4, 1/2, 1/4.
    # With 2000 draws far more than the 2.5 % tails land on 1 and on 3, so the interval is (1, 3) for any seed;
    # at 40 % confidence the 30 % and 70 % quantiles both fall among the 2s.
    for seed in (0, 1, 7):
        assert bootstrap_median_ci([1.0, 3.0], seed=seed) == (1.0, 3.0)
        assert bootstrap_median_ci([3.0, 1.0], confidence=0.4, seed=seed) == (2.0, 2.0)
    assert bootstrap_median_ci([4.0]) == (4.0, 4.0)
    assert bootstrap_median_ci([2.0, 2.0, 2.0]) == (2.0, 2.0)
    with pytest.raises(ValueError):
        bootstrap_median_ci([])


def test_bootstrap_is_seeded():
    first = bootstrap_median_ci(SPREAD, seed=0)
    assert bootstrap_median_ci(list(SPREAD), seed=0) == first  # same seed, same interval
    assert bootstrap_median_ci(SPREAD, seed=1) != first
    # With 200 resamples the 2.5 % end interpolates between the 5th and 6th smallest of 200 resampled medians,
    # which every draw changes: ten seeds, ten intervals, each the reference's for that seed.
    intervals = [bootstrap_median_ci(SPREAD, n_resamples=200, seed=seed) for seed in range(10)]
    assert len(set(intervals)) == 10, intervals
    for seed, interval in enumerate(intervals):
        assert interval == pytest.approx(reference_bootstrap(SPREAD, n_resamples=200, seed=seed), rel=1e-12)
    lo, hi = first
    assert min(SPREAD) <= lo < np.median(SPREAD) < hi <= max(SPREAD)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0.001, max_value=1e6, allow_nan=False), min_size=1, max_size=40))
def test_summary_invariants(xs):
    s = summarize(xs)
    assert s["min"] <= s["q1"] <= s["median"] <= s["q3"] <= s["max"]
    assert s["p50"] == pytest.approx(s["median"])
    lo, hi = s["ci95_median"]
    assert s["min"] <= lo <= hi <= s["max"]
