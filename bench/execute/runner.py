"""Run a plan: a child process per variant and round, variants interleaved, records written as cases end.

Rounds: the repetitions of every case are split over rounds; each round runs every variant once,
in an order rotated from round to round, so slow drift on a shared machine (another job, thermal
state) spreads over all variants instead of landing on one. Each child loads the model, runs the
warmups, then this round's repetitions.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tritbench import machine, plugin
from tritbench.analysis.metrics import kernel_metrics, llm_metrics
from tritbench.execute.job import ERROR_TAG, PARENT_ENV, ChildResult, GenerationJob, Job, KernelJob
from tritbench.execute.limits import memory_cgroup, remove_cgroup, wrap
from tritbench.measure.bandwidth import last_level_cache_bytes
from tritbench.measure.memory import merge_peaks
from tritbench.models import DERIVED_FORMATS
from tritbench.plan.cases import KernelVariant, Variant, case_id, reps_per_round, variant_id
from tritbench.plan.suite import RunConfig
from tritbench.plan.workloads import Workload
from tritbench.results.journal import Journal
from tritbench.results.records import Record, ResultsStore

# Cold kernel runs cycle through weight copies spanning this many last-level caches (at least the floor).
COLD_LLC_MULTIPLE = 4
COLD_FLOOR_BYTES = 64 << 20
# A kernel repetition repeats the call until it lasts this long (one call can take microseconds).
KERNEL_MIN_REP_S = 0.2
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# A child's job folder: tritbench-job-<runner pid>-<random>, so that folders of killed runners can be found.
JOB_DIR_PREFIX = "tritbench-job-"


def cold_bytes() -> int:
    return max(COLD_FLOOR_BYTES, COLD_LLC_MULTIPLE * (last_level_cache_bytes() or 0))


def remove_orphaned_job_folders(root: Path | None = None) -> list[Path]:
    """Remove the job folders of runners that no longer run (a runner killed by SIGKILL cannot clean up)."""
    import psutil

    removed = []
    for folder in Path(root or tempfile.gettempdir()).glob(f"{JOB_DIR_PREFIX}*-*"):
        pid = folder.name.removeprefix(JOB_DIR_PREFIX).partition("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not psutil.pid_exists(int(pid)) and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


@dataclass
class ChildOutcome:
    result: ChildResult | None
    error: str | None  # None: the child finished normally
    cgroup: str | None = None  # under a profile: whether a memory cgroup was applied, or why not


def describe_failure(returncode: int | None, log: str) -> str:
    """One line saying how a child ended and the most telling line of what it printed."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    tagged = [ln[len(ERROR_TAG) :].strip() for ln in lines if ln.startswith(ERROR_TAG)]
    # the first telling line: what a backtrace prints after an assertion explains less than the assertion
    asserts = [ln for ln in lines if "GGML_ASSERT" in ln or "Assertion" in ln]
    telling = [ln for ln in lines if any(k in ln for k in ("error", "Error", "failed", "abort"))]
    detail = (tagged[-1:] or asserts[:1] or telling[:1] or lines[-1:] or [""])[0][:300]
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


def run_child(job: Job, timeout: float, limits: dict | None = None, python: str | None = None,
              env: dict[str, str] | None = None) -> ChildOutcome:
    """Run tritbench.execute.child on `job` in its own session (Ctrl-C reaches us, and we stop it).

    Thread pools that read the environment (OpenMP, BLAS) get the case's thread count; an edge
    profile's `limits` pin the child's CPUs and cap its memory. `python` runs the child in another
    environment (a gate side's own build) and `env` adds variables (a gate's env: axis)."""
    env = {**os.environ, **(env or {}), **{k: str(job.n_threads) for k in THREAD_ENV}, PARENT_ENV: str(os.getpid())}
    if limits is None:
        return _run_child(job, timeout, env, None, python)
    cgroup, status = None, "not needed: no memory cap"
    if limits.get("memory_bytes"):
        cgroup, status = memory_cgroup(f"tritbench-{os.getpid()}")
    try:
        outcome = _run_child(job, timeout, env, lambda cmd: wrap(cmd, limits, cgroup), python)
    finally:
        remove_cgroup(cgroup)
    outcome.cgroup = status
    return outcome


