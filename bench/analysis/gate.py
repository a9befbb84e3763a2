"""The gate's decisions: per-round values from a child's repetitions, and the verdict of every gated case
after a look at its pairs. Pure functions over numbers (tritbench.execute.gate runs the children).

A case is one workload of a base variant and its head twin. Each round gives one value per side and
metric: the median of that child's repetitions. Metrics (higher is better):
- `cpu`: tokens per CPU-second (tokens / process CPU time of the timed region; kernel cases: activation
  rows per calling-thread CPU-second). With one thread it ignores time the thread spent descheduled,
  so it is the quieter metric on a shared machine (notes/gates.md: sd 0.035-0.12 against 0.07-0.26).
- `wall`: tokens per wall-clock second from the same repetitions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from tritbench.analysis.paired import Comparison, compare, holm, log_ratios, verdict
from tritbench.plan.workloads import Workload

METRICS = {"cpu": "tokens per CPU-second", "wall": "tokens/s (wall clock)"}
VERDICTS = ("regression", "inconclusive", "pass")


def round_value(w: Workload, reps: Sequence[dict]) -> dict[str, float]:
    """One child's value of each metric for workload `w`: the median over its repetitions."""
    if not reps:
        raise ValueError("no repetitions")
    if w.is_kernel:
        wall = [w.M / r["latency_s"] for r in reps]
        cpu = [w.M / r["thread_cpu_s"] if r["thread_cpu_s"] > 0 else math.nan for r in reps]
    else:
        tokens = w.n_prompt + w.n_gen
        wall = [tokens / (r.get("prefill_s", 0.0) + sum(r.get("decode_s", []))) for r in reps]
        cpu = [tokens / r["cpu_s"] if r["cpu_s"] > 0 else math.nan for r in reps]
    return {"wall": float(np.median(wall)), "cpu": float(np.median(cpu))}


def gated_metrics(choice: str, n_threads: int) -> tuple[str, ...]:
    """`auto`: CPU time with one thread (descheduling does not count), wall clock with more (CPU time then
    counts threads spinning at barriers); or `cpu`, `wall`, `both`."""
    if choice == "auto":
        return ("cpu",) if n_threads == 1 else ("wall",)
    return ("cpu", "wall") if choice == "both" else (choice,)


@dataclass
class Test:
    """One (case, metric) comparison at one look."""

    metric: str
    gated: bool
    comparison: Comparison | None  # None: fewer than two usable pairs
    p_adjusted: float | None = None  # Holm over the look's gated tests
    verdict: str | None = None  # gated tests only
    noise: float | None = None  # sd of the per-round log ratios
    detectable: float | None = None  # slowdown the interval could have told from noise (fraction)
    base_median: float | None = None
    head_median: float | None = None


@dataclass
class CaseLook:
    """A case's tests at one look, and its verdict: regression if any gated test is one, pass if every
    gated test passes, inconclusive otherwise; `decided_by` names the gated metrics."""

    tests: dict[str, Test] = field(default_factory=dict)
    verdict: str = "inconclusive"
    decided_by: tuple[str, ...] = ()


def _detectable(ci: tuple[float, float]) -> float | None:
    """Half the interval's width as a slowdown: a true slowdown this large would have moved the interval
    clear of 1. None when the interval is unbounded (too few pairs for the confidence)."""
    lo, hi = ci
    if not (lo > 0 and math.isfinite(hi)):
        return None
    return 1 - math.exp(-(math.log(hi) - math.log(lo)) / 2)


def look(cases: dict[str, dict[str, tuple[list[float], list[float]]]], gated: dict[str, tuple[str, ...]],
         alpha: float, threshold: float, min_effect: float) -> dict[str, CaseLook]:
    """Decide every case from its pairs: `cases[case][metric] = (base values, head values)` in round order,
    `gated[case]` the metrics that decide it, `alpha` this look's share of the family alpha. Intervals are
    two-sided at 1 - 2 alpha, so their lower bound is a one-sided bound at 1 - alpha; Holm adjusts the
    one-sided p-values over every gated test of this look."""
    out: dict[str, CaseLook] = {}
    family: list[Test] = []
    for case, metrics in cases.items():
        cl = out[case] = CaseLook(decided_by=gated[case])
        for metric, (base, head) in metrics.items():
            t = cl.tests[metric] = Test(metric, metric in gated[case], None)
            pairs = [(b, h) for b, h in zip(base, head, strict=True)
                     if b > 0 and h > 0 and math.isfinite(b) and math.isfinite(h)]
            if pairs:
                t.base_median = float(np.median([b for b, _ in pairs]))
                t.head_median = float(np.median([h for _, h in pairs]))
            if len(pairs) < 2:
                continue
            b, h = zip(*pairs, strict=True)
            t.comparison = compare(b, h, confidence=1 - 2 * alpha)
            t.noise = float(np.std(log_ratios(b, h), ddof=1))
            t.detectable = _detectable(t.comparison.ci)
            if t.gated:
                family.append(t)
    for t, p in zip(family, holm([t.comparison.p_slower for t in family]), strict=True):
        t.p_adjusted = p
        t.verdict = verdict(t.comparison, p, alpha, threshold, min_effect)
    for cl in out.values():
        verdicts = [cl.tests[m].verdict for m in cl.decided_by if m in cl.tests]
        if "regression" in verdicts:
            cl.verdict = "regression"
        elif verdicts and len(verdicts) == len(cl.decided_by) and all(v == "pass" for v in verdicts):
            cl.verdict = "pass"
    return out


