"""`bench gate` without processes: the axis and settings parser, the decisions on synthetic pair data, and the
whole schedule with a fake child standing in for the measuring process (tests/test_gate_cli.py runs real
ones). Nothing here is timed: the fake child's samples are drawn from seeded distributions."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from tritbench.analysis.gate import CaseResult, GateResult, gated_metrics, look, look_alphas, round_value
from tritbench.errors import BenchError, ConfigError
from tritbench.execute import runner as runner_mod
from tritbench.execute.gate import run_gate
from tritbench.execute.job import ChildResult, WorkloadResult
from tritbench.execute.runner import ChildOutcome
from tritbench.plan.ab import GateConfig, fraction, parse_axis, sides
from tritbench.plan.suite import make_config
from tritbench.plan.workloads import Workload
from tritbench.plugin import FormatInfo, Option
from tritbench.reports import gate as gate_report
from tritbench.results.records import ResultsStore


class FakeKernel:
    """A kernel backend the plan can name (the fake child below does its measuring)."""

    name = "gatefake"
    formats = {"fp32": FormatInfo(bits=32.0)}
    workload_kinds = ("gemv", "gemm")
    libraries = ()
    options = {"scale": Option(float, 1.0, "work per call")}

    def info(self):
        return {"version": "fake"}

    def open_kernel(self, *args):
        raise RuntimeError("never called: the fake child measures")


@pytest.fixture(autouse=True)
def fake_backend(monkeypatch):
    monkeypatch.setenv("TRITBENCH_PLUGINS", "gatefake=tests.test_gate:FakeKernel")
    monkeypatch.setattr(runner_mod.machine, "state", lambda: {"idle_cores": 2.0, "loadavg": [0.0, 0.0, 0.0]})


class FakeChild:
    """Kernel samples: latency = base latency x the side's factor (per workload K) x lognormal noise."""

    def __init__(self, slowdown: dict[int, float] | None = None, noise: float = 0.01, fail: str | None = None,
                 build: dict[str, str] | None = None, seed: int = 1):
        self.slowdown = slowdown or {}  # K -> head's factor on latency (1.2: 20 % slower)
        self.noise, self.fail, self.build = noise, fail, build or {}
        self.rng = np.random.default_rng(seed)
        self.calls: list[tuple[str, list[str]]] = []

    def side(self, job, env) -> str:
        if env:
            return "head" if "head" in next(iter(env.values())) else "base"
        return "head" if job.options.get("scale") == 2.0 else "base"

    def __call__(self, job, timeout, limits, python=None, env=None) -> ChildOutcome:
        side = self.side(job, env)
        self.calls.append((side, [w.name for w in job.workloads]))
        result = ChildResult(backend_info={"version": self.build.get(side, "1")}, settings={"n_threads": 1},
                             rss_after_load_bytes=1 << 20, peak_rss_bytes=2 << 20, load_s=0.0)
        for w in job.workloads:
            if self.fail == side:
                return ChildOutcome(result, "child killed by SIGSEGV: boom")
            factor = self.slowdown.get(w.K, 1.0) if side == "head" else 1.0
            reps = []
            for _ in range(job.reps):
                lat = 1e-3 * factor * math.exp(self.rng.normal(0, self.noise))
                reps.append({"calls": 10, "latency_s": lat, "cpu_s": lat, "thread_cpu_s": lat})
            result.workloads[w.name] = WorkloadResult(reps, weight_bytes=w.K * w.N * 4, copies=1, settings={})
        return ChildOutcome(result, None)


def config(tmp_path, **over):
    return make_config({}, {"backends": ["gatefake"], "formats": ["fp32"], "kinds": ["gemv"], "shapes": ["256x64"],
                            "M": [1], "threads": [1], "repetitions": 2, "warmups": 0, "energy": "none",
                            "idle_s": 0.0, "cache": ["hot"], "out": str(tmp_path), **over})