def _run_child(job: Job, timeout: float, env: dict, limit: Callable[[list[str]], list[str]] | None,
               python: str | None) -> ChildOutcome:
    with tempfile.TemporaryDirectory(prefix=f"{JOB_DIR_PREFIX}{os.getpid()}-") as tmp:
        job_path, result_path, log_path = Path(tmp, "job.json"), Path(tmp, "result.json"), Path(tmp, "log.txt")
        job.result_path = str(result_path)
        job_path.write_text(job.to_json())
        with open(log_path, "wb") as log:
            # under an emulator the child starts through it: an emulated process cannot exec its own binary
            cmd = [*machine.emulator_command(), python or sys.executable, "-m", "tritbench.execute.child",
                   str(job_path)]
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
        result = ChildResult.read(result_path)
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
    layers: dict[str, dict] = field(default_factory=dict)  # per kernel workload: weight_bytes, copies, settings
    runs: dict[str, list[dict]] = field(default_factory=dict)  # per workload: a self-timed backend's runs
    memory: dict[str, dict] = field(default_factory=dict)  # per workload: phase -> peak snapshot, over children
    written: set[str] = field(default_factory=set)
    rounds_done: int = 0  # rounds taken from the journal of a killed run: they are not measured again
    rounds_of: dict[str, int] = field(default_factory=dict)  # per workload: rounds that measured it

    @property
    def key(self) -> str:
        return variant_id(self.variant, self.model_info.get("sha256"))

    def open_workloads(self) -> list[Workload]:
        return [w for w in self.pending if w.name not in self.written]


def make_job(v: Variant, workloads: list[Workload], cfg: RunConfig, reps: int, seed: int) -> Job:
    """The job of one child: this round's repetitions of the variant's open workloads."""
    if isinstance(v, KernelVariant):
        # the same weights in every round and format: seeded by the run's seed only
        return KernelJob(v.backend, v.n_threads, v.options, workloads, cfg.warmups, reps, cfg.seed, cfg.energy,
                         format=v.model.format, min_rep_s=KERNEL_MIN_REP_S,
                         min_total_bytes=cold_bytes() if v.cache == "cold" else 0)
    return GenerationJob(v.backend, v.n_threads, v.options, workloads, cfg.warmups, reps, seed, cfg.energy,
                         model_path=str(v.model.path), n_ctx=v.n_ctx,
                         made_format=v.model.format if v.model.format in DERIVED_FORMATS else "")


def decode_bytes(counted: dict, w: Workload) -> dict:
    """Bytes a decode step of `w` reads, from a backend's own count of what it loaded (`at_depth_0` and
    `kv_per_position` in settings.bytes_per_token): the KV read is the mean over the workload's decode steps
    (step i attends to depth + n_prompt + i + 1 positions)."""
    positions = w.depth + w.n_prompt + (w.n_gen + 1) / 2
    kv_read = counted["kv_per_position"] * positions
    return {**{k: v for k, v in counted.items() if k != "at_depth_0"}, "kv_read": kv_read,
            "total": counted["at_depth_0"] + kv_read,
            "basis": "counted from the loaded tensors; KV read: mean over the decode steps"}


