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


def test_bootstrap_is_seeded():
    x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    assert bootstrap_median_ci(x) == bootstrap_median_ci(x)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0.001, max_value=1e6, allow_nan=False), min_size=1, max_size=40))
def test_summary_invariants(xs):
    s = summarize(xs)
    assert s["min"] <= s["q1"] <= s["median"] <= s["q3"] <= s["max"]
    assert s["p50"] == pytest.approx(s["median"])
    lo, hi = s["ci95_median"]
    assert s["min"] <= lo <= hi <= s["max"]
