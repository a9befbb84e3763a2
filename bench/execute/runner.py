"""Run a plan: a child process per variant and round, variants interleaved, records written as cases end.

Rounds: the repetitions of every case are split over rounds; each round runs every variant once,
in an order rotated from round to round, so slow drift on a shared machine (another job, thermal
state) spreads over all variants instead of landing on one. Each child loads the model, runs the
warmups, then this round's repetitions.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tritbench import machine
from tritbench.analysis.metrics import kernel_metrics, llm_metrics
from tritbench.execute.limits import memory_cgroup, remove_cgroup, wrap
from tritbench.measure.bandwidth import last_level_cache_bytes
from tritbench.measure.memory import merge_peaks
from tritbench.plan.cases import Variant, case_id
from tritbench.plan.suite import RunConfig
from tritbench.plan.workloads import Workload
from tritbench.results.records import Record, ResultsStore

WORKER_ERROR_TAG = "tritbench-worker-error:"
# Cold kernel runs cycle through weight copies spanning this many last-level caches (at least the floor).
COLD_LLC_MULTIPLE = 4
COLD_FLOOR_BYTES = 64 << 20
# A kernel repetition repeats the call until it lasts this long (one call can take microseconds).
KERNEL_MIN_REP_S = 0.2
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def cold_bytes() -> int:
    return max(COLD_FLOOR_BYTES, COLD_LLC_MULTIPLE * (last_level_cache_bytes() or 0))


@dataclass
class ChildOutcome:
    result: dict | None
    error: str | None  # None: the child finished normally
    cgroup: str | None = None  # under a profile: whether a memory cgroup was applied, or why not


def describe_failure(returncode: int | None, log: str) -> str:
    """One line saying how a child ended and the most telling line of what it printed."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    tagged = [ln[len(WORKER_ERROR_TAG) :].strip() for ln in lines if ln.startswith(WORKER_ERROR_TAG)]
    telling = [ln for ln in lines if any(k in ln for k in ("GGML_ASSERT", "error", "Error", "failed", "abort"))]
    detail = (tagged or telling or lines or [""])[-1][:300]
    if returncode is None:
        how = "child did not finish"
    elif returncode < 0:
        try:
            how = f"child killed by {signal.Signals(-returncode).name}"
        except ValueError:
            how = f"child killed by signal {-returncode}"
    else:
        how = f"child exited with code {returncode}"
    return f"{how}: {detail}" if detail else how


def run_child(job: dict, timeout: float, limits: dict | None = None) -> ChildOutcome:
    """Run tritbench.execute.child on `job` in its own session (Ctrl-C reaches us, and we stop it).

    Thread pools that read the environment (OpenMP, BLAS) get the case's thread count; an edge
    profile's `limits` pin the child's CPUs and cap its memory."""
    env = {**os.environ, **{k: str(job["n_threads"]) for k in THREAD_ENV}}
    if limits is None:
        return _run_child(job, timeout, env, None)
    cgroup, status = None, "not needed: no memory cap"
    if limits.get("memory_bytes"):
        cgroup, status = memory_cgroup(f"tritbench-{os.getpid()}")
    try:
        outcome = _run_child(job, timeout, env, lambda cmd: wrap(cmd, limits, cgroup))
    finally:
        remove_cgroup(cgroup)
    outcome.cgroup = status
    return outcome