def gate(tmp_path, child, axis="env:SIDE=base,head", cfg=None, **g):
    gcfg = GateConfig(parse_axis(axis), **{"pairs": 8, "max_pairs": 8, "seed": 7, **g})
    return run_gate(gcfg, cfg or config(tmp_path), child=child)


# --- the axis and settings -------------------------------------------------------------------------------------

def test_axes_parse():
    a = parse_axis("opt:n_batch=512,2048")
    assert (a.kind, a.name, a.base, a.head, a.label) == ("opt", "n_batch", "512", "2048", "opt:n_batch=512,2048")
    assert parse_axis("model=small, small@layers=21").head == "small@layers=21"
    assert parse_axis("env:TRITBENCH_KERNEL=avx2,avx512").name == "TRITBENCH_KERNEL"
    assert parse_axis("env:FLAG=,1").base == ""  # unset vs set: an empty value is a value


@pytest.mark.parametrize("text", ["", "speed=a,b", "model=a", "model=a,b,c", "model=a,a", "opt=a,b", "env:=a,b",
                                  "env:1X=a,b", "ref:x=a,b", "python=,b", "model"])
def test_bad_axes_are_one_line_config_errors(text):
    with pytest.raises(ConfigError) as exc:
        parse_axis(text)
    assert "\n" not in str(exc.value)


def test_fractions_and_settings():
    assert fraction("5%", "x") == pytest.approx(0.05) and fraction("0.02", "x") == 0.02
    for bad in ("five", "nan%", "inf"):
        with pytest.raises(ConfigError):
            fraction(bad, "--threshold")
    axis = parse_axis("env:X=a,b")
    for kwargs in ({"threshold": 0.0}, {"threshold": 1.5}, {"alpha": 0.0}, {"alpha": 0.7}, {"min_effect": 0.06},
                   {"pairs": 1}, {"pairs": 8, "max_pairs": 4}, {"metric": "joules"}, {"inconclusive": "maybe"},
                   {"pairs": 8, "max_pairs": 10, "looks": 4}, {"pairs": 8, "max_pairs": 10, "looks": 1}):
        with pytest.raises(ConfigError):
            GateConfig(axis, **kwargs).validate()
    # looks evenly spaced from --pairs to --max-pairs; the default is 32 -> 96 -> 160
    assert GateConfig(axis).look_points() == [32, 96, 160]
    assert GateConfig(axis, pairs=8, max_pairs=8).look_points() == [8]
    assert GateConfig(axis, pairs=16, max_pairs=32, looks=2).look_points() == [16, 32]
    assert GateConfig(axis, pairs=10, max_pairs=20, looks=4).look_points() == [10, 13, 17, 20]
    assert GateConfig(axis, pairs=8, max_pairs=10, looks=3).look_points() == [8, 9, 10]


def test_sides_set_the_axis_and_nothing_else(tmp_path):
    cfg = config(tmp_path)
    base, head = sides(parse_axis("opt:scale=1,2"), cfg)
    assert (base.cfg.options, head.cfg.options) == ({"scale": ["1"]}, {"scale": ["2"]})
    assert base.cfg.backends == head.cfg.backends == cfg.backends
    base, head = sides(parse_axis("env:SIDE=a,b"), cfg)
    assert (base.env, head.env, base.cfg, base.python) == ({"SIDE": "a"}, {"SIDE": "b"}, cfg, None)
    with pytest.raises(ConfigError, match="no selected backend has that option"):
        sides(parse_axis("opt:nope=1,2"), cfg)
    with pytest.raises(ConfigError, match="same value"):
        sides(parse_axis("opt:scale=1,1.0"), cfg)
    with pytest.raises(ConfigError, match="not an executable"):
        sides(parse_axis(f"python={tmp_path}/none,{tmp_path}/other"), cfg)


# --- decisions on synthetic pairs ------------------------------------------------------------------------------

def pairs(n: int, ratio: float, noise: float, seed: int = 0) -> tuple[list[float], list[float]]:
    rng = np.random.default_rng(seed)
    base = 100 * np.exp(rng.normal(0, noise, n))
    head = base * ratio * np.exp(rng.normal(0, noise, n))
    return list(base), list(head)


