"""Proof that the gate works on this machine: how often it cries wolf, and how often it finds a real slowdown.

Two methods (the output says which figure comes from which):
- full gates (`full`): N A/A gates (an env: axis whose two values change nothing, so both sides run the same
  build and model file) and N gates with an injected slowdown (a model axis: BASE versus BASE with one more
  layer; kernel cases: K 5 % larger), each a complete `bench gate` with its own seed, under whatever load the
  machine has;
- a recording (`record`, then `evaluate`): one long session of rounds, each running A, A' (A again, as a
  separate variant) and B (the injected slowdown) in a random order, written round by round to a JSONL file;
  the gate's decision rule is then applied to disjoint windows of consecutive rounds, in time order: A' vs A
  is an A/A gate, B vs A an injected one. Cheaper per gate (a round serves both), and each window sees the
  load of its own stretch of time;
- resampling a recording (`evaluate --resample N`): N gates, each made of distinct blocks of consecutive rounds
  drawn at random. It estimates rates at window sizes a recording holds too few disjoint windows of,
  but its gates share rounds, so it gives no confidence bounds and is no substitute for independent gates.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import time
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

from tritbench import machine, plugin
from tritbench.analysis.gate import METRICS, clopper_pearson, gated_metrics, look, look_alphas, round_value
from tritbench.errors import ConfigError
from tritbench.execute.gate import case_name, run_gate
from tritbench.execute.refs import commit_of
from tritbench.execute.runner import Runner, VariantRun
from tritbench.execute.session import RunEvents, check_context, ensure_models
from tritbench.plan.ab import GateConfig, parse_axis
from tritbench.plan.cases import build_plan
from tritbench.plan.suite import RunConfig
from tritbench.plan.workloads import shapes_of
from tritbench.results.records import ResultsStore

TRIAL_ENV = "TRITBENCH_TRIAL"  # the A/A axis: a variable no backend reads
KERNEL_SLOWDOWN = 0.05  # kernel cases' injected slowdown: B's K is 5 % larger (the issue's figure)
KINDS = ("A/A", "injected")


def injected_config(cfg: RunConfig, head: str) -> RunConfig:
    """B's plan: the head model, and every kernel shape's K larger by KERNEL_SLOWDOWN (a GEMV's work grows with
    K, so about 5 % slower; the op pads K to its step, which the recording's measured ratio includes)."""
    shapes = [f"{round(k * (1 + KERNEL_SLOWDOWN))}x{n}" for k, n in shapes_of(cfg.shapes)]
    return replace(cfg, models=[head], shapes=shapes)


def record(cfg: RunConfig, base: str, head: str, rounds: int, path: Path, seed: int,
           events: RunEvents | None = None) -> Path:
    """Append `rounds` rounds of A, A' and B (models `base`, `base`, `head`) to the JSONL file `path`."""
    events = events or RunEvents()
    cores = machine.physical_cores()
    plans = {"A": build_plan(replace(cfg, models=[base]), cores), "B": build_plan(injected_config(cfg, head), cores)}
    sides = {
        "A": [replace(v, side={"side": "A"}, env={TRIAL_ENV: "a"}) for v in plans["A"]],
        "A'": [replace(v, side={"side": "A'"}, env={TRIAL_ENV: "b"}) for v in plans["A"]],
        "B": [replace(v, side={"side": "B"}) for v in plans["B"]],
    }
    variants = [v for vs in sides.values() for v in vs]
    infos = ensure_models(variants, events)
    check_context(variants, infos)
    runs = {s: [VariantRun(v, infos.get(str(v.model.path), {}), list(v.workloads)) for v in vs]
            for s, vs in sides.items()}
    folder = path.parent / (path.stem + "-records")  # the children's samples, as ordinary result records
    ResultsStore.check_writable(folder)
    store = ResultsStore.create(folder)
    runner = Runner(cfg, [vr for vs in runs.values() for vr in vs], store,
                    machine.fingerprint(libraries=plugin.libraries_of(cfg.backends)), on_warning=events.warning)
    rng = random.Random(seed)
    events.started(rounds * len(variants))
    with open(path, "a", encoding="utf-8") as out:
        for r in range(rounds):
            for i in range(len(sides["A"])):
                order = list(sides)
                rng.shuffle(order)
                t0, values = time.time(), {}
                for side in order:
                    vr = runs[side][i]
                    outcome = runner.run_round(vr, r, cfg.repetitions, cfg.seed * 1_000_003 + r * 1009 + i)
                    events.child_done(f"{vr.variant.label} ({side})")
                    # cases are named after A's variant and workloads: B's model, and its kernels' K, differ
                    for a_w, w in zip(sides["A"][i].workloads, vr.variant.workloads, strict=True):
                        entry = outcome.result.workloads.get(w.name) if outcome.result else None
                        if entry and entry.reps and not entry.error:
                            case = case_name(sides["A"][i], a_w, without_model=True)
                            values.setdefault(case, {})[side] = round_value(w, entry.reps)
                    vr.written.clear()  # a failed child does not end the recording: the next round tries again
                line = {"round": r, "variant": i, "order": order, "seconds": time.time() - t0, "values": values,
                        "threads": sides["A"][i].n_threads, "state": runs["A"][i].states[-1]}
                out.write(json.dumps(line) + "\n")
                out.flush()
    return path


def _rounds(path: Path) -> tuple[list[dict], list[str], int]:
    """A recording's rounds in order (a round's lines merged), its cases and its thread count."""
    lines = [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]
    by_round: dict[int, dict] = {}
    threads = 1
    for ln in lines:
        by_round.setdefault(ln["round"], {"values": {}, "seconds": 0.0})
        by_round[ln["round"]]["values"].update(ln["values"])
        by_round[ln["round"]]["seconds"] += ln["seconds"]
        threads = ln.get("threads", threads)
    rounds = [by_round[r] for r in sorted(by_round)]
    return rounds, sorted({c for rd in rounds for c in rd["values"]}), threads


def _gate(window: list[dict], head: str, cases: list[str], gated: tuple, points: list[int], alphas: list[float],
          threshold: float, min_effect: float) -> tuple[str, int]:
    """The gate's overall verdict on `window` (rounds in order) for `head` against A, with its looks at `points`
    pairs, and the rounds it used (up to the look where every case had decided)."""
    series = {}
    for c in cases:
        usable = [rd["values"][c] for rd in window if {"A", head} <= set(rd["values"].get(c, {}))]
        series[c] = {m: ([u["A"][m] for u in usable], [u[head][m] for u in usable]) for m in METRICS}
    decided: dict = {}
    open_, used = list(cases), 0
    for n, alpha in zip(points, alphas, strict=True):
        if not open_:
            break
        at = {c: {m: (b[:n], h[:n]) for m, (b, h) in series[c].items()} for c in open_}
        decided.update(look(at, {c: gated for c in open_}, alpha, threshold, min_effect))
        open_ = [c for c in open_ if decided[c].verdict == "inconclusive"]
        used = min(n, len(window))
    vs = [decided[c].verdict for c in cases]
    return next((v for v in ("regression", "inconclusive") if v in vs), "pass"), used


def evaluate(path: Path, points: list[int], alpha: float = 0.01, threshold: float = 0.05,
             min_effect: float = 0.01, metric: str = "auto", resample: int = 0, block: int = 8,
             seed: int = 0) -> dict:
    """The gate's decisions on disjoint windows of `points[-1]` consecutive rounds of a recording (looks at
    each of `points` pairs, the undecided going on to the next, as `bench gate` does), for A' vs A and B vs A.
    With `resample`, that many gates of `points[-1]` rounds made of distinct random blocks of `block` consecutive
    rounds."""
    rounds, cases, threads = _rounds(path)
    gated = gated_metrics(metric, threads)
    alphas = look_alphas(alpha, len(points))
    max_pairs = points[-1]
    if resample:
        need = -(-max_pairs // block)  # blocks per gate
        if len(rounds) < need * block:
            raise ConfigError(f"--resample: a gate of {max_pairs} rounds takes {need} blocks of {block}, and the "
                              f"recording holds only {len(rounds)} rounds")
        rng = random.Random(seed)
        windows = []
        for _ in range(resample):
            # distinct, non-overlapping blocks (a block twice in one gate would count its rounds twice), on a grid
            # shifted at random so that block edges vary between gates
            shift = rng.randrange(min(block, len(rounds) - need * block + 1))
            starts = rng.sample(range(shift, len(rounds) - block + 1, block), need)
            windows.append([rd for start in starts for rd in rounds[start:start + block]][:max_pairs])
        method = (f"resampled: {resample} gates of {max_pairs} rounds, each made of distinct random blocks of {block} "
                  f"consecutive rounds of one recording ({len(rounds)} rounds, {len(cases)} cases: "
                  f"{', '.join(cases)}); the gates share rounds, so no confidence bounds")
    else:
        windows = [rounds[start:start + max_pairs] for start in range(0, len(rounds) - max_pairs + 1, max_pairs)]
        method = (f"windows of {max_pairs} consecutive rounds of one recording ({len(rounds)} rounds, "
                  f"{len(cases)} cases: {', '.join(cases)})")
    # the median round, not the mean: a recorder paused (SIGSTOP) or starved for a while puts that time into one
    # round's seconds
    round_s = statistics.median(rd["seconds"] for rd in rounds) if rounds else None
    out = {}
    for name, head in (("A/A", "A'"), ("injected", "B")):
        gates = [_gate(w, head, cases, gated, points, alphas, threshold, min_effect) for w in windows]
        verdicts = [v for v, _ in gates]
        n = len(verdicts)
        # a round ran three children (A, A', B); a gate runs two of them: two thirds of a round's time
        out[name] = {"gates": n, "seconds_per_gate": (statistics.mean(used for _, used in gates) * round_s * 2 / 3
                                                      if n else None),
                     **{v: _share(verdicts.count(v), n, bounds=not resample)
                        for v in ("regression", "inconclusive", "pass")}}
    # what the injection measured over the whole recording, per case (B / A of the gated metric's medians)
    out["injected_ratio"] = {c: _injected_ratio(rounds, c, gated) for c in cases}
    out["method"] = method + ("; s per gate: the rounds each gate used (up to the look where every case had "
                              f"decided) x the median round ({round_s:.2f} s) x 2/3" if round_s else "")
    out["settings"] = {"looks": list(points), "alpha": alpha, "threshold": threshold,
                       "min_effect": min_effect, "metric": list(gated),
                       **({"resample": resample, "block": block, "seed": seed} if resample else {})}
    return out


def _injected_ratio(rounds: list[dict], case: str, gated: tuple) -> dict:
    both = [rd["values"][case] for rd in rounds if {"A", "B"} <= set(rd["values"].get(case, {}))]
    return {m: statistics.median(v["B"][m] for v in both) / statistics.median(v["A"][m] for v in both)
            for m in gated if both}


def _share(k: int, n: int, bounds: bool = True) -> dict:
    lo, hi = clopper_pearson(k, n) if n and bounds else (None, None)
    return {"count": k, "rate": k / n if n else None, "ci95": [lo, hi]}


# RunConfig fields that do not change what a gate measures (where results go, how long to wait, ...)
_NOT_PLAN = ("models", "out", "output", "timeout", "energy", "idle_s", "seed")


def trials_plan(cfg: RunConfig, base: str, head: str, gcfg: dict) -> dict:
    """What every gate in a trials log must share for their verdicts to be tallied together."""
    return {"base": base, "head": head, **{k: v for k, v in asdict(cfg).items() if k not in _NOT_PLAN}, **gcfg}


def read_log(path: Path, plan: dict) -> list[dict]:
    """The finished gates of a trials log (none if it does not exist yet); a log of another plan is an error,
    so two sessions' verdicts are only tallied together when they ran the same gates."""
    if not path.exists():
        return []
    gates = []
    for n, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
            line["kind"], line["verdict"], line["seconds"], line["plan"]  # noqa: B018 (the fields a tally reads)
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"{path}:{n} is not a gate-trials log line") from None
        if line["plan"] != plan:
            differ = sorted(k for k in {*plan, *line["plan"]} if plan.get(k) != line["plan"].get(k))
            raise ConfigError(f"{path} holds gates of another plan (differs in {', '.join(differ)}): "
                              "give another --log")
        gates.append(line)
    return gates


def tritbench_revision() -> str:
    """The harness's own code: its git commit (with "-dirty" if its files differ from it), or the package
    version outside a checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        rev = commit_of(root, "HEAD")[:12]
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (ConfigError, OSError, subprocess.SubprocessError):
        from importlib.metadata import version

        return version("tritbench")


def _log_line(kind: str, result, seconds: float, plan: dict) -> dict:
    cases = []
    for c in result.cases:
        d = c.decision
        tests = {m: {"ratio": t.comparison.ratio, "ci": list(t.comparison.ci)}
                 for m, t in (d.tests.items() if d else ()) if t.gated and t.comparison}
        cases.append({"case": c.name, "status": c.status, "pairs": len(c.rounds), "tests": tests,
                      **({"error": c.error} if c.error else {})})
    return {"kind": kind, "verdict": result.overall(), "seconds": seconds, "seed": result.seed,
            "tritbench": tritbench_revision(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": result.machine.get("id"),
            "results": result.path, "cases": cases, "plan": plan}


def full(cfg: RunConfig, base: str, head: str, trials: int, gcfg: dict, log: Path,
         events: RunEvents | None = None) -> dict:
    """Complete A/A and injected gates, alternating, each with its own seed, until the trials log `log` holds
    `trials` of each kind. Each gate is appended to the log as it finishes, so an interrupted session loses
    at most the gate in progress and the same command continues where it stopped."""
    plan = trials_plan(cfg, base, head, gcfg)
    gates = read_log(log, plan)
    earlier = len(gates)
    done = Counter(g["kind"] for g in gates)
    if earlier:
        (events or RunEvents()).warning(f"continuing {log}: {done['A/A']} A/A and {done['injected']} injected "
                                        "gates already in it")
    log.parent.mkdir(parents=True, exist_ok=True)
    while todo := [k for k in KINDS if done[k] < trials]:
        kind = min(todo, key=done.__getitem__)  # alternate, A/A first
        axis = f"env:{TRIAL_ENV}=a,b" if kind == "A/A" else f"model={base},{head}"
        g = GateConfig(parse_axis(axis), seed=random.randrange(2**31), **gcfg)
        t0 = time.time()
        if kind == "A/A":
            result = run_gate(g, replace(cfg, models=[base]), events)
        else:
            result = run_gate(g, cfg, events, injected=injected_config(cfg, head))
        gates.append(_log_line(kind, result, time.time() - t0, plan))
        done[kind] += 1
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps(gates[-1]) + "\n")
    return tally(gates, trials, earlier, log)


def tally(gates: list[dict], trials: int, earlier: int, log: Path) -> dict:
    """Verdict shares per kind over the first `trials` gates of each kind in the log."""
    summary: dict = {}
    for kind in KINDS:
        rs = [g for g in gates if g["kind"] == kind][:trials]
        verdicts = [g["verdict"] for g in rs]
        summary[kind] = {"gates": len(rs), "seconds_per_gate": sum(g["seconds"] for g in rs) / len(rs) if rs else None,
                         **{v: _share(verdicts.count(v), len(rs)) for v in ("regression", "inconclusive", "pass",
                                                                             "error")}}
    sessions = f", {earlier} of them from earlier sessions" if earlier else ""
    revisions = sorted({g.get("tritbench", "unknown") for g in gates})
    code = f"; tritbench {revisions[0]}" if len(revisions) == 1 else f"; tritbench revisions {', '.join(revisions)}"
    summary["method"] = f"{trials} full gates of each kind (log: {log}{sessions}{code if gates else ''})"
    return summary
