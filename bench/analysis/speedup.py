"""The speed-up of one case over another, with its interval: pure functions of two records' metrics.

Two ways, chosen by where the samples came from:
- paired: both cases come from one run (same run_id) with the same repetitions and rounds. `bench run` runs
  every variant once per round, back to back, so round r of both sides shares the machine's state: the
  per-round medians pair up, and `tritbench.analysis.paired.compare` gives the ratio (exp of the
  Hodges-Lehmann estimate of the per-round log ratios) and its exact Wilcoxon signed-rank interval;
- unpaired (different runs, or different plans): the ratio of the two medians, with a seeded percentile
  bootstrap interval that resamples each side's samples independently.

An interval needs enough values: both methods can only bound a ratio at confidence c with n >= log2(2 / (1 - c))
rounds (paired) or samples per side (unpaired), 6 at 95 % (`min_samples`). With fewer there is no interval
(lo = hi = None), never one made up from too little data.

`match_key` says which records of two result sets are the same case (for `bench compare` and the gate).
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from tritbench.analysis.paired import compare
from tritbench.plan.cases import reps_per_round

# An interval whose upper bound is more than this factor above its lower bound (about +-12 % around the ratio)
# cannot tell a 5 % change from none: the speed-up is flagged unstable.
WIDE_FACTOR = 1.25
DEFAULT_CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000

PAIRED = "paired"
UNPAIRED = "unpaired bootstrap"


def min_samples(confidence: float) -> int:
    """The fewest rounds (paired) or samples per side (unpaired) that can bound a ratio at `confidence`: with n
    values, the widest distribution-free interval (the extremes) still misses with probability 2 * 0.5^n."""
    if not 0 < confidence < 1:
        raise ValueError("confidence must be between 0 and 1")
    return math.ceil(math.log2(2 / (1 - confidence)) - 1e-12)


@dataclass(frozen=True)
class Side:
    """One case's samples of one metric, with what decides how it pairs with another case."""

    samples: tuple[float, ...]  # per repetition, in run order
    median: float  # as the record states it (the t/s columns show it), else the samples' median
    unstable: bool = False  # the metric's own flag (tritbench.analysis.stats.summarize)
    run_id: str | None = None
    rounds: int | None = None
    repetitions: int | None = None

    @classmethod
    def of(cls, metric: Any, run_id: Any = None, rounds: Any = None, repetitions: Any = None) -> Side | None:
        """A side from a metric dict as summarize() writes it (`samples`, `median`, `unstable`); a metric with a
        median but no samples gives one sample. None when there is no positive, finite value to compare."""
        if not isinstance(metric, Mapping):
            return None
        raw = metric.get("samples")
        median = metric.get("median")
        if not isinstance(raw, (list, tuple)) or not raw:
            raw = [median]
        try:
            samples = tuple(float(x) for x in raw)
            median = float(median) if median is not None else float(np.median(samples))
        except (TypeError, ValueError):
            return None
        if not all(math.isfinite(x) and x > 0 for x in (*samples, median)):
            return None
        unstable = metric.get("unstable")
        return cls(samples, median, isinstance(unstable, (bool, np.bool_)) and bool(unstable),
                   run_id if isinstance(run_id, str) else None, _count(rounds), _count(repetitions))

    @classmethod
    def from_record(cls, record: Mapping[str, Any], metric: str = "tokens_per_s") -> Side | None:
        """The side of a record (a dict as `bench run` writes it) for `metrics.<metric>`."""
        settings = record.get("settings") or {}
        metrics = record.get("metrics") or {}
        return cls.of(metrics.get(metric), record.get("run_id"), settings.get("rounds"), settings.get("repetitions"))

    @classmethod
    def pool(cls, sides: Sequence[Side]) -> Side:
        """Several measurements of one case (from different runs) as one unpaired side."""
        if len(sides) == 1:
            return sides[0]
        samples = tuple(x for s in sides for x in s.samples)
        return cls(samples, float(np.median(samples)), any(s.unstable for s in sides))

    def round_values(self) -> list[float] | None:
        """The median of each round's samples, or None when the record does not say how they were split."""
        if not self.rounds or not self.repetitions or len(self.samples) != self.repetitions \
                or self.rounds > self.repetitions:
            return None
        out, start = [], 0
        for n in reps_per_round(self.repetitions, self.rounds):
            out.append(float(np.median(self.samples[start:start + n])))
            start += n
        return out