def decide(data: dict, alpha=0.01, threshold=0.05, metric=("cpu",)):
    cases = {name: {"cpu": d, "wall": d} for name, d in data.items()}
    return look(cases, {name: metric for name in data}, alpha, threshold, 0.01)


def test_a_20_percent_slowdown_is_a_regression_and_a_null_is_not():
    out = decide({"slow": pairs(16, 0.8, 0.03), "same": pairs(16, 1.0, 0.01)})
    assert out["slow"].verdict == "regression"
    assert out["slow"].tests["cpu"].comparison.ratio == pytest.approx(0.8, rel=0.03)
    assert out["same"].verdict == "pass"  # the interval rules out 5 %
    assert out["slow"].tests["wall"].verdict is None  # reported, not gated


def test_a_noisy_short_run_is_inconclusive():
    out = decide({"noisy": pairs(6, 0.97, 0.2, seed=3)})
    assert out["noisy"].verdict == "inconclusive"
    assert out["noisy"].tests["cpu"].detectable is None or out["noisy"].tests["cpu"].detectable > 0.05


def test_improvements_are_never_regressions():
    assert decide({"fast": pairs(16, 1.3, 0.02)})["fast"].verdict == "pass"


def test_holm_adjusts_over_every_gated_test():
    # one weak slowdown alone is significant; among many tests Holm's factor lifts its p-value
    weak = pairs(10, 0.97, 0.01, seed=5)
    alone = decide({"a": weak}, alpha=0.01)["a"].tests["cpu"]
    many = decide({"a": weak, **{f"n{i}": pairs(10, 1.0, 0.01, seed=i) for i in range(20)}})["a"].tests["cpu"]
    assert many.p_adjusted > alone.p_adjusted and alone.p_adjusted == alone.comparison.p_slower


def test_both_metrics_gate_when_asked():
    out = look({"c": {"cpu": pairs(16, 1.0, 0.01), "wall": pairs(16, 0.8, 0.01)}}, {"c": ("cpu", "wall")},
               0.01, 0.05, 0.01)
    assert out["c"].verdict == "regression" and out["c"].decided_by == ("cpu", "wall")


def test_metric_choice_and_look_alphas():
    assert gated_metrics("auto", 1) == ("cpu",) and gated_metrics("auto", 4) == ("wall",)
    assert gated_metrics("both", 1) == ("cpu", "wall")
    assert look_alphas(0.01, 2) == [0.005, 0.005] and look_alphas(0.01, 1) == [0.01]
    assert look_alphas(0.03, 3) == pytest.approx([0.01] * 3)


def test_round_values_are_medians_of_a_childs_repetitions():
    pp = Workload("pp", 64)
    reps = [{"prefill_s": t, "cpu_s": c} for t, c in ((0.1, 0.08), (0.2, 0.1), (0.4, 0.16))]
    assert round_value(pp, reps) == {"wall": pytest.approx(320.0), "cpu": pytest.approx(640.0)}
    tg = Workload("tg", 0, 4)
    assert round_value(tg, [{"decode_s": [0.01] * 4, "cpu_s": 0.02}])["wall"] == pytest.approx(100.0)
    gemv = Workload("gemv", M=1, K=8, N=8)
    assert round_value(gemv, [{"latency_s": 0.5, "thread_cpu_s": 0.25}]) == {"wall": 2.0, "cpu": 4.0}


