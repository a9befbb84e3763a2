"""Speed-ups with intervals (tritbench.analysis.speedup) against hand-computed values, and their properties:
the ratio lies inside its interval, swapping the sides inverts both, too few values give no interval."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tritbench.analysis.speedup import (
    PAIRED,
    UNPAIRED,
    WIDE_FACTOR,
    Side,
    interval_verdict,
    is_faster,
    key_label,
    match_key,
    min_samples,
    newest_per_key,
    pairs_with,
    record_speedup,
    speedup,
)
from tritbench.analysis.stats import summarize


def side(samples, run_id=None, rounds=None, unstable=False, median=None):
    samples = tuple(float(x) for x in samples)
    return Side(samples, float(np.median(samples)) if median is None else median, unstable, run_id, rounds,
                len(samples) if rounds else None)


# ---- how many values an interval needs ----------------------------------------------------------------------

def test_min_samples_is_where_the_extremes_first_reach_the_confidence():
    assert min_samples(0.95) == 6  # 2 * 0.5^6 = 0.031 <= 0.05 < 2 * 0.5^5
    assert min_samples(0.90) == 5
    assert min_samples(0.98) == 7
    assert min_samples(0.99) == 8
    assert min_samples(0.5) == 2  # 2 * 0.5^2 = 0.5 exactly
    with pytest.raises(ValueError):
        min_samples(1.0)


# ---- paired -------------------------------------------------------------------------------------------------

def test_paired_ratio_and_interval_by_hand():
    """Six rounds of two repetitions: per-round medians 101 (A) and 101 e^d (B), d = 0.1 .. 0.6. The Walsh
    averages of d are symmetric about 0.35 (Hodges-Lehmann); at 95 % with 6 pairs k = 1 (P(T+ <= 0) = 1/64 <=
    0.025 < P(T+ <= 1) = 2/64), so the interval is [min d, max d]."""
    d = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    a = [x for _ in d for x in (100.0, 102.0)]
    b = [x for di in d for x in (101 * math.exp(di) * 0.99, 101 * math.exp(di) * 1.01)]
    sa, sb = side(a, "run1", 6), side(b, "run1", 6)
    assert pairs_with(sa, sb) and sa.round_values() == [101.0] * 6
    s = speedup(sa, sb)
    assert s.method == PAIRED and s.n == 6 and s.description == "paired, 6 rounds"
    assert s.ratio == pytest.approx(math.exp(0.35))
    assert (s.lo, s.hi) == (pytest.approx(math.exp(0.1)), pytest.approx(math.exp(0.6)))
    assert s.wide and s.unstable  # e^0.5 = 1.65 > 1.25


def test_uneven_rounds_take_the_runners_split():
    # 7 repetitions over 3 rounds: 3, 2, 2
    s = side([1, 2, 30, 4, 5, 6, 70], "r", 3)
    assert s.round_values() == [2.0, 4.5, 38.0]


def test_pairing_cancels_drift_the_rounds_share():
    """Each round's machine state scales both sides (x1 .. x10); B is 1.2x faster in every round. Paired: exactly
    1.2 with a tight interval. Unpaired, the drift swamps it."""
    drift = [1.0, 10.0, 3.0, 7.0, 2.0, 5.0, 9.0, 4.0]
    a = [100.0 * f for f in drift]
    b = [120.0 * f for f in drift]
    paired = speedup(side(a, "run", 8), side(b, "run", 8))
    assert paired.method == PAIRED and paired.ratio == pytest.approx(1.2)
    assert paired.lo == pytest.approx(1.2) and paired.hi == pytest.approx(1.2) and not paired.unstable
    unpaired = speedup(side(a, "run-a", 8), side(b, "run-b", 8))
    assert unpaired.method == UNPAIRED and unpaired.hi / unpaired.lo > 3 and unpaired.unstable


def test_different_plans_or_runs_do_not_pair():
    a = side(range(1, 9), "r", 8)
    assert not pairs_with(a, side(range(1, 9), "other", 8))
    assert not pairs_with(a, side(range(1, 9), "r", 4))
    assert not pairs_with(a, side(range(1, 9), None, 8))
    assert not pairs_with(a, Side(a.samples[:7], 4.0, False, "r", 8, 8))  # fewer samples than repetitions


def test_five_rounds_give_no_interval_at_95_but_do_at_90():
    a, b = side([100, 101, 99, 100, 102], "r", 5), side([110, 111, 109, 112, 110], "r", 5)
    s = speedup(a, b)
    assert s.method == PAIRED and s.lo is None and s.hi is None and not s.bounded and not s.wide
    assert interval_verdict(s) == "inconclusive"
    s90 = speedup(a, b, confidence=0.90)
    assert s90.bounded and s90.lo <= s90.ratio <= s90.hi


# ---- unpaired -----------------------------------------------------------------------------------------------

def test_unpaired_ratio_is_the_ratio_of_the_recorded_medians():
    a, b = side([90, 100, 110, 95, 105, 100], median=100.0), side([270, 300, 330, 285, 315, 300], median=300.0)
    s = speedup(a, b)
    assert s.method == UNPAIRED and s.ratio == 3.0 and s.description == "unpaired bootstrap, 6+6 samples"
    assert 2.4 < s.lo <= 3.0 <= s.hi < 3.75


def test_unpaired_constant_sides_have_a_point_interval():
    s = speedup(side([100.0] * 6), side([120.0] * 6))
    assert (s.ratio, s.lo, s.hi) == (pytest.approx(1.2), pytest.approx(1.2), pytest.approx(1.2))
    assert not s.unstable and interval_verdict(s) == "pass" and is_faster(s)


def test_unpaired_interval_lies_between_the_extreme_ratios_and_is_seeded():
    a = [100, 104, 97, 101, 99, 103, 98]
    b = [80, 83, 79, 84, 78, 82]
    s = speedup(side(a), side(b))
    assert min(b) / max(a) <= s.lo <= s.ratio <= s.hi <= max(b) / min(a)
    assert speedup(side(a), side(b)) == s  # seeded: the same interval every time
    rng = np.random.default_rng(0)
    x, y = side(rng.uniform(90, 110, 40)), side(rng.uniform(80, 100, 40))
    assert speedup(x, y, seed=1) != speedup(x, y, seed=0)  # the seed is the bootstrap's
    assert interval_verdict(s) == "regression" and not is_faster(s)


def test_too_few_samples_give_no_interval_never_an_invented_one():
    s = speedup(side([100, 101, 99, 100, 102]), side([120, 121, 119, 120, 122, 123]))
    assert s.lo is None and s.hi is None and s.ratio == pytest.approx(120.5 / 100)
    single = Side.of({"median": 50.0})  # a record with a median and no samples
    assert single.samples == (50.0,)
    assert speedup(single, single).lo is None


def test_an_unstable_side_flags_the_speedup():
    s = speedup(side([100.0] * 6), side([120.0] * 6, unstable=True))
    assert not s.wide and s.unstable


def test_wide_is_hi_over_lo_above_the_factor():
    lo_spread = speedup(side([100.0] * 6), side([100, 104, 108, 112, 116, 120]))
    assert lo_spread.hi / lo_spread.lo <= WIDE_FACTOR and not lo_spread.wide
    hi_spread = speedup(side([100.0] * 6), side([50, 80, 100, 120, 150, 200]))
    assert hi_spread.hi / hi_spread.lo > WIDE_FACTOR and hi_spread.wide and hi_spread.unstable


def test_lower_is_better_metrics_invert():
    lat_a, lat_b = side([2.0] * 6), side([1.0] * 6)  # B's latency halved: twice as fast
    s = speedup(lat_a, lat_b, higher_is_better=False)
    assert s.ratio == 2.0 and s.lo == pytest.approx(2.0)
    paired = speedup(side([2.0, 4.0] * 3, "r", 6), side([1.0, 2.0] * 3, "r", 6), higher_is_better=False)
    assert paired.method == PAIRED and paired.ratio == pytest.approx(2.0)


def test_sides_without_usable_values_give_no_speedup():
    assert Side.of(None) is None and Side.of({}) is None
    assert Side.of({"samples": [1.0, 0.0], "median": 0.5}) is None
    assert Side.of({"samples": [1.0, float("nan")], "median": 1.0}) is None
    assert Side.of({"samples": "x", "median": "y"}) is None
    rec = {"run_id": "r", "metrics": {"tokens_per_s": summarize([10.0, 11.0])}, "settings": {"rounds": 2}}
    assert record_speedup(rec, {"metrics": {}}) is None


# ---- verdicts -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("lo", "hi", "expected"), [
    (0.80, 0.85, "regression"),   # entirely below 0.99
    (0.96, 0.985, "regression"),  # a small but certain slowdown is still one
    (0.96, 1.02, "pass"),         # rules out a 5 % slowdown
    (1.05, 1.10, "pass"),         # faster passes
    (0.90, 1.10, "inconclusive"),
    (0.94, 0.995, "inconclusive"),
])
def test_interval_verdicts(lo, hi, expected):
    s = dataclasses.replace(speedup(side([1.0] * 6), side([1.0] * 6)), lo=lo, hi=hi)
    assert interval_verdict(s, threshold=0.05, min_effect=0.01) == expected
    assert is_faster(s) == (lo > 1.01)


# ---- properties ---------------------------------------------------------------------------------------------

values = st.lists(st.floats(min_value=1.0, max_value=1e4, allow_nan=False), min_size=1, max_size=16)


def _close(x, y):
    if x is None or y is None:
        return x is None and y is None
    return math.isclose(x, y, rel_tol=1e-9)


@settings(max_examples=150, deadline=None)
@given(values, values)
def test_unpaired_ratio_inside_interval_and_swap_inverts(a, b):
    s, t = speedup(side(a), side(b)), speedup(side(b), side(a))
    assert _close(s.ratio, 1 / t.ratio)
    if s.bounded:
        assert s.lo <= s.ratio <= s.hi
        assert _close(s.lo, 1 / t.hi) and _close(s.hi, 1 / t.lo)
    else:
        assert not t.bounded and min(len(a), len(b)) < min_samples(0.95)


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=1, max_value=14).flatmap(
    lambda n: st.tuples(st.lists(st.floats(1.0, 1e4), min_size=n, max_size=n),
                        st.lists(st.floats(1.0, 1e4), min_size=n, max_size=n))))
def test_paired_ratio_inside_interval_and_swap_inverts(ab):
    a, b = ab
    sa, sb = side(a, "run", len(a)), side(b, "run", len(b))
    s, t = speedup(sa, sb), speedup(sb, sa)
    assert s.method == t.method == PAIRED and s.n == len(a)
    assert _close(s.ratio, 1 / t.ratio)
    if s.bounded:
        assert s.lo * (1 - 1e-12) <= s.ratio <= s.hi * (1 + 1e-12)
        assert _close(s.lo, 1 / t.hi) and _close(s.hi, 1 / t.lo)
    else:
        assert len(a) < min_samples(0.95) and not t.bounded


@settings(max_examples=60, deadline=None)
@given(values, values, st.floats(min_value=0.1, max_value=10.0))
def test_scaling_b_scales_ratio_and_interval(a, b, c):
    s, t = speedup(side(a), side(b)), speedup(side(a), side([x * c for x in b]))
    assert math.isclose(t.ratio, s.ratio * c, rel_tol=1e-9)
    if s.bounded:
        assert math.isclose(t.lo, s.lo * c, rel_tol=1e-9) and math.isclose(t.hi, s.hi * c, rel_tol=1e-9)


# ---- which records are the same case ------------------------------------------------------------------------

def rec(fmt="tq2_0", run_id="r1", machine_id="m1", requested=None, cache=None, test="tg16",
        stamp="2025-01-01T00:00:00+00:00"):
    settings_ = {"n_threads": 2, "requested": requested or {"n_threads": 2}, "repetitions": 6, "rounds": 6}
    if cache:
        settings_["cache"] = cache
    return {"run_id": run_id, "case_id": f"{fmt}-{test}", "status": "ok", "backend": {"name": "llamacpp"},
            "model": {"name": "tiny", "format": fmt}, "workload": {"name": test}, "settings": settings_,
            "machine": {"id": machine_id}, "metrics": {}, "timestamp": stamp}


def test_match_key_ignores_the_run_and_names_the_case():
    k = match_key(rec())
    assert k == match_key(rec(run_id="r2"))
    assert k != match_key(rec(fmt="tq1_0")) and k != match_key(rec(test="pp64"))
    assert k != match_key(rec(requested={"n_threads": 1})) and k != match_key(rec(cache="cold"))
    assert k != match_key(rec(machine_id="m2"))
    assert match_key(rec(), machine=False) == match_key(rec(machine_id="m2"), machine=False)
    assert match_key(rec(requested={"n_threads": 2, "flash_attn": 1})) == \
        match_key(rec(requested={"flash_attn": 1, "n_threads": 2}))  # option order does not matter
    old = rec()
    del old["settings"]["requested"]  # records before settings.requested: the thread count
    assert match_key(old) == k
    assert key_label(match_key(rec(cache="cold"))) == "llamacpp tiny tq2_0 tg16 n_threads=2 cache=cold machine=m1"


def test_newest_record_per_case_wins():
    older = rec(run_id="r1", stamp="2025-01-01T00:00:00+00:00")
    newer = rec(run_id="r2", stamp="2025-02-01T00:00:00+00:00")
    assert newest_per_key([newer, older])[match_key(older)]["run_id"] == "r2"
    assert newest_per_key([older, newer])[match_key(older)]["run_id"] == "r2"
    tie = rec(run_id="r3", stamp=newer["timestamp"])
    assert newest_per_key([newer, tie])[match_key(tie)]["run_id"] == "r3"  # a tie: the one read last
