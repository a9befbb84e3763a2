"""The Runner alone, with a fake child in place of a process: scheduling, bookkeeping and records, in
milliseconds. (tests/test_runner.py runs real children.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from tritbench.execute import runner as runner_mod
from tritbench.execute.job import ChildResult, GenerationJob, KernelJob, WorkloadResult
from tritbench.execute.runner import ChildOutcome, Runner, VariantRun
from tritbench.execute.session import RunEvents, run_session
from tritbench.models import ModelVariant
from tritbench.plan.cases import KernelVariant, KernelWeights, Variant
from tritbench.plan.suite import make_config
from tritbench.plan.workloads import Workload
from tritbench.results.records import ResultsStore

PP, TG = Workload("pp", 8, 0, 0), Workload("tg", 0, 4, 0)
GEMV = Workload("gemv", M=1, K=64, N=32)


@pytest.fixture(autouse=True)
def quiet_machine(monkeypatch):
    """machine.state() samples the CPUs for 0.25 s; a fixed idle state keeps these tests instant."""
    monkeypatch.setattr(runner_mod.machine, "state", lambda: {"idle_cores": 8.0, "loadavg": [0.0, 0.0, 0.0]})


def gen_rep(step: float = 0.01) -> dict:
    return {"prefill_s": step * 8, "decode_s": [step] * 4, "cpu_s": step, "counters": {}}


class FakeChild:
    """Answers every job as a child would, and remembers the jobs in the order they came."""

    def __init__(self, fail: dict[str, str] | None = None, error: str | None = None,
                 interrupt_at: int | None = None):
        self.jobs: list = []
        self.fail = fail or {}  # workload name -> the error the backend reports for it
        self.error, self.interrupt_at = error, interrupt_at

    def __call__(self, job, timeout, limits) -> ChildOutcome:
        self.jobs.append(job)
        if self.interrupt_at is not None and len(self.jobs) > self.interrupt_at:
            raise KeyboardInterrupt
        result = ChildResult(backend_info={"version": "fake"}, settings={"n_threads": job.n_threads},
                             load_s=0.1, rss_after_load_bytes=10 << 20, peak_rss_bytes=12 << 20,
                             memory={"load": {"peak_rss_bytes": 11 << 20}, "per_phase_peaks": True, "mmap": True})
        for w in job.workloads:
            if isinstance(job, KernelJob):
                reps = [{"calls": 10, "latency_s": 1e-4, "cpu_s": 1e-4, "thread_cpu_s": 1e-4}] * job.reps
                result.workloads[w.name] = WorkloadResult(reps, weight_bytes=64 * 32 // 4, copies=2,
                                                          settings={"n_threads": job.n_threads})
            else:
                result.workloads[w.name] = WorkloadResult([gen_rep()] * job.reps, error=self.fail.get(w.name))
        return ChildOutcome(result, self.error)


def gen_variant(fmt: str) -> Variant:
    return Variant("llamacpp", ModelVariant("tiny", fmt, Path(f"/models/tiny-{fmt}.gguf")), 1,
                   {"n_batch": 2048}, [PP, TG])


def make_runner(tmp_path, runs, child, **cfg) -> Runner:
    config = make_config({}, {"repetitions": 3, "warmups": 0, "energy": "none", **cfg})
    return Runner(config, runs, ResultsStore.create(tmp_path), {"id": "m"}, child=child)


def test_rounds_interleave_variants_and_records_come_at_the_last_round(tmp_path):
    child = FakeChild()
    runs = [VariantRun(gen_variant(f), {"sha256": f}, [PP, TG]) for f in ("f16", "tq2_0")]
    records = make_runner(tmp_path, runs, child).run()
    # 3 repetitions in 3 rounds: 6 children, one repetition each, the order rotated every round
    assert [j.reps for j in child.jobs] == [1] * 6
    assert [Path(j.model_path).stem for j in child.jobs] == ["tiny-f16", "tiny-tq2_0", "tiny-tq2_0", "tiny-f16",
                                                             "tiny-f16", "tiny-tq2_0"]
    assert all(isinstance(j, GenerationJob) and j.workloads == [PP, TG] for j in child.jobs)
    assert len({j.seed for j in child.jobs}) == 6  # a fresh token trace per child
    assert len(records) == 4 and {r.status for r in records} == {"ok"}
    for r in records:
        assert len(r.metrics["tokens_per_s"]["samples"]) == 3
        assert r.settings["rounds"] == 3 and r.settings["requested"] == {"n_threads": 1, "n_batch": 2048}
        assert r.metrics["memory"]["mmap"] is True and r.metrics["memory"]["load"]["peak_rss_bytes"] == 11 << 20
    facts = {r.model["format"]: (r.model["ternary"], r.model["baseline"]) for r in records}
    assert facts == {"f16": (False, None), "tq2_0": (True, "f16")}  # as the llama.cpp backend declares them
    assert ResultsStore.latest(tmp_path).records() == records


def test_a_workload_the_backend_rejects_fails_alone(tmp_path):
    child = FakeChild(fail={"tg4": "backend counted n_gen=9 but the workload asked for 4"})
    records = make_runner(tmp_path, [VariantRun(gen_variant("f16"), {}, [PP, TG])], child, rounds=1).run()
    status = {r.workload["name"]: (r.status, r.error) for r in records}
    assert status == {"pp8": ("ok", None), "tg4": ("failed", "backend counted n_gen=9 but the workload asked for 4")}
    assert len(child.jobs) == 1  # a failed workload is not measured again


def test_a_child_that_dies_fails_its_unfinished_workloads_with_its_error(tmp_path):
    child = FakeChild(error="child killed by SIGSEGV: oops")
    child_result = child.__call__

    def half(job, timeout, limits):  # the child wrote pp8's samples, then died during tg4
        out = child_result(job, timeout, limits)
        del out.result.workloads["tg4"]
        return out

    records = make_runner(tmp_path, [VariantRun(gen_variant("f16"), {}, [PP, TG])], half, rounds=1).run()
    status = {r.workload["name"]: (r.status, r.error) for r in records}
    assert status["tg4"] == ("failed", "child killed by SIGSEGV: oops")


def test_an_interrupt_fails_what_is_open_and_keeps_what_is_written(tmp_path):
    runs = [VariantRun(gen_variant(f), {}, [PP]) for f in ("f16", "tq2_0")]
    runner = make_runner(tmp_path, runs, FakeChild(interrupt_at=1), repetitions=2)  # Ctrl-C in the 2nd child
    with pytest.raises(KeyboardInterrupt):
        runner.run()
    errors = {r.model["format"]: r.error for r in runner.store.records()}
    assert errors == {"f16": "interrupted after 1 of 2 repetitions", "tq2_0": "interrupted after 0 of 2 repetitions"}


def test_kernel_variants_get_kernel_jobs_and_layer_records(tmp_path, monkeypatch):
    monkeypatch.setattr(runner_mod, "last_level_cache_bytes", lambda: 32 << 20)
    child = FakeChild()
    cold = KernelVariant("numpy", KernelWeights("fp32"), 1, {}, [GEMV], cache="cold")
    hot = KernelVariant("numpy", KernelWeights("fp32"), 1, {}, [GEMV], cache="hot")
    records = make_runner(tmp_path, [VariantRun(cold, {}, [GEMV]), VariantRun(hot, {}, [GEMV])], child,
                          rounds=1, seed=5).run()
    jobs = {j.min_total_bytes: j for j in child.jobs}
    assert set(jobs) == {0, 4 * (32 << 20)} and all(isinstance(j, KernelJob) for j in child.jobs)
    assert {j.seed for j in child.jobs} == {5}  # the same weights in every round and format
    for r in records:
        assert r.model["name"] == "64x32" and r.model["n_params"] == 64 * 32
        assert r.model["bits_per_weight"] == pytest.approx(8 * 512 / (64 * 32))
        assert r.settings["weight_copies"] == 2 and r.metrics["latency_ms"]["median"] == pytest.approx(0.1)
    cold_rec = next(r for r in records if r.settings["cache"] == "cold")
    assert any(w.startswith("cold: 2 weight copies span only") for w in cold_rec.warnings)


def test_read_bandwidth_is_probed_before_each_later_round_and_cases_take_the_median(tmp_path):
    """eta divides by the median of the probe before the run and one before each later round (a single probe
    moved 22-34 GB/s between runs on a shared VM), and the record lists every probe."""
    readings = iter([30.0, 20.0])
    asked = []

    def probe(n_threads):
        asked.append(n_threads)
        return {"gbps": next(readings), "n_threads": n_threads, "method": "fake"}

    config = make_config({}, {"repetitions": 3, "warmups": 0, "energy": "none"})
    runs = [VariantRun(KernelVariant("numpy", KernelWeights("fp32"), 1, {}, [GEMV], cache="hot"), {}, [GEMV])]
    (rec,) = Runner(config, runs, ResultsStore.create(tmp_path), {"id": "m"}, child=FakeChild(), probe=probe,
                    read_bandwidth={1: {"gbps": 10.0, "n_threads": 1, "method": "fake"}}).run()
    assert asked == [1, 1]  # before rounds 2 and 3
    bw = rec.metrics["read_bandwidth"]
    assert bw["gbps"] == 20.0 and bw["probes_gbps"] == [10.0, 30.0, 20.0] and bw["basis"].startswith("median of 3")
    assert rec.metrics["bandwidth_fraction"] == pytest.approx(rec.metrics["weight_gbps"]["median"] / 20.0)
    # no first probe (an emulator): no later ones either
    asked.clear()
    (rec,) = Runner(config, [VariantRun(runs[0].variant, {}, [GEMV])], ResultsStore.create(tmp_path),
                    {"id": "m"}, child=FakeChild(), probe=probe).run()
    assert asked == [] and "read_bandwidth" not in rec.metrics


def test_the_session_reports_through_its_events(tmp_path, monkeypatch):
    """run_session as a library call: kernel workloads (no model file), events instead of printing."""
    monkeypatch.setattr("tritbench.execute.session._probe_bandwidth", lambda variants, events: {})
    calls = []

    class Events(RunEvents):
        def started(self, children):
            calls.append(("started", children))

        def child_done(self, label):
            calls.append(("done", label))

        def warning(self, message):
            calls.append(("warning", message))

    monkeypatch.setattr(runner_mod, "run_child", FakeChild())
    cfg = make_config({}, {"backends": ["numpy"], "formats": ["fp32"], "kinds": ["gemv"], "shapes": ["64x32"],
                           "repetitions": 2, "threads": [1], "energy": "none", "out": str(tmp_path)})
    outcome = run_session(cfg, events=Events())
    assert calls[0] == ("started", 2) and calls[1:] == [("done", "numpy/ternary-matrix/fp32/t1/cold")] * 2
    assert outcome.failed == 0 and len(outcome.records) == 1 and outcome.path.parent == tmp_path
    assert outcome.records[0].workload["name"] == "gemv 64x32"


class Killed(BaseException):
    """A SIGKILL, as far as the runner can tell: no except clause of its own runs."""


def test_a_killed_run_resumes_from_the_rounds_its_journal_kept(tmp_path):
    warnings: list[str] = []

    def fresh_runs() -> list[VariantRun]:  # what the session builds on --resume: every case still open
        return [VariantRun(gen_variant(f), {"sha256": f}, [PP, TG]) for f in ("f16", "tq2_0")]

    first = FakeChild()
    first_child = first.__call__

    def killed_at_the_fourth(job, timeout, limits):
        if len(first.jobs) == 3:
            raise Killed
        return first_child(job, timeout, limits)

    runner = make_runner(tmp_path, fresh_runs(), killed_at_the_fourth)
    with pytest.raises(Killed):
        runner.run()
    assert runner.store.records() == []  # nothing reached the run file: every case was still open
    # the journal kept three children: f16 and tq2_0 of round 0, then tq2_0 of round 1 (the order rotates)
    kept = [(e["variant"], e["round"]) for e in runner.journal.entries()]
    assert [r for _, r in kept] == [0, 0, 1]

    second = FakeChild()
    resumed = Runner(runner.cfg, fresh_runs(), runner.store, {"id": "m"}, child=second, on_warning=warnings.append)
    records = resumed.run()
    # only what the journal lacks is measured: f16 rounds 1 and 2, tq2_0 round 2
    assert [(Path(j.model_path).stem, j.reps) for j in second.jobs] == [("tiny-f16", 1), ("tiny-f16", 1),
                                                                        ("tiny-tq2_0", 1)]
    assert len(records) == 4 and all(len(r.metrics["tokens_per_s"]["samples"]) == 3 for r in records)
    assert all([s["round"] for s in r.state["rounds"]] == [0, 1, 2] for r in records)
    assert sorted(warnings) == ["llamacpp/tiny/f16/t1: 1 round(s) taken from the journal of the interrupted run",
                                "llamacpp/tiny/tq2_0/t1: 2 round(s) taken from the journal of the interrupted run"]
