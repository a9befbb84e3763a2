"""`bench gate`'s schedule: base and head children back to back, in random order, round after round.

Every round runs, for each pair of twin variants (base and head differ only along the gate's axis), one
child of each side in an order drawn from a seeded RNG (the pairs' order is drawn too, and every order is
recorded). Each child loads its model, warms up and times `repetitions` repetitions; the median of each
workload is that round's value. After `pairs` rounds every case gets a verdict
(tritbench.analysis.gate.look); undecided ones continue to later looks, evenly spaced up to `max_pairs`. The
children's samples become ordinary result records (one per side and case) in the gate's results file.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
import subprocess
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from tritbench import machine, plugin
from tritbench.analysis.gate import METRICS, CaseResult, GateResult, gated_metrics, look, look_alphas, round_value
from tritbench.errors import BenchError, ConfigError
from tritbench.execute.runner import ChildOutcome, Runner, VariantRun
from tritbench.execute.session import RunEvents, RunInterrupted, check_context, ensure_models
from tritbench.plan.ab import GateConfig, Side, sides
from tritbench.plan.cases import Variant, build_plan, case_id
from tritbench.plan.suite import RunConfig
from tritbench.plan.workloads import Workload
from tritbench.results.records import ResultsStore


@dataclass
class GateCase:
    """One gated workload of a base variant and its head twin: the variants' runs, and the case's result."""

    workload: Workload
    base: VariantRun
    head: VariantRun
    result: CaseResult
    head_workload: Workload | None = None  # the head's, where it differs (gate-trials' larger K); else `workload`

    def side_workload(self, side: str) -> Workload:
        return (self.head_workload or self.workload) if side == "head" else self.workload


def case_name(v: Variant, w: Workload, without_model: bool) -> str:
    """A gated case's name: the base variant's label and the workload, without the model where the model is
    what the two sides differ in."""
    if without_model:
        return f"{v.backend}/{v.model.format}/t{v.n_threads}{'/' + v.cache if v.cache else ''} {w.name}"
    return f"{v.label} {w.name}"


def check_interpreter(python: str) -> None:
    """A gate side's interpreter must import tritbench's child: a bare python or a broken venv is bad input."""
    try:
        proc = subprocess.run([python, "-c", "import sys, tritbench.execute.child; print(sys.prefix)"],
                              capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"{python} cannot be run as a Python interpreter: {exc}") from None
    if proc.returncode != 0 or not proc.stdout.strip():  # /bin/true exits 0 too, and prints nothing
        last = (proc.stderr.strip().splitlines() or ["it printed nothing"])[-1]
        raise ConfigError(f"{python} cannot run tritbench's measuring child: {last}")


def build_fingerprint(outcome: ChildOutcome, python: str | None) -> dict:
    """What a child says of its build (backend versions, library commits and hashes) and which interpreter
    ran it: two sides that should run the same code must give the same."""
    info = dict(outcome.result.backend_info) if outcome.result else {}
    for key, value in list(info.items()):  # a library path says little: its contents do
        if key.endswith("_library") and isinstance(value, str) and Path(value).is_file():
            st = Path(value).stat()
            info[key + "_sha256"] = _file_digest(value, st.st_mtime_ns, st.st_size)
    return {"python": python or "the harness's own", **info}


@functools.lru_cache(maxsize=16)
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    """Hashed once per version of the file (every child reports the same library): a rebuild changes the key."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