def _count(value: Any) -> int | None:
    """A positive whole number (an int, or a float or numpy number from a DataFrame), else None."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return None
    v = float(value)
    return int(v) if math.isfinite(v) and v == int(v) and v > 0 else None


def pairs_with(a: Side, b: Side) -> bool:
    """Whether the two sides' samples were taken in the same rounds: one run, one plan."""
    return (a.run_id is not None and a.run_id == b.run_id and a.rounds is not None and a.rounds == b.rounds
            and a.repetitions == b.repetitions and a.round_values() is not None and b.round_values() is not None)


@dataclass(frozen=True)
class Speedup:
    """B over A (above 1: B is faster), with its interval at `confidence` (lo = hi = None: too few values)."""

    ratio: float
    lo: float | None
    hi: float | None
    method: str  # PAIRED or UNPAIRED
    n: int  # rounds (paired) or the smaller side's sample count (unpaired)
    confidence: float
    wide: bool  # the interval spans more than WIDE_FACTOR
    unstable: bool  # wide, or either side's metric flagged unstable
    samples: tuple[int, int] = (0, 0)  # (A, B) sample counts

    @property
    def bounded(self) -> bool:
        return self.lo is not None and self.hi is not None

    @property
    def description(self) -> str:
        """'paired, 8 rounds' or 'unpaired bootstrap, 5+7 samples'."""
        if self.method == PAIRED:
            return f"{PAIRED}, {self.n} round{'s' if self.n != 1 else ''}"
        return f"{UNPAIRED}, {self.samples[0]}+{self.samples[1]} samples"

    def to_dict(self) -> dict:
        return {"ratio": self.ratio, "lo": self.lo, "hi": self.hi, "confidence": self.confidence,
                "method": self.method, "n": self.n, "samples": list(self.samples), "wide": self.wide,
                "unstable": self.unstable}


def speedup(a: Side, b: Side, confidence: float = DEFAULT_CONFIDENCE, higher_is_better: bool = True,
            seed: int = 0, n_resamples: int = BOOTSTRAP_RESAMPLES) -> Speedup:
    """The speed-up of B over A: b / a for a higher-is-better metric (tokens/s), a / b for a lower-is-better one
    (latency). Paired when `pairs_with(a, b)`, else unpaired; the bootstrap is seeded, so reports repeat."""
    num, den = (b, a) if higher_is_better else (a, b)
    if pairs_with(a, b):
        c = compare(den.round_values(), num.round_values(), confidence)
        ratio, (lo, hi), method, n = c.ratio, c.ci, PAIRED, c.pairs
        if not (lo > 0 and math.isfinite(hi)):  # too few rounds: wilcoxon_interval's (-inf, inf), exponentiated
            lo = hi = None
    else:
        ratio, method, n = num.median / den.median, UNPAIRED, min(len(a.samples), len(b.samples))
        lo, hi = _bootstrap(den.samples, num.samples, confidence, seed, n_resamples)
        if lo is not None:  # a percentile interval need not hold its own estimate: widened to, never narrowed
            lo, hi = min(lo, ratio), max(hi, ratio)
    wide = lo is not None and hi / lo > WIDE_FACTOR
    return Speedup(ratio, lo, hi, method, n, confidence, wide, wide or a.unstable or b.unstable,
                   (len(a.samples), len(b.samples)))


def _bootstrap(den: Sequence[float], num: Sequence[float], confidence: float, seed: int, n_resamples: int
               ) -> tuple[float | None, float | None]:
    """Percentile interval of median(num) / median(den), each side resampled on its own. Both orientations of
    the two random streams are pooled, so swapping the sides inverts the interval exactly (not just nearly)."""
    if min(len(den), len(num)) < min_samples(confidence):
        return None, None
    x, y = np.log(np.asarray(den, dtype=float)), np.log(np.asarray(num, dtype=float))

    def medians(values: np.ndarray, stream: int) -> np.ndarray:
        idx = np.random.default_rng([seed, stream]).integers(0, values.size, size=(n_resamples, values.size))
        return np.median(values[idx], axis=1)  # the median of logs is the log of the median (monotone)

    logs = np.concatenate([medians(y, 2) - medians(x, 1), medians(y, 1) - medians(x, 2)])
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(logs, [tail, 1 - tail])
    return float(np.exp(lo)), float(np.exp(hi))