def test_exit_codes_follow_the_worst_case():
    def result(*statuses, inconclusive="fail"):
        cases = []
        for i, s in enumerate(statuses):
            c = CaseResult(f"c{i}", ("cpu",))
            if s == "error":
                c.error = "base: boom"
            else:
                from tritbench.analysis.gate import CaseLook
                c.looks.append((8, CaseLook(verdict=s)))
            cases.append(c)
        return GateResult({}, {"inconclusive": inconclusive}, 1, cases, {}, {}, "x")

    assert result("pass", "pass").exit_code() == 0
    assert result("pass", "regression", "error").exit_code() == 1  # a finding outranks a failure
    assert result("pass", "error", "inconclusive").exit_code() == 4
    assert result("pass", "inconclusive").exit_code() == 3
    assert result("inconclusive", inconclusive="pass").exit_code() == 0
    assert result("pass", "regression", "inconclusive", "error").last_line() == "gate: 1 passed, 2 failed, 1 skipped"


# --- the schedule, with a fake child ----------------------------------------------------------------------------

def test_a_slower_head_is_found_and_every_order_is_recorded(tmp_path):
    child = FakeChild(slowdown={256: 1.25}, noise=0.03)
    result = gate(tmp_path, child)
    (case,) = result.cases
    assert case.status == "regression" and result.exit_code() == 1
    assert case.decision.tests["cpu"].comparison.ratio == pytest.approx(0.8, rel=0.05)
    orders = [tuple(r["order"]) for r in case.rounds]
    assert len(orders) == 8 and set(orders) == {("base", "head"), ("head", "base")}
    # the children ran in the recorded order
    assert [s for s, _ in child.calls] == [s for o in orders for s in o]
    again = gate(tmp_path, FakeChild(slowdown={256: 1.25}, noise=0.03))
    assert [r["order"] for r in again.cases[0].rounds] == [list(o) for o in orders]  # the seed fixes the order


def test_the_records_are_ordinary_results_one_per_side(tmp_path):
    result = gate(tmp_path, FakeChild())
    records = ResultsStore.latest(tmp_path).records()
    assert {r.settings["side"]["side"] for r in records} == {"base", "head"} and len(records) == 2
    assert len({r.case_id for r in records}) == 2  # the sides never share a case id
    for r in records:
        assert r.status == "ok" and r.settings["rounds"] == 8 and r.settings["repetitions"] == 16
        assert len(r.state["rounds"]) == 8
    assert result.path == str(ResultsStore.latest(tmp_path).path)


def test_identical_sides_pass(tmp_path):
    result = gate(tmp_path, FakeChild(noise=0.005), pairs=12, max_pairs=12)
    assert result.cases[0].status == "pass" and result.exit_code() == 0


def test_undecided_cases_continue_to_later_looks_and_decided_ones_stop(tmp_path):
    cfg = config(tmp_path, shapes=["256x64", "512x64"])
    child = FakeChild(slowdown={256: 2.0, 512: 1.0}, noise=0.4)  # 256: obvious; 512: noise only
    # 10 pairs: the smallest one-sided p is 2^-10, below the first look's alpha/3 split by Holm over 2 tests
    result = gate(tmp_path, child, cfg=cfg, pairs=10, max_pairs=20)
    by = {c.name.split()[-1]: c for c in result.cases}
    assert by["256x64"].status == "regression" and [n for n, _ in by["256x64"].looks] == [10]
    assert len(by["512x64"].rounds) == 20 and [n for n, _ in by["512x64"].looks] == [10, 15, 20]
    assert [w for _, w in child.calls[20:]] == [["gemv 512x64"]] * 20  # only the undecided workload ran on
    assert result.settings["looks"] == [10, 15, 20]
    two = gate(tmp_path, FakeChild(slowdown={256: 2.0, 512: 1.0}, noise=0.4), cfg=cfg, pairs=10, max_pairs=20,
               looks=2)
    assert [n for n, _ in two.cases[1].looks] == [10, 20]


def test_a_side_that_fails_is_an_error_not_a_regression(tmp_path):
    result = gate(tmp_path, FakeChild(fail="head"))
    (case,) = result.cases
    assert case.status == "error" and "SIGSEGV" in case.error and result.exit_code() == 4
    records = {r.settings["side"]["side"]: r for r in ResultsStore.latest(tmp_path).records()}
    assert records["head"].status == "failed" and records["base"].status == "ok"  # base's samples are kept


