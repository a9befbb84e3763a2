"""A run session: everything `bench run` does below the command line, as one library call.

From a validated config: expand the plan, synthesize missing preset files and read every model file's
metadata, open the results file (a new run, or the latest one to resume), take the idle-power baseline,
probe read bandwidth at each thread count, then run the cases. What a caller shows while that happens
comes through `RunEvents`; nothing here prints.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from tritbench import machine, plugin
from tritbench.errors import ConfigError
from tritbench.execute.runner import Runner, VariantRun
from tritbench.plan.cases import Variant, build_plan, case_id
from tritbench.plan.suite import RunConfig
from tritbench.results.records import Record, ResultsStore


class RunEvents:
    """What a session reports while it runs. The defaults show nothing: override what you show."""

    def step(self, message: str) -> AbstractContextManager[object]:
        """A step that takes a while (synthesis, idle baseline, bandwidth probe) runs inside this."""
        return nullcontext()

    def warning(self, message: str) -> None:
        """Something the user should know that does not stop the run."""

    def resumed(self, path: Path, skipped: int) -> None:
        """`--resume` found `path` and skips `skipped` finished cases."""

    def planned(self, unmeasured: list[Record]) -> None:
        """Before measuring: the failed record each case still to measure would get if it never ran."""

    def started(self, children: int) -> None:
        """The runner is about to start `children` child processes."""

    def child_done(self, label: str) -> None:
        """One child process (one variant, one round) ended."""


class RunInterrupted(Exception):
    """Ctrl-C or SIGINT during the run: every finished case is in `path`."""

    def __init__(self, path: Path):
        super().__init__(f"interrupted: finished cases are kept in {path}")
        self.path = path


@dataclass
class RunOutcome:
    """Where the records are, and what to show: this session's records, or the whole run when resuming,
    in plan order (variants as listed, workloads as listed)."""

    path: Path
    records: list[Record]
    failed: int  # cases of this session that did not measure


def run_session(cfg: RunConfig, *, resume: bool = False, events: RunEvents | None = None) -> RunOutcome:
    """Run `cfg` on this machine and write one record per case; see the module docstring."""
    events = events or RunEvents()
    variants = build_plan(cfg, machine.physical_cores())
    ResultsStore.check_writable(Path(cfg.out))  # before hours of measuring, not after
    infos = ensure_models(variants, events)
    check_context(variants, infos)
    store = ResultsStore.latest(Path(cfg.out)) if resume else ResultsStore.create(Path(cfg.out))
    with store.lock():  # one process measures into a run at a time: two --resume would run its cases twice
        return _run(cfg, variants, infos, store, resume, events)


def _run(cfg: RunConfig, variants: list[Variant], infos: dict[str, dict], store: ResultsStore, resume: bool,
         events: RunEvents) -> RunOutcome:
    problems: list[str] = []
    finished = {r.case_id for r in store.records(problems) if r.status == "ok"} if resume else set()
    for p in problems:
        events.warning(f"skipped: {p}")
    runs = []
    for v in variants:
        info = infos.get(str(v.model.path), {})
        pending = [w for w in v.workloads if case_id(v, w, info.get("sha256")) not in finished]
        runs.append(VariantRun(v, info, pending))
    skipped = sum(len(v.workloads) for v in variants) - sum(len(r.pending) for r in runs)
    if skipped:
        events.resumed(store.path, skipped)
    idle = _idle_baseline(cfg, events)
    bandwidth = _probe_bandwidth(variants, events)
    fingerprint = machine.fingerprint(libraries=plugin.libraries_of(cfg.backends))
    runner = Runner(cfg, runs, store, fingerprint, on_warning=events.warning, read_bandwidth=bandwidth,
                    probe=_reprobe if bandwidth else None, idle=idle,
                    on_child_done=lambda vr: events.child_done(vr.variant.label))
    events.planned(runner.unmeasured("not measured"))
    events.started(runner.child_count())
    try:
        records = runner.run()
    except KeyboardInterrupt:
        raise RunInterrupted(store.path) from None
    order = {
        case_id(vr.variant, w, vr.model_info.get("sha256")): i
        for i, (vr, w) in enumerate((vr, w) for vr in runs for w in vr.variant.workloads)
    }
    shown = store.records() if resume else list(records)
    shown.sort(key=lambda r: order.get(r.case_id, len(order)))
    return RunOutcome(store.path, shown, sum(r.status != "ok" for r in records))


def ensure_models(variants: list[Variant], events: RunEvents) -> dict[str, dict]:
    """Synthesize missing preset files (once per spec for all formats), then read every file's metadata."""
    from tritbench.models import read_model_info
    from tritbench.models.synth import synthesize_many

    missing: dict = {}
    files = [v for v in variants if v.model.path is not None]
    for v in files:
        if v.model.spec is not None and not v.model.exists():
            missing.setdefault(v.model.spec, set()).add(v.model.format)
    for spec, fmts in missing.items():
        with events.step(f"synthesizing {spec.name} ({', '.join(sorted(fmts))})..."):
            synthesize_many(spec, sorted(fmts))
    infos: dict[str, dict] = {}
    for v in files:
        path = str(v.model.path)
        if path not in infos:
            with events.step(f"reading {Path(path).name}..."):
                infos[path] = read_model_info(path).to_dict()
    return infos


def check_context(variants: list[Variant], infos: dict[str, dict]) -> None:
    """Refuse workloads longer than a model's context (depth + prompt + generated tokens): the child would
    allocate a KV cache for them and fail, or swap, after minutes of loading."""
    for v in variants:
        limit = infos.get(str(v.model.path), {}).get("n_ctx_train")
        if limit and v.n_ctx > limit:
            raise ConfigError(f"{v.model.name} ({v.model.format}): the workloads need {v.n_ctx} tokens of context "
                              f"(depth + prompt + generation) but the model's context length is {limit}")


def _idle_baseline(cfg: RunConfig, events: RunEvents):
    """The meter's idle reading before any case runs, or None (with a warning saying why)."""
    from tritbench.measure.energy import measure_idle, select_meter

    meter = select_meter(cfg.energy)
    if not meter.available:
        if cfg.energy != "none":
            events.warning(f"energy: {meter.reason}")
        return None
    if cfg.idle_s <= 0:
        return None
    with events.step(f"measuring idle power for {cfg.idle_s:g} s..."):
        return measure_idle(meter, cfg.idle_s)


def _reprobe(n_threads: int) -> dict:
    """Read bandwidth again between rounds (a second or two per thread count): the run's eta and roofline
    figures take the median of these and the first probe."""
    from tritbench.measure.bandwidth import read_bandwidth_in_child

    return read_bandwidth_in_child(n_threads)


def _probe_bandwidth(variants: list[Variant], events: RunEvents) -> dict[int, dict]:
    """Read bandwidth at each thread count the variants use, measured now, in this session: kernel
    cases report GB/s as a share of it, and the cost model's decode roofline divides it by bytes/token."""
    from tritbench.measure.bandwidth import read_bandwidth_in_child

    out: dict[int, dict] = {}
    if machine.emulator_command():  # an emulated memory system has no bandwidth worth a roofline, and it is slow
        events.warning("read bandwidth not probed: running under an emulator (no roofline, no share of bandwidth)")
        return out
    for t in sorted({v.n_threads for v in variants}):
        with events.step(f"probing read bandwidth with {t} thread(s)..."):
            out[t] = read_bandwidth_in_child(t)
    return out