def _run_child(job: dict, timeout: float, env: dict, limit: Callable[[list[str]], list[str]] | None
               ) -> ChildOutcome:
    with tempfile.TemporaryDirectory(prefix="tritbench-") as tmp:
        job_path, result_path, log_path = Path(tmp, "job.json"), Path(tmp, "result.json"), Path(tmp, "log.txt")
        job_path.write_text(json.dumps({**job, "result_path": str(result_path)}))
        with open(log_path, "wb") as log:
            cmd = [sys.executable, "-m", "tritbench.execute.child", str(job_path)]
            proc = subprocess.Popen(
                limit(cmd) if limit else cmd,
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, env=env,
            )
            try:
                rc: int | None = proc.wait(timeout=timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                rc, timed_out = None, True
            except BaseException:
                proc.kill()
                proc.wait()
                raise
        result = json.loads(result_path.read_text()) if result_path.exists() else None
        if timed_out:
            return ChildOutcome(result, f"timed out after {timeout:g} s")
        if rc != 0:
            return ChildOutcome(result, describe_failure(rc, log_path.read_text(errors="replace")))
        return ChildOutcome(result, None)


@dataclass
class VariantRun:
    """What has been measured so far for one variant, across rounds."""

    variant: Variant
    model_info: dict
    pending: list[Workload]  # workloads still to measure (after --resume)
    reps: dict[str, list[dict]] = field(default_factory=dict)
    children: list[dict] = field(default_factory=list)
    states: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    backend_info: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    kernel: dict[str, dict] = field(default_factory=dict)  # per kernel test: weight_bytes, copies, settings
    memory: dict[str, dict] = field(default_factory=dict)  # per test: phase -> peak snapshot, over children
    written: set[str] = field(default_factory=set)

    def open_workloads(self) -> list[Workload]:
        return [w for w in self.pending if w.name not in self.written]


def reps_per_round(repetitions: int, rounds: int) -> list[int]:
    base, extra = divmod(repetitions, rounds)
    return [base + (1 if r < extra else 0) for r in range(rounds)]


class Runner:
    def __init__(
        self,
        cfg: RunConfig,
        runs: list[VariantRun],
        store: ResultsStore,
        fingerprint: dict,
        on_child_done: Callable[[VariantRun], None] = lambda vr: None,
        on_warning: Callable[[str], None] = lambda msg: None,
        read_bandwidth: dict[int, dict] | None = None,
        idle=None,
    ):
        self.cfg, self.runs, self.store, self.fingerprint = cfg, runs, store, fingerprint
        self.read_bandwidth = read_bandwidth or {}
        self.idle = idle  # the idle-power reading taken before the run (tritbench.measure.energy), or None
        self.on_child_done, self.on_warning = on_child_done, on_warning
        self.rounds = cfg.rounds or cfg.repetitions
        self.records: list[Record] = []

    def child_count(self) -> int:
        return sum(1 for vr in self.runs if vr.open_workloads()) * self.rounds

    def run(self) -> list[Record]:
        per_round = reps_per_round(self.cfg.repetitions, self.rounds)
        try:
            for r, n_reps in enumerate(per_round):
                active = [vr for vr in self.runs if vr.open_workloads()]
                if not active:
                    break
                shift = r % len(active)
                for i, vr in enumerate(active[shift:] + active[:shift]):
                    self._run_round(vr, r, n_reps, seed=self.cfg.seed * 1_000_003 + r * 1009 + i)
                    self.on_child_done(vr)
                    if r == len(per_round) - 1:
                        self._finish(vr)
        except KeyboardInterrupt:
            for vr in self.runs:
                for w in vr.open_workloads():
                    got = len(vr.reps.get(w.name, []))
                    self._write_failed(vr, w, f"interrupted after {got} of {self.cfg.repetitions} repetitions")
            raise
        return self.records

    def _run_round(self, vr: VariantRun, r: int, n_reps: int, seed: int) -> None:
        v = vr.variant
        state = machine.state()
        state["round"] = r
        vr.states.append(state)
        if v.n_threads > state["idle_cores"] + 0.5:
            msg = (
                f"{v.label}: {v.n_threads} threads but only {state['idle_cores']:.1f} idle cores before round "
                f"{r + 1}: timings may be inflated by other work"
            )
            vr.warnings.append(msg)
            self.on_warning(msg)
        workloads = vr.open_workloads()
        job = {
            "backend": v.backend,
            "model_path": str(v.model.path),
            "n_threads": v.n_threads,
            "options": v.options,
            "n_ctx": v.n_ctx,
            "workloads": [w.to_dict() for w in workloads],
            "warmups": self.cfg.warmups,
            "reps": n_reps,
            "seed": seed,
            "energy": self.cfg.energy,
        }
        if v.is_kernel:
            # the same weights in every round and format: seeded by the run's seed only
            job.update(format=v.model.format, seed=self.cfg.seed, min_rep_s=KERNEL_MIN_REP_S,
                       min_total_bytes=cold_bytes() if v.cache == "cold" else 0)
        outcome = run_child(job, self.cfg.timeout, v.limits)
        state["cgroup"] = outcome.cgroup
        if outcome.error and v.limits:
            cap = v.limits.get("memory_bytes")
            outcome.error += (f" (under profile {v.limits['name']}: {len(v.limits['cpus'])} CPUs"
                              + (f", memory cap {cap / (1 << 30):.2f} GiB)" if cap else ")"))
        result = outcome.result or {}
        vr.backend_info = result.get("backend_info") or vr.backend_info
        vr.settings = result.get("settings") or vr.settings
        if "rss_after_load_bytes" in result:
            keys = ("load_s", "rss_after_load_bytes", "peak_rss_bytes")
            vr.children.append({k: result[k] for k in keys if k in result})
        load_memory = result.get("memory", {})
        done = result.get("workloads", {})
        for w in workloads:
            entry = done.get(w.name)
            if entry:
                vr.reps.setdefault(w.name, []).extend(entry["reps"])
                if "weight_bytes" in entry:
                    vr.kernel[w.name] = {k: entry[k] for k in ("weight_bytes", "copies", "settings")}
                phases = {"load": load_memory.get("load"), **entry.get("memory", {})}
                merged = vr.memory.setdefault(w.name, {"per_phase_peaks": load_memory.get("per_phase_peaks")})
                for phase, snap in phases.items():
                    if snap:
                        merged[phase] = merge_peaks(merged.get(phase), snap)
            complete = entry is not None and len(entry["reps"]) == n_reps and not entry["error"]
            if entry and entry["error"]:
                self._write_failed(vr, w, entry["error"])
            elif not complete and outcome.error:
                self._write_failed(vr, w, outcome.error)
            elif not complete:
                self._write_failed(vr, w, "child ended without measuring this test")

    def _finish(self, vr: VariantRun) -> None:
        for w in vr.open_workloads():
            reps = vr.reps.get(w.name, [])
            if w.is_kernel:
                bw = self.read_bandwidth.get(vr.variant.n_threads)
                metrics = kernel_metrics(w, reps, vr.kernel[w.name]["weight_bytes"], vr.children, bw, self.idle)
            else:
                bw = self.read_bandwidth.get(vr.variant.n_threads)
                metrics = llm_metrics(w, reps, vr.children, self.idle, bw)
                metrics["memory"] = {**vr.memory.get(w.name, {}), "mmap": vr.settings.get("mmap"),
                                     "model_file_bytes": vr.model_info.get("file_bytes")}
            warnings = list(vr.warnings)
            k = vr.kernel.get(w.name)
            if k and vr.variant.cache == "cold" and k["copies"] * k["weight_bytes"] < cold_bytes():
                span = k["copies"] * k["weight_bytes"] / (1 << 20)
                warnings.append(f"cold: {k['copies']} weight copies span only {span:.1f} MiB, less than "
                                f"{cold_bytes() >> 20} MiB: weights may partly stay in cache")
            if metrics["tokens_per_s"]["unstable"]:
                warnings.append("unstable: tokens/s IQR above 5 % of the median or an outlier repetition")
            self._write(vr, w, "ok", None, metrics, warnings)

    def _write_failed(self, vr: VariantRun, w: Workload, error: str) -> None:
        self._write(vr, w, "failed", error, {"energy": {"source": "unavailable:case failed"}}, list(vr.warnings))

    def _write(self, vr: VariantRun, w: Workload, status: str, error: str | None, metrics: dict, warnings) -> None:
        v = vr.variant
        kernel = vr.kernel.get(w.name, {})
        settings = {
            **vr.settings,
            **kernel.get("settings", {}),
            "n_threads": kernel.get("settings", vr.settings).get("n_threads", v.n_threads),
            "requested": {"n_threads": v.n_threads, **v.options},
            "repetitions": self.cfg.repetitions,
            "warmups": self.cfg.warmups,
            "rounds": self.rounds,
        }
        model = {**vr.model_info, "name": v.model.name, "format": v.model.format}
        if v.limits:
            settings["profile"] = {**v.limits, "cgroup": vr.states[-1].get("cgroup") if vr.states else None}
        if v.is_kernel:
            settings.update(cache=v.cache, weight_copies=kernel.get("copies"))
            model.update(name=f"{w.K}x{w.N}", n_params=w.K * w.N)
            if kernel:
                nbytes = kernel["weight_bytes"]
                model.update(file_bytes=nbytes, bits_per_weight=nbytes * 8 / (w.K * w.N))
        first = vr.states[0] if vr.states else {}
        state = {
            "loadavg_before": first.get("loadavg"),
            "idle_cores_before": min((s["idle_cores"] for s in vr.states), default=None),
            "rounds": vr.states,
        }
        rec = Record(
            run_id=self.store.run_id,
            case_id=case_id(v, w, vr.model_info.get("sha256")),
            status=status,
            error=error,
            backend={"name": v.backend, **vr.backend_info},
            model=model,
            workload=w.to_dict(),
            settings=settings,
            metrics=metrics,
            machine=self.fingerprint,
            state=state,
            warnings=warnings,
        )
        self.store.append(rec)
        self.records.append(rec)
        vr.written.add(w.name)