def look_alphas(alpha: float, looks: int) -> list[float]:
    """The family alpha split between the looks (Bonferroni over looks: the chance of a false regression
    over all of them stays within `alpha`)."""
    return [alpha / looks] * looks


@dataclass
class CaseResult:
    """One gated case: its paired rounds, the decision at each look, or why a side could not run it."""

    name: str
    gated: tuple[str, ...]
    rounds: list[dict] = field(default_factory=list)  # {"round", "order", "base": {metric: v}, "head": ...}
    looks: list[tuple[int, CaseLook]] = field(default_factory=list)  # (pairs at the look, decision)
    error: str | None = None  # a side failed to run it: never a regression

    @property
    def decision(self) -> CaseLook | None:
        return self.looks[-1][1] if self.looks else None

    @property
    def decided(self) -> bool:
        return self.error is not None or (self.decision is not None and self.decision.verdict != "inconclusive")

    @property
    def status(self) -> str:
        """regression, pass, inconclusive, or error (a side failed to run it, or it was never looked at)."""
        return "error" if self.error is not None or self.decision is None else self.decision.verdict

    def series(self, metric: str) -> tuple[list[float], list[float]]:
        return [r["base"][metric] for r in self.rounds], [r["head"][metric] for r in self.rounds]


@dataclass
class GateResult:
    """A finished gate: what was compared, how, on what, and every case's result."""

    axis: dict  # kind, name, base, head, label
    settings: dict  # threshold, alpha, min_effect, pairs, max_pairs, looks (pairs at each), metric, inconclusive
    seed: int  # the order of the sides in each round
    cases: list[CaseResult]
    builds: dict[str, dict]  # side -> backend -> build fingerprint
    machine: dict
    path: str  # the results file

    def counts(self) -> dict[str, int]:
        """The last line's numbers: failed = regressions and cases that failed to run, skipped = inconclusive."""
        s = [c.status for c in self.cases]
        return {"passed": s.count("pass"), "failed": s.count("regression") + s.count("error"),
                "skipped": s.count("inconclusive")}

    def last_line(self) -> str:
        n = self.counts()
        return f"gate: {n['passed']} passed, {n['failed']} failed, {n['skipped']} skipped"

    def overall(self) -> str:
        s = {c.status for c in self.cases}
        return next((w for w in ("regression", "error", "inconclusive") if w in s), "pass")

    def exit_code(self) -> int:
        """1 regression, 4 a case failed to run, 3 inconclusive (0 with `inconclusive = pass`), else 0. A
        regression outranks a failure: it is a finding; a failure is never reported as one."""
        return {"regression": 1, "error": 4, "pass": 0,
                "inconclusive": 0 if self.settings.get("inconclusive") == "pass" else 3}[self.overall()]


def _binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space (n of a few hundred trials)."""
    if p <= 0:
        return 1.0
    if p >= 1:
        return 1.0 if k >= n else 0.0
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p)
            + (n - i) * math.log1p(-p) for i in range(k + 1)]
    top = max(logs)
    return min(1.0, math.exp(top) * sum(math.exp(v - top) for v in logs))


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval of a binomial proportion k / n: the p where P(X >= k) and
    P(X <= k) reach (1 - confidence) / 2, found by bisection on the binomial distribution."""
    if not (0 <= k <= n and n > 0):
        raise ValueError("need 0 <= k <= n and n > 0")
    tail = (1 - confidence) / 2

    def solve(f) -> float:  # f increasing in p; the p with f(p) = 0
        lo, hi = 0.0, 1.0
        for _ in range(100):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if f(mid) < 0 else (lo, mid)
        return (lo + hi) / 2

    lower = 0.0 if k == 0 else solve(lambda p: (1 - _binom_cdf(k - 1, n, p)) - tail)
    upper = 1.0 if k == n else solve(lambda p: tail - _binom_cdf(k, n, p))
    return lower, upper
