"""`bench compare A B`: every case of B against the same case of A, as a speed-up with its interval and a verdict.

Cases are matched across result sets by `tritbench.analysis.speedup.match_key` (the newest record of each);
the speed-up is B over A in one metric (tokens/s: LLM and kernel cases both have it), paired when both
records come from one run, else an unpaired bootstrap. Verdicts use the gate's words: 'regression' when the
interval lies entirely below 1 - min_effect, 'pass' when its lower bound is above 1 - threshold (an
improvement passes, and is marked faster), 'inconclusive' otherwise, a case without an interval included.
Pure over records; the printers (md, csv, json) return strings."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from tritbench.analysis.gate import VERDICTS  # the gate's words: compare and gate speak alike
from tritbench.analysis.speedup import (
    DEFAULT_CONFIDENCE,
    MatchKey,
    interval_verdict,
    is_faster,
    key_label,
    min_samples,
    newest_per_key,
    record_speedup,
)
from tritbench.reports.markdown import md_table, md_text
from tritbench.reports.units import fmt, interval_text, times

SCHEMA = "tritbench.compare/1"
METRIC_NAMES = {"tokens_per_s": "tokens/s"}


@dataclass
class CompareResult:
    """The matched cases (dicts, as the JSON output holds them) and those that could not be compared."""

    metric: str
    confidence: float
    threshold: float
    min_effect: float
    machine: bool  # cases were told apart by machine id
    cases: list[dict] = field(default_factory=list)
    not_compared: list[dict] = field(default_factory=list)
    a_sources: list[str] = field(default_factory=list)
    b_sources: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return {v: sum(c["verdict"] == v for c in self.cases) for v in VERDICTS}

    @property
    def metric_name(self) -> str:
        return METRIC_NAMES.get(self.metric, self.metric)


def _case(key: MatchKey) -> dict:
    return {"backend": key.backend, "model": key.model, "format": key.format, "workload": key.workload,
            "requested": json.loads(key.requested), "cache": key.cache, "machine": key.machine}


def _side(rec: Mapping[str, Any], metric: str) -> dict:
    m = (rec.get("metrics") or {}).get(metric) or {}
    return {"run_id": rec.get("run_id"), "case_id": rec.get("case_id"), "timestamp": rec.get("timestamp"),
            "median": m.get("median"), "n": len(m.get("samples") or []), "unstable": m.get("unstable")}


def compare_records(records_a: Sequence[Mapping[str, Any]], records_b: Sequence[Mapping[str, Any]],
                    metric: str = "tokens_per_s", confidence: float = DEFAULT_CONFIDENCE, threshold: float = 0.05,
                    min_effect: float = 0.01, machine: bool = True) -> CompareResult:
    """B against A, case by case (A's order, then what only B has)."""
    result = CompareResult(metric, confidence, threshold, min_effect, machine)
    newest_a, newest_b = newest_per_key(records_a, machine), newest_per_key(records_b, machine)

    def skip(key: MatchKey, why: str) -> None:
        result.not_compared.append({"case": _case(key), "label": key_label(key), "why": why})

    for key, ra in newest_a.items():
        rb = newest_b.get(key)
        if rb is None:
            skip(key, "only in A")
            continue
        failed = [(side, r) for side, r in (("A", ra), ("B", rb)) if r.get("status") != "ok"]
        if failed:
            skip(key, "; ".join(f"failed in {side}: {r.get('error') or 'no message'}" for side, r in failed))
            continue
        emulated = [(side, (r.get("machine") or {}).get("emulation")) for side, r in (("A", ra), ("B", rb))]
        emulated = [(side, e) for side, e in emulated if e]
        if emulated:  # an emulator's timings are no hardware's speed: never a comparison's side
            skip(key, "; ".join(f"{side}'s timings are emulated ({e.get('emulator')} -cpu {e.get('cpu')}), not "
                                "hardware speed" for side, e in emulated))
            continue
        s = record_speedup(ra, rb, metric, confidence)
        if s is None:
            skip(key, f"no {metric} samples in A or B")
            continue
        result.cases.append({
            "case": _case(key), "label": key_label(key), "a": _side(ra, metric), "b": _side(rb, metric),
            "speedup": s.to_dict(), "method": s.description, "verdict": interval_verdict(s, threshold, min_effect),
            "faster": is_faster(s, min_effect),
        })
    for key in newest_b:
        if key not in newest_a:
            skip(key, "only in B")
    return result


def _settings(requested: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in requested.items())


def _verdict_text(c: Mapping[str, Any]) -> str:
    return c["verdict"] + (" (faster)" if c["faster"] else "")


def _frame(result: CompareResult) -> pd.DataFrame:
    rows = []
    for c in result.cases:
        k, s = c["case"], c["speedup"]
        rows.append({
            "backend": k["backend"], "model": k["model"], "format": k["format"], "test": k["workload"],
            "settings": _settings(k["requested"]), "cache": k["cache"], "machine": k["machine"],
            "a": c["a"]["median"], "b": c["b"]["median"], "ratio": s["ratio"],
            "interval": interval_text(s["lo"], s["hi"], s["unstable"]), "method": c["method"],
            "verdict": _verdict_text(c),
        })
    return pd.DataFrame(rows).dropna(axis=1, how="all")  # no cache column without kernel cases


def rules_text(result: CompareResult) -> str:
    """How the speed-ups and verdicts were made, in one sentence."""
    pct = f"{result.confidence * 100:g} %"
    return (f"Speed-up = B / A of the median {result.metric_name} (metrics.{result.metric}), with {pct} intervals "
            f"(paired over the rounds of one run, else an unpaired bootstrap; none with fewer than "
            f"{min_samples(result.confidence)} rounds or samples per side). Regression: the interval lies below "
            f"{times(1 - result.min_effect)}; pass: its lower bound is above {times(1 - result.threshold)}; "
            "inconclusive: neither.")


def to_markdown(result: CompareResult) -> str:
    counts = result.counts
    out = [f"## B against A: {md_text(result.metric_name)}", "",
           md_text(f"A: {', '.join(result.a_sources) or '(records)'}; B: {', '.join(result.b_sources) or '(records)'}"),
           "", md_text(rules_text(result)), ""]
    if result.cases:
        rate = md_text(result.metric_name)
        out += md_table(_frame(result), [
            ("backend", "backend", None), ("model", "model", None), ("format", "format", None), ("test", "test", None),
            ("settings", "settings", None), ("cache", "cache", None), ("machine", "machine", lambda v: fmt(v, "{}")),
            ("a", f"A {rate}", lambda v: fmt(v, "{:,.2f}")), ("b", f"B {rate}", lambda v: fmt(v, "{:,.2f}")),
            ("ratio", "B/A", times), ("interval", "interval", None), ("method", "method", None),
            ("verdict", "verdict", None),
        ], right={"a", "b", "ratio"}, keep={"a", "b", "ratio", "interval", "verdict"})
        out.append("")
    out.append(", ".join(f"{counts[v]} {v}" for v in VERDICTS) + f" of {len(result.cases)} case(s).")
    if result.not_compared:
        out += ["", "Not compared:"] + [md_text(f"- {c['label']}: {c['why']}") for c in result.not_compared]
    return "\n".join(out) + "\n"


def to_csv(result: CompareResult) -> str:
    """One row per compared case (the cases not compared are in the md and json outputs)."""
    rows = []
    for c in result.cases:
        k, s = c["case"], c["speedup"]
        rows.append({
            "backend": k["backend"], "model": k["model"], "format": k["format"], "workload": k["workload"],
            "settings": _settings(k["requested"]), "cache": k["cache"], "machine": k["machine"],
            "metric": result.metric, "a_median": c["a"]["median"], "b_median": c["b"]["median"],
            "speedup": s["ratio"], "lo": s["lo"], "hi": s["hi"], "confidence": s["confidence"],
            "method": s["method"], "n": s["n"], "unstable": s["unstable"], "verdict": c["verdict"],
            "faster": c["faster"], "a_run_id": c["a"]["run_id"], "b_run_id": c["b"]["run_id"],
        })
    buf = io.StringIO()
    pd.DataFrame(rows, columns=None if rows else ["backend"]).to_csv(buf, index=False)
    return buf.getvalue()


def to_json(result: CompareResult) -> str:
    doc = {
        "schema": SCHEMA, "metric": result.metric, "a": result.a_sources, "b": result.b_sources,
        "confidence": result.confidence, "threshold": result.threshold, "min_effect": result.min_effect,
        "match_machine": result.machine, "counts": result.counts, "cases": result.cases,
        "not_compared": result.not_compared,
    }
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


def render(result: CompareResult, kind: str) -> str:
    if kind == "md":
        return to_markdown(result)
    if kind == "csv":
        return to_csv(result)
    if kind == "json":
        return to_json(result)
    raise ValueError(f"unknown output format {kind}")