def record_speedup(a: Mapping[str, Any], b: Mapping[str, Any], metric: str = "tokens_per_s",
                   confidence: float = DEFAULT_CONFIDENCE, higher_is_better: bool = True) -> Speedup | None:
    """The speed-up of record B over record A in `metrics.<metric>`, or None when either lacks the metric."""
    sa, sb = Side.from_record(a, metric), Side.from_record(b, metric)
    if sa is None or sb is None:
        return None
    return speedup(sa, sb, confidence, higher_is_better)


def interval_verdict(s: Speedup, threshold: float = 0.05, min_effect: float = 0.01) -> str:
    """The gate's words from an interval: 'regression' when it lies entirely below 1 - min_effect, 'pass' when its
    lower bound is above 1 - threshold (improvements pass), 'inconclusive' otherwise (no interval included)."""
    if not s.bounded:
        return "inconclusive"
    if s.hi < 1 - min_effect:
        return "regression"
    if s.lo > 1 - threshold:
        return "pass"
    return "inconclusive"


def is_faster(s: Speedup, min_effect: float = 0.01) -> bool:
    """The interval lies entirely above 1 + min_effect: B is faster."""
    return s.bounded and s.lo > 1 + min_effect


# ---- which records are the same case --------------------------------------------------------------------

class MatchKey(NamedTuple):
    """What makes two records, from any two runs, the same case."""

    backend: str
    model: str
    format: str
    workload: str
    requested: str  # settings.requested (n_threads and backend options) as sorted JSON
    cache: str | None  # kernel cases: cold or hot
    machine: str | None  # machine.id, or None when machines are not told apart


def match_key(record: Mapping[str, Any], machine: bool = True) -> MatchKey:
    """The case identity of a record across runs: backend name, model name, format, workload name, the thread
    count and backend options the case asked for (`settings.requested`; records without it: `settings.n_threads`),
    the cache mode (`settings.cache`) and, unless `machine` is False, the machine id (`machine.id`).
    Unlike `case_id`, it leaves out the model file's digest, so a rebuilt model file still matches."""
    settings = record.get("settings") or {}
    requested = settings.get("requested")
    if not isinstance(requested, Mapping):
        requested = {"n_threads": settings.get("n_threads")}
    cache = settings.get("cache")
    mid = (record.get("machine") or {}).get("id") if machine else None
    return MatchKey(
        str((record.get("backend") or {}).get("name")), str((record.get("model") or {}).get("name")),
        str((record.get("model") or {}).get("format")), str((record.get("workload") or {}).get("name")),
        json.dumps(requested, sort_keys=True, default=str), None if cache is None else str(cache),
        None if mid is None else str(mid))


def key_label(key: MatchKey) -> str:
    """'llamacpp tiny tq2_0 tg16 n_threads=2' (+ options, cache, machine): one line naming a case."""
    requested = json.loads(key.requested)
    parts = [key.backend, key.model, key.format, key.workload]
    parts += [f"{k}={v}" for k, v in requested.items()]
    parts += [f"cache={key.cache}"] if key.cache else []
    parts += [f"machine={key.machine[:12]}"] if key.machine else []
    return " ".join(parts)


def newest_per_key(records: Iterable[Mapping[str, Any]], machine: bool = True) -> dict[MatchKey, Mapping[str, Any]]:
    """One record per case: the newest by timestamp (ties: the one read last), failed ones included."""
    out: dict[MatchKey, tuple[str, int, Mapping[str, Any]]] = {}
    for i, rec in enumerate(records):
        key = match_key(rec, machine)
        stamp = rec.get("timestamp") if isinstance(rec.get("timestamp"), str) else ""
        if key not in out or (stamp, i) >= out[key][:2]:
            out[key] = (stamp, i, rec)
    return {k: v[2] for k, v in out.items()}
