"""Readings and the pure functions over them: provenance is enforced, unavailable is never zero,
repetitions add up only when they share a source, net energy subtracts the idle baseline."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tritbench.measure.energy import EnergyReading, combine_readings, energy_metrics, idle_watts, net_energy

joules = st.floats(min_value=0, max_value=1e6, allow_nan=False)
windows = st.floats(min_value=1e-3, max_value=1e4, allow_nan=False)
domain_maps = st.dictionaries(st.sampled_from(["package-0", "package-1", "dram"]), joules, min_size=1)


def measured(domains, window=1.0, source="rapl"):
    return EnergyReading.measured(source, domains, window, samples=2)


def test_provenance_is_enforced():
    with pytest.raises(ValueError):
        EnergyReading(source="rapl/package-0", joules=1.0)
    with pytest.raises(ValueError):
        EnergyReading(source="unavailable:no counters", joules=0.0)  # a missing value is not a zero
    with pytest.raises(ValueError):
        EnergyReading(source="measured:rapl/package-0")
    est = EnergyReading(source="estimated:tdp-x-utilisation", joules=12.0, window_s=2.0)
    assert est.available and est.watts == 6.0


def test_unavailable_reading_has_no_figures():
    r = EnergyReading.unavailable("rapl: /sys/class/powercap not found")
    assert r.to_dict() == {"source": "unavailable:rapl: /sys/class/powercap not found", "joules": None,
                           "window_s": None, "domains": {}, "samples": 0, "wraps": 0, "parts": {}, "note": None,
                           "sampling_cost": None}
    assert r.reason == "rapl: /sys/class/powercap not found" and r.watts is None and not r.available


@given(domain_maps, windows, st.integers(0, 100), st.integers(0, 5))
def test_round_trip_through_json(domains, window, samples, wraps):
    r = EnergyReading.measured("rapl", domains, window, samples=samples, wraps=wraps, parts={"core": 1.0})
    assert EnergyReading.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    assert r.joules == pytest.approx(sum(domains.values()))
    assert r.source == "measured:rapl/" + "+".join(domains)


COST = {"processes": 5, "background": 3, "cpu_s": 0.2, "wall_s": 0.3, "note": "one `vcgencmd` per sample"}


@given(st.integers(0, 50), st.floats(0, 10, allow_nan=False), st.floats(0, 10, allow_nan=False))
def test_sampling_cost_round_trips_and_is_never_dropped(processes, cpu_s, wall_s):
    cost = {"processes": processes, "background": max(0, processes - 2), "cpu_s": cpu_s, "wall_s": wall_s,
            "note": "n"}
    r = EnergyReading.measured("vcgencmd", {"pmic-rails": 3.0}, 1.0, samples=processes, sampling_cost=cost)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["sampling_cost"] == cost and EnergyReading.from_dict(d) == r
    failed = EnergyReading.unavailable("pi5: firmware timeout", sampling_cost=cost)
    assert failed.to_dict()["sampling_cost"] == cost and failed.joules is None
    old = {k: v for k, v in r.to_dict().items() if k != "sampling_cost"}  # a record written before the key
    assert EnergyReading.from_dict(old).sampling_cost is None


def test_sampling_costs_add_up_over_windows():
    reps = [EnergyReading.measured("vcgencmd", {"pmic-rails": 3.0}, 1.0, sampling_cost=COST) for _ in range(3)]
    c = combine_readings(reps).sampling_cost
    assert c["processes"] == 15 and c["background"] == 9 and c["note"] == COST["note"]
    assert c["cpu_s"] == pytest.approx(0.6) and c["wall_s"] == pytest.approx(0.9)
    m = energy_metrics(reps, tokens=30)
    assert m["sampling_cost"] == c and json.dumps(m)
    # a failed window keeps its cost; the whole has no figure but still says what sampling cost
    failed = EnergyReading.unavailable("pi5: firmware timeout", sampling_cost=COST)
    assert combine_readings([*reps, failed]).sampling_cost["processes"] == 20
    unknown = {**COST, "cpu_s": None}  # e.g. a process whose CPU time could not be read
    assert combine_readings([reps[0], EnergyReading.measured("vcgencmd", {"pmic-rails": 1.0}, 1.0,
                                                             sampling_cost=unknown)]).sampling_cost["cpu_s"] is None
    partial = combine_readings([reps[0], measured({"pmic-rails": 1.0}, source="vcgencmd")]).sampling_cost
    assert partial["processes"] is None and partial["note"] == "only 1 of 2 windows recorded their sampling cost"
    assert combine_readings([measured({"package-0": 1.0})] * 2).sampling_cost is None
    assert energy_metrics([measured({"package-0": 1.0})], tokens=1)["sampling_cost"] is None


def test_net_energy():
    gross = measured({"package-0": 30.0}, window=2.0)
    assert net_energy(gross, 5.0) == pytest.approx(20.0)
    assert net_energy(gross, None) is None
    assert net_energy(EnergyReading.unavailable("x"), 5.0) is None
    assert net_energy(gross, 20.0) == pytest.approx(-10.0)  # within the noise: kept, not clipped
    assert idle_watts(measured({"package-0": 9.0}, window=3.0)) == pytest.approx(3.0)
    assert idle_watts(EnergyReading.unavailable("x")) is None and idle_watts(None) is None


@given(st.lists(st.tuples(domain_maps, windows), min_size=1, max_size=6))
def test_repetitions_of_one_source_add_up(reps):
    keys = sorted(reps[0][0])
    readings = [measured({k: d.get(k, 0.0) for k in keys}, w) for d, w in reps]
    c = combine_readings(readings)
    assert c.joules == pytest.approx(sum(r.joules for r in readings))
    assert c.joules == pytest.approx(sum(c.domains.values()))
    assert c.window_s == pytest.approx(sum(w for _, w in reps)) and c.samples == 2 * len(reps)


@given(st.lists(domain_maps, min_size=1, max_size=5), st.integers(0, 4))
def test_one_unavailable_repetition_makes_the_whole_unavailable(reps, where):
    readings = [measured(d) for d in reps]
    readings.insert(min(where, len(readings)), EnergyReading.unavailable("rapl: counter vanished"))
    c = combine_readings(readings)
    assert c.joules is None
    assert c.source == f"unavailable:1 of {len(readings)} windows unavailable: rapl: counter vanished"


def test_sources_are_never_mixed():
    c = combine_readings([measured({"package-0": 1.0}),
                          EnergyReading(source="estimated:tdp-x-utilisation", joules=2.0, window_s=1.0)])
    assert c.joules is None and c.source.startswith("unavailable:windows measured by different sources")
    assert combine_readings([]).source == "unavailable:no measured windows"


def test_energy_metrics_for_a_record():
    reps = [measured({"package-0": 10.0, "dram": 2.0}, 2.0), measured({"package-0": 8.0, "dram": 1.0}, 1.5)]
    idle = measured({"package-0": 3.0, "dram": 1.0}, 2.0)  # 2 W
    m = energy_metrics(reps, tokens=42, idle=idle)
    assert m["source"] == "measured:rapl/package-0+dram" and m["joules"] == pytest.approx(21.0)
    assert m["window_s"] == pytest.approx(3.5) and m["joules_per_token"] == pytest.approx(0.5)
    assert m["idle_watts"] == pytest.approx(2.0) and m["net_joules"] == pytest.approx(14.0)
    assert m["net_joules_per_token"] == pytest.approx(14.0 / 42) and m["windows"] == 2
    json.dumps(m)


def test_energy_metrics_when_unavailable_or_idle_from_elsewhere():
    m = energy_metrics([EnergyReading.unavailable("rapl: permission denied")], tokens=10, idle=3.0)
    assert m["source"] == "unavailable:rapl: permission denied"
    assert all(m[k] is None for k in ("joules", "window_s", "joules_per_token", "net_joules", "net_joules_per_token"))
    other = energy_metrics(measured({"package-0": 4.0}), tokens=4, idle=measured({"psys": 10.0}, source="rapl"))
    assert other["idle_watts"] is None and other["net_joules"] is None and other["joules_per_token"] == 1.0