def case_metrics(vr: VariantRun, w: Workload, bandwidth: dict | None, idle) -> dict:
    """A finished case's metrics from its samples (tritbench.analysis.metrics)."""
    reps = vr.reps.get(w.name, [])
    if isinstance(vr.variant, KernelVariant):
        return kernel_metrics(w, reps, vr.layers[w.name]["weight_bytes"], vr.children, bandwidth, idle)
    metrics = llm_metrics(w, reps, vr.children, idle, bandwidth)
    metrics["memory"] = {**vr.memory.get(w.name, {}), "model_file_bytes": vr.model_info.get("file_bytes")}
    counted = vr.settings.get("bytes_per_token")
    if counted and w.n_gen:
        metrics["bytes_per_token"] = decode_bytes(counted, w)
        if bandwidth:  # eta: the share of the probed read bandwidth the decode steps' bytes use
            gbps = metrics["bytes_per_token"]["total"] * metrics["gen_tokens_per_s"]["median"] / 1e9
            metrics["bandwidth_fraction"] = gbps / bandwidth["gbps"]
    peers = [run["process"] for run in vr.runs.get(w.name, []) if "process" in run]
    if peers:  # a self-timed backend ran the model in its own process: that process's memory, not the child's
        metrics["peak_rss_bytes"] = max(p["peak_rss_bytes"] for p in peers)
        metrics["rss_after_load_bytes"] = None
        metrics["memory"]["source"] = f"{peers[0]['source']}; the RSS after load is not known"
    return metrics


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
        child: Callable[[Job, float, dict | None], ChildOutcome] | None = None,
        probe: Callable[[int], dict] | None = None,
    ):
        self.cfg, self.runs, self.store, self.fingerprint = cfg, runs, store, fingerprint
        # read bandwidth by thread count: the probe before the run, then (with `probe`) one before each later
        # round, so a case's eta divides by what the machine read over the run, not at one moment of it
        self.probes: dict[int, list[dict]] = {t: [r] for t, r in (read_bandwidth or {}).items()}
        self.probe = probe
        self.idle = idle  # the idle-power reading taken before the run (tritbench.measure.energy), or None
        self.on_child_done, self.on_warning = on_child_done, on_warning
        self.child = child or run_child  # how a job runs: a child process, or a fake one in unit tests
        self.rounds = cfg.rounds or cfg.repetitions
        self.records: list[Record] = []
        self.formats = {vr.variant.backend: plugin.load(vr.variant.backend).formats for vr in runs}
        self.journal = Journal(store.path.with_suffix(".journal"))
        self.per_round = reps_per_round(cfg.repetitions, self.rounds)

    def read_bandwidth(self, n_threads: int) -> dict | None:
        """The read bandwidth a case at `n_threads` is set against: the median of its probes, each listed."""
        probes = self.probes.get(n_threads)
        if not probes or len(probes) == 1:
            return probes[0] if probes else None
        gbps = [p["gbps"] for p in probes]
        return {**probes[0], "gbps": statistics.median(gbps), "probes_gbps": gbps,
                "basis": f"median of {len(probes)} probes: before the run and before each later round"}

    def child_count(self) -> int:
        return sum(self.rounds - vr.rounds_done for vr in self.runs if vr.open_workloads())

    def run(self) -> list[Record]:
        remove_orphaned_job_folders()
        self._replay()
        try:
            for vr in self.runs:  # every round of these was in the journal: only the records are missing
                if vr.open_workloads() and vr.rounds_done == self.rounds:
                    self.finish(vr)
            for r, n_reps in enumerate(self.per_round):
                active = [vr for vr in self.runs if vr.open_workloads()]
                if not active:
                    break
                if r and self.probe and any(r >= vr.rounds_done for vr in active):
                    for t in sorted({vr.variant.n_threads for vr in active} & self.probes.keys()):
                        self.probes[t].append(self.probe(t))
                shift = r % len(active)
                for i, vr in enumerate(active[shift:] + active[:shift]):
                    if r < vr.rounds_done:
                        continue
                    self.run_round(vr, r, n_reps, seed=self.cfg.seed * 1_000_003 + r * 1009 + i)
                    self.on_child_done(vr)
                    if r == len(self.per_round) - 1:
                        self.finish(vr)
        except KeyboardInterrupt:
            for vr in self.runs:
                for w in vr.open_workloads():
                    got = len(vr.reps.get(w.name, []))
                    self.write_failed(vr, w, f"interrupted after {got} of {self.cfg.repetitions} repetitions")
            raise
        return self.records

    def run_round(self, vr: VariantRun, r: int, n_reps: int, seed: int,
                  workloads: list[Workload] | None = None) -> ChildOutcome:
        """One child of `vr` for round `r`: `n_reps` repetitions of `workloads` (default: every open one)."""
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
        workloads = workloads if workloads is not None else vr.open_workloads()
        launch = {k: val for k, val in (("python", v.python), ("env", v.env)) if val}
        outcome = self.child(make_job(v, workloads, self.cfg, n_reps, seed), self.cfg.timeout, v.limits, **launch)
        state["cgroup"] = outcome.cgroup
        if outcome.error and v.limits:
            cap = v.limits.get("memory_bytes")
            outcome.error += (f" (under profile {v.limits['name']}: {len(v.limits['cpus'])} CPUs"
                              + (f", memory cap {cap / (1 << 30):.2f} GiB)" if cap else ")"))
        self.journal.append({"variant": vr.key, "round": r, "reps": n_reps, "state": state, "error": outcome.error,
                             "result": asdict(outcome.result) if outcome.result else None,
                             "plan": {"repetitions": self.cfg.repetitions, "rounds": self.rounds}})
        self._absorb(vr, outcome, workloads, n_reps)
        return outcome

    def _replay(self) -> None:
        """Take the rounds a killed run measured from its journal: per variant, its rounds in order, as long as
        every workload still to measure finished in them (a failed workload is measured again from round 0)."""
        plan = {"repetitions": self.cfg.repetitions, "rounds": self.rounds}
        by_variant: dict[str, list[dict]] = {}
        for e in self.journal.entries():
            if e.get("plan") == plan and isinstance(e.get("result"), dict):
                by_variant.setdefault(e.get("variant"), []).append(e)
        for vr in self.runs:
            pending = vr.open_workloads()
            for r, e in enumerate(by_variant.get(vr.key, []) if pending else []):
                result = ChildResult.from_dict(e["result"])
                done = result.workloads
                if e.get("round") != r or e.get("reps") != self.per_round[r] or not all(
                        w.name in done and len(done[w.name].reps) == e["reps"] and not done[w.name].error
                        for w in pending):
                    break
                vr.states.append(e.get("state") or {"round": r})
                self._absorb(vr, ChildOutcome(result, None), pending, e["reps"])
                vr.rounds_done = r + 1
            if vr.rounds_done:
                self.on_warning(f"{vr.variant.label}: {vr.rounds_done} round(s) taken from the journal of the "
                                "interrupted run")

    def _absorb(self, vr: VariantRun, outcome: ChildOutcome, workloads: list[Workload], n_reps: int) -> None:
        """What one child measured, added to its variant; workloads it did not finish get a failed record."""
        result = outcome.result or ChildResult()
        vr.backend_info = result.backend_info or vr.backend_info
        vr.settings = result.settings or vr.settings
        if result.rss_after_load_bytes is not None:
            vr.children.append({"load_s": result.load_s, "rss_after_load_bytes": result.rss_after_load_bytes,
                                "peak_rss_bytes": result.peak_rss_bytes})
        for w in workloads:
            entry = result.workloads.get(w.name)
            if entry:
                vr.reps.setdefault(w.name, []).extend(entry.reps)
                if entry.weight_bytes is not None:
                    vr.layers[w.name] = {"weight_bytes": entry.weight_bytes, "copies": entry.copies,
                                         "settings": entry.settings or {}}
                elif entry.settings:  # a self-timed backend's run: its command line and build, per round
                    vr.runs.setdefault(w.name, []).append(entry.settings)
                phases = {"load": result.memory.get("load"), **entry.memory}
                merged = vr.memory.setdefault(w.name, {"per_phase_peaks": result.memory.get("per_phase_peaks"),
                                                       "mmap": result.memory.get("mmap")})
                for phase, snap in phases.items():
                    if snap:
                        merged[phase] = merge_peaks(merged.get(phase), snap)
            complete = entry is not None and len(entry.reps) == n_reps and not entry.error
            if complete:
                vr.rounds_of[w.name] = vr.rounds_of.get(w.name, 0) + 1
            if entry and entry.error:
                self.write_failed(vr, w, entry.error)
            elif not complete and outcome.error:
                self.write_failed(vr, w, outcome.error)
            elif not complete:
                self.write_failed(vr, w, "child ended without measuring this workload")

    def finish(self, vr: VariantRun) -> None:
        """Write the record of every workload of `vr` still open: all its rounds are done."""
        cold = cold_bytes() if vr.variant.cache == "cold" else 0  # reads sysfs: once per variant
        for w in vr.open_workloads():
            metrics = case_metrics(vr, w, self.read_bandwidth(vr.variant.n_threads), self.idle)
            warnings = list(vr.warnings)
            layer = vr.layers.get(w.name)
            if layer and layer["copies"] * layer["weight_bytes"] < cold:
                span = layer["copies"] * layer["weight_bytes"] / (1 << 20)
                warnings.append(f"cold: {layer['copies']} weight copies span only {span:.1f} MiB, less than "
                                f"{cold >> 20} MiB: weights may partly stay in cache")
            if metrics["tokens_per_s"]["unstable"]:
                warnings.append("unstable: tokens/s IQR above 5 % of the median or an outlier repetition")
            self._write(vr, w, "ok", None, metrics, warnings)

    def write_failed(self, vr: VariantRun, w: Workload, error: str) -> None:
        self._write(vr, w, "failed", error, {"energy": {"source": "unavailable:case failed"}}, list(vr.warnings))

    def unmeasured(self, error: str) -> list[Record]:
        """The failed record every case still to measure would get, written nowhere: a remote run's controller
        keeps them, to say which cases a host it lost never finished."""
        return [self._record(vr, w, "failed", error, {"energy": {"source": "unavailable:case failed"}},
                             list(vr.warnings)) for vr in self.runs for w in vr.open_workloads()]

    def _write(self, vr: VariantRun, w: Workload, status: str, error: str | None, metrics: dict, warnings) -> None:
        rec = self._record(vr, w, status, error, metrics, warnings)
        self.store.append(rec)
        self.records.append(rec)
        vr.written.add(w.name)

    def _record(self, vr: VariantRun, w: Workload, status: str, error: str | None, metrics: dict,
                warnings) -> Record:
        v = vr.variant
        layer = vr.layers.get(w.name, {})
        settings = {
            **vr.settings,
            **layer.get("settings", {}),
            "n_threads": layer.get("settings", vr.settings).get("n_threads", v.n_threads),
            "requested": {"n_threads": v.n_threads, **v.options},
            "warmups": self.cfg.warmups,
            # as measured (a gate stops a decided case early); as planned for a case that failed
            "repetitions": len(vr.reps.get(w.name, [])) if status == "ok" else self.cfg.repetitions,
            "rounds": vr.rounds_of.get(w.name, 0) if status == "ok" else self.rounds,
        }
        if vr.runs.get(w.name):
            settings["runs"] = vr.runs[w.name]
        if v.side:
            settings["side"] = v.side
        if v.limits:
            settings["profile"] = {**v.limits, "cgroup": vr.states[-1].get("cgroup") if vr.states else None}
        if v.cache:
            settings.update(cache=v.cache, weight_copies=layer.get("copies"))
        model = v.record_model(vr.model_info, w, layer)
        made = vr.settings.get("model_file")
        if made:  # the backend ran a file it made from the planned one (a peer's quantizer): that file's facts
            source = {k: model.pop(k, None) for k in ("path", "file_bytes", "sha256", "bits_per_weight",
                                                       "tensor_types", "embd_type", "output_type")}
            model.update(path=made["path"], file_bytes=made["bytes"], made_from=source)
        facts = self.formats[v.backend].get(v.model.format)
        if facts is not None:  # what the backend declares of this format, so reports need not know it
            model.update(ternary=facts.ternary, baseline=facts.baseline)
        first = vr.states[0] if vr.states else {}
        state = {
            "loadavg_before": first.get("loadavg"),
            "idle_cores_before": min((s["idle_cores"] for s in vr.states), default=None),
            "rounds": vr.states,
        }
        return Record(
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