class Gate:
    def __init__(self, gcfg: GateConfig, base: Side, head: Side, events: RunEvents, child=None,
                 kernel_k_differs: bool = False):
        self.gcfg, self.events = gcfg, events
        # gate-trials' injected slowdown for kernel cases: the head's K is larger, all else the same
        self.kernel_k_differs = kernel_k_differs
        self.sides = {"base": base, "head": head}
        self.rng = random.Random(gcfg.seed)
        self.builds: dict[str, dict[str, dict]] = {"base": {}, "head": {}}
        self.child = child  # a fake child in unit tests (tritbench.execute.runner.Runner's `child`)

    def plan(self) -> list[tuple[Variant, Variant]]:
        """Twin variants: the two sides' plans, position by position, must differ only along the axis."""
        cores = machine.physical_cores()
        plans = {}
        for name, side in self.sides.items():
            plans[name] = [replace(v, side=side.tag, python=side.python, env=side.env)
                           for v in build_plan(side.cfg, cores)]
        base, head = plans["base"], plans["head"]

        def key(w: Workload):
            return (w.kind, w.M, w.N) if self.kernel_k_differs and w.kind in plugin.KERNEL_KINDS else w.name

        def shape(vs: list[Variant]) -> list[tuple]:
            return [(v.backend, v.model.format, v.n_threads, v.cache, tuple(key(w) for w in v.workloads)) for v in vs]

        if shape(base) != shape(head):
            raise ConfigError(f"the two sides' plans differ beyond the axis: base runs "
                              f"{', '.join(v.label for v in base)}; head runs {', '.join(v.label for v in head)}")
        return list(zip(base, head, strict=True))

    def run(self, out: Path) -> GateResult:
        twins = self.plan()
        variants = [v for pair in twins for v in pair]
        infos = ensure_models(variants, self.events)
        check_context(variants, infos)
        cfg = self.sides["base"].cfg
        store = ResultsStore.create(out)
        runs = {id(v): VariantRun(v, infos.get(str(v.model.path), {}), list(v.workloads)) for v in variants}
        fingerprint = machine.fingerprint(libraries=plugin.libraries_of(cfg.backends))
        runner = Runner(cfg, list(runs.values()), store, fingerprint, on_warning=self.events.warning,
                        child=self.child)
        by_model = self.gcfg.axis.kind == "model"  # the model is the axis: case names leave it out
        cases = [GateCase(w, runs[id(b)], runs[id(h)],
                          CaseResult(case_name(b, w, by_model), gated_metrics(self.gcfg.metric, b.n_threads)), hw)
                 for b, h in twins for w, hw in zip(b.workloads, h.workloads, strict=True)]
        self._warn_if_blind(sum(len(c.result.gated) for c in cases))
        with store.lock():
            self.events.started(2 * len(twins) * self.gcfg.pairs)
            try:
                points = self.gcfg.look_points()
                alphas = look_alphas(self.gcfg.alpha, len(points))
                done = 0
                for n, alpha in zip(points, alphas, strict=True):
                    open_ = [c for c in cases if not c.result.decided]
                    if not open_:
                        break
                    if done:
                        self.events.warning(f"{len(open_)} case(s) undecided after {done} pairs: continuing to {n}")
                        self.events.started(2 * len({id(c.base) for c in open_}) * (n - done))
                    self._rounds(runner, cases, done, n)
                    self._look(open_, alpha)
                    done = n
            except KeyboardInterrupt:
                self._write(runner, cases, "interrupted")
                raise RunInterrupted(store.path) from None
            except BenchError:
                self._write(runner, cases, "the gate stopped")
                raise
            self._write(runner, cases, None)
        g = self.gcfg
        settings = {"threshold": g.threshold, "alpha": g.alpha, "min_effect": g.min_effect, "pairs": g.pairs,
                    "max_pairs": g.max_pairs, "looks": g.look_points(), "metric": g.metric,
                    "inconclusive": g.inconclusive, "repetitions_per_child": cfg.repetitions, "warmups": cfg.warmups}
        return GateResult({**asdict(g.axis), "label": g.axis.label}, settings, g.seed, [c.result for c in cases],
                          self.builds, fingerprint, str(store.path))

    def _warn_if_blind(self, tests: int) -> None:
        """The exact signed-rank test cannot go below p = 2^-pairs: with too few pairs for the look's alpha
        over Holm's `tests`, no regression can be found however large; say so before minutes are spent."""
        alpha = look_alphas(self.gcfg.alpha, len(self.gcfg.look_points()))[0]
        need = math.ceil(math.log2(tests / alpha))
        if self.gcfg.pairs < need:
            self.events.warning(f"{self.gcfg.pairs} pairs cannot show a regression at the first look ({tests} gated "
                                f"test(s), alpha {alpha:g} there): the smallest possible p is 2^-{self.gcfg.pairs}; "
                                f"use --pairs {need} or more")

    def _rounds(self, runner: Runner, cases: list[GateCase], first: int, last: int) -> None:
        pairs: dict[tuple[int, int], list[GateCase]] = {}
        for c in cases:
            pairs.setdefault((id(c.base), id(c.head)), []).append(c)
        for r in range(first, last):
            groups = [g for g in pairs.values() if any(not c.result.decided for c in g)]
            if not groups:
                return
            self.rng.shuffle(groups)
            for i, group in enumerate(groups):
                seed = runner.cfg.seed * 1_000_003 + r * 1009 + i  # both sides get the same token traces
                self._round(runner, [c for c in group if not c.result.decided], r, seed)

    def _round(self, runner: Runner, cases: list[GateCase], r: int, seed: int) -> None:
        """One child per side, in a random order, on the same token traces (`seed`)."""
        order = ["base", "head"] if self.rng.random() < 0.5 else ["head", "base"]
        values: dict[str, dict[str, dict]] = {}
        for side in order:
            vr = cases[0].base if side == "base" else cases[0].head
            workloads = [c.side_workload(side) for c in cases]
            outcome = runner.run_round(vr, r, runner.cfg.repetitions, seed, workloads)
            self.events.child_done(f"{vr.variant.label} ({side})")
            if outcome.result and outcome.result.backend_info:
                self._check_build(side, vr.variant, build_fingerprint(outcome, vr.variant.python))
            for c in cases:
                w = c.side_workload(side)
                entry = outcome.result.workloads.get(w.name) if outcome.result else None
                if w.name in vr.written and c.result.error is None:  # the runner wrote its failed record
                    c.result.error = f"{side}: {_failure(runner, vr, w) or outcome.error}"
                elif entry is not None and entry.reps:
                    values.setdefault(c.result.name, {})[side] = round_value(w, entry.reps)
        for c in cases:
            got = values.get(c.result.name, {})
            if c.result.error is None and len(got) == 2:
                c.result.rounds.append({"round": r, "order": order, **got})

    def _check_build(self, side: str, v: Variant, fp: dict) -> None:
        """A side's build must not change during the gate, and it must differ from the other side's only
        where the axis explains it (a model or option axis runs the same build on both sides)."""
        seen = self.builds[side].setdefault(v.backend, fp)
        if seen != fp:
            raise BenchError(f"the {side} side's {v.backend} build changed during the gate: {_diff(seen, fp)}")
        other = self.builds["head" if side == "base" else "base"].get(v.backend)
        if self.gcfg.axis.kind in ("model", "opt") and other is not None and other != fp:
            raise BenchError(f"base and head run different {v.backend} builds though only the "
                             f"{self.gcfg.axis.kind} should differ: {_diff(other, fp)}")

    def _look(self, cases: list[GateCase], alpha: float) -> None:
        live = [c.result for c in cases if c.result.error is None]
        data = {c.name: {m: c.series(m) for m in METRICS} for c in live}
        decisions = look(data, {c.name: c.gated for c in live}, alpha, self.gcfg.threshold, self.gcfg.min_effect)
        for c in live:
            c.looks.append((len(c.rounds), decisions[c.name]))

    def _write(self, runner: Runner, cases: list[GateCase], stopped: str | None) -> None:
        """Records for every side and case: the samples measured, or why there are none."""
        runs: dict[int, VariantRun] = {}
        for c in cases:
            runs.setdefault(id(c.base), c.base)
            runs.setdefault(id(c.head), c.head)
        for vr in runs.values():
            for w in vr.open_workloads():
                if not vr.reps.get(w.name):
                    runner.write_failed(vr, w, f"{stopped}: not measured" if stopped else
                                         "not measured: the other side failed")
            if vr.open_workloads():
                runner.finish(vr)