def test_a_build_that_differs_where_the_axis_does_not_explain_it_stops_the_gate(tmp_path):
    with pytest.raises(BenchError, match="different gatefake builds"):
        gate(tmp_path, FakeChild(build={"head": "2"}), axis="opt:scale=1,2")
    # an env: axis may change the build (a library path), so there it is recorded, not refused
    result = gate(tmp_path, FakeChild(build={"head": "2"}))
    assert result.builds["base"]["gatefake"]["version"] == "1" and result.builds["head"]["gatefake"]["version"] == "2"


# --- what the gate prints and writes ------------------------------------------------------------------------------

def test_outputs(tmp_path):
    cfg = config(tmp_path, shapes=["256x64", "512x64"])
    result = gate(tmp_path, FakeChild(slowdown={256: 1.3}, fail=None, noise=0.02), cfg=cfg)
    md = gate_report.to_markdown(result)
    header = next(line for line in md.splitlines() if line.startswith("| status"))
    assert header.split("|")[1].strip() == "status" and "p (Holm)" in header and "detectable slowdown" in md
    assert any(line.startswith("| regression |") for line in md.splitlines())
    assert f"seed {result.seed}" in md
    doc = json.loads(json.dumps(gate_report.to_json(result)))
    assert doc["schema"] == "tritbench.gate/1" and doc["exit_code"] == 1 and doc["seed"] == 7
    assert {c["verdict"] for c in doc["cases"]} == {"regression", "pass"}
    case = next(c for c in doc["cases"] if c["verdict"] == "regression")
    assert case["metrics"]["cpu"]["ci"][1] < 1 and len(case["rounds"]) == case["pairs"] == 8
    assert set(doc["builds"]) == {"base", "head"} and doc["machine"]
    suite = ET.fromstring(gate_report.to_junit(result))
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    assert [tc.find("failure") is not None for tc in suite.iter("testcase")] == [True, False]
    (note,) = gate_report.annotations(result)
    assert note.startswith("::error title=Performance regression::") and "\n" not in note


# --- the trials: false alarms and power over windows of a recording -------------------------------------------

def test_clopper_pearson_matches_published_values():
    from tritbench.analysis.gate import clopper_pearson

    assert clopper_pearson(0, 20)[1] == pytest.approx(0.1684, abs=1e-4)  # the "rule of three" neighbourhood
    lo, hi = clopper_pearson(19, 20)
    assert (lo, hi) == (pytest.approx(0.7513, abs=1e-4), pytest.approx(0.9987, abs=1e-4))
    assert clopper_pearson(5, 10) == (pytest.approx(0.1871, abs=1e-4), pytest.approx(0.8129, abs=1e-4))


def recording(path, rounds: int, slowdown: float, noise: float = 0.02):
    rng = np.random.default_rng(4)
    with open(path, "w") as f:
        for r in range(rounds):
            drift = math.exp(rng.normal(0, 0.3))  # load shared by the round: pairing cancels it
            values = {}
            for case in ("llamacpp/tq2_0/t1 pp64", "llamacpp/tq2_0/t1 tg32"):
                v = {s: 100 * drift * (slowdown if s == "B" else 1) * math.exp(rng.normal(0, noise))
                     for s in ("A", "A'", "B")}
                values[case] = {s: {"cpu": x, "wall": x * 0.9} for s, x in v.items()}
            f.write(json.dumps({"round": r, "variant": 0, "order": ["A", "B", "A'"], "seconds": 6.0,
                                "values": values, "threads": 1, "state": {}}) + "\n")
    return path


def test_windows_of_a_recording_give_false_alarms_and_power(tmp_path):
    from tritbench.execute.trials import evaluate

    out = evaluate(recording(tmp_path / "rec.jsonl", 64, 0.8), [16])
    assert out["A/A"]["gates"] == out["injected"]["gates"] == 4
    assert out["A/A"]["regression"]["count"] == 0 and out["injected"]["regression"]["count"] == 4
    assert out["injected"]["regression"]["ci95"][0] == pytest.approx(0.3976, abs=1e-3)  # 4 of 4
    assert out["A/A"]["seconds_per_gate"] == pytest.approx(64.0)  # two of three children a round
    two = evaluate(tmp_path / "rec.jsonl", [12, 22, 32])
    assert two["A/A"]["gates"] == 2 and "windows of 32 consecutive rounds" in two["method"]
    # a gate that decides at its first look costs that look's rounds; a paused recorder's long round does not count
    lines = (tmp_path / "rec.jsonl").read_text().splitlines()
    lines[5] = lines[5].replace('"seconds": 6.0', '"seconds": 3600.0')
    (tmp_path / "rec.jsonl").write_text("\n".join(lines) + "\n")
    two = evaluate(tmp_path / "rec.jsonl", [12, 22, 32])
    assert two["injected"]["seconds_per_gate"] == pytest.approx(12 * 6.0 * 2 / 3)  # decided at 12 pairs
    assert 12 * 4 <= two["A/A"]["seconds_per_gate"] <= 32 * 4 and "median round (6.00 s)" in two["method"]


def test_resampled_gates_of_a_recording(tmp_path):
    """--resample: more gates than the recording has disjoint windows, reproducible by seed, and no confidence
    bounds (the gates share rounds)."""
    from tritbench.errors import ConfigError
    from tritbench.execute.trials import evaluate

    path = recording(tmp_path / "rec.jsonl", 40, 0.8)
    out = evaluate(path, [16, 24, 32], resample=30, block=4, seed=3)
    assert out["A/A"]["gates"] == out["injected"]["gates"] == 30  # 40 rounds hold one window of 32
    assert out["injected"]["regression"]["count"] == 30 and out["A/A"]["regression"]["count"] <= 1
    assert out["injected"]["regression"]["ci95"] == [None, None]
    assert out["method"].startswith("resampled: 30 gates of 32 rounds") and out["settings"]["block"] == 4
    assert evaluate(path, [16, 24, 32], resample=30, block=4, seed=3) == out
    with pytest.raises(ConfigError, match="takes 1 blocks of 41, and the recording holds only 40 rounds"):
        evaluate(path, [16, 24, 32], resample=5, block=41)


def test_a_resampled_gate_never_holds_a_round_twice(tmp_path, monkeypatch):
    """Each gate is made of distinct blocks: a block drawn twice would count its rounds twice in the test."""
    import tritbench.execute.trials as trials

    path = recording(tmp_path / "rec.jsonl", 35, 0.8)
    seen = []
    real = trials._gate

    def spy(window, *args):
        seen.append([rd["values"] for rd in window])
        return real(window, *args)

    monkeypatch.setattr(trials, "_gate", spy)
    trials.evaluate(path, [16, 32], resample=40, block=4, seed=1)  # 8 of 8 or 9 possible blocks per gate
    rounds = [rd["values"] for rd in trials._rounds(path)[0]]
    assert len(seen) == 80
    for window in seen:
        idx = [next(i for i, rd in enumerate(rounds) if rd == v) for v in window]
        assert len(window) == 32 and len(set(idx)) == 32
    with pytest.raises(trials.ConfigError, match="33 rounds takes 9 blocks of 4, and the recording holds only 35"):
        trials.evaluate(path, [16, 33], resample=5, block=4)


def test_gate_trials_evaluate_prints_the_table(tmp_path, monkeypatch, capsys):
    import tritbench.cli as cli

    path = recording(tmp_path / "rec.jsonl", 32, 0.8)
    argv = ["bench", "gate-trials", "evaluate", str(path), "--pairs", "16", "--max-pairs", "16"]
    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(SystemExit) as exc:
        cli.main()
    out = capsys.readouterr().out
    assert exc.value.code in (0, None) and "| 2 | injected | 2 (100.0 %) |" in out and "| 2 | A/A | 0 (0.0 %) |" in out