def _failure(runner: Runner, vr: VariantRun, w: Workload) -> str | None:
    """The error of the failed record the runner just wrote for this variant and workload."""
    cid = case_id(vr.variant, w, vr.model_info.get("sha256"))
    return next((rec.error for rec in reversed(runner.records) if rec.case_id == cid and rec.status != "ok"), None)


def _diff(a: dict, b: dict) -> str:
    keys = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return "; ".join(f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in keys[:3]) or "no field differs"


def run_gate(gcfg: GateConfig, cfg: RunConfig, events: RunEvents | None = None, child=None,
             injected: RunConfig | None = None) -> GateResult:
    """Validate, prepare both sides (ref: build each revision; python: check each interpreter), then gate.
    `injected` (gate-trials, a model axis): the head side's plan, its kernel shapes' K larger than the base's."""
    events = events or RunEvents()
    gcfg.validate()
    emulated = machine.this_emulation()
    if emulated:  # an emulator's timings say nothing of any core's speed: no verdict may rest on them
        raise ConfigError(f"bench gate refuses to run under an emulator ({emulated['emulator']}"
                          f"{' -cpu ' + emulated['cpu'] if emulated['cpu'] else ''}): its timings are not "
                          "hardware speed; gate on real hardware")
    ResultsStore.check_writable(Path(cfg.out))
    base, head = sides(gcfg.axis, cfg)
    if injected is not None:
        head = replace(head, cfg=injected)
    if gcfg.axis.kind == "ref":
        from tritbench.execute.refs import commit_of, prepare_ref

        commits = [commit_of(Path(gcfg.repo), side.value) for side in (base, head)]
        if commits[0] == commits[1]:
            raise ConfigError(f"--ab ref: '{base.value}' and '{head.value}' are the same commit {commits[0][:12]}")
        for side in (base, head):
            with events.step(f"preparing {side.name} side: revision {side.value}..."):
                side.python = prepare_ref(Path(gcfg.repo), side.value)
    if gcfg.axis.kind in ("ref", "python"):
        for side in (base, head):
            check_interpreter(side.python)
    return Gate(gcfg, base, head, events, child, kernel_k_differs=injected is not None).run(Path(cfg.out))
