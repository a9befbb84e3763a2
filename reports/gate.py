"""What a gate says: a markdown table (stdout and $GITHUB_STEP_SUMMARY), GitHub annotation lines, JUnit XML
and the `tritbench.gate/1` JSON document. Pure over a GateResult, no I/O."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pandas as pd

from tritbench.analysis.gate import METRICS, CaseResult, GateResult, Test
from tritbench.reports.markdown import md_table, md_text
from tritbench.reports.units import inert

SCHEMA = "tritbench.gate/1"
def _ratio(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.3f}x"


def _ci(t: Test) -> str:
    if t.comparison is None:
        return "-"
    lo, hi = t.comparison.ci
    if not (lo > 0 and math.isfinite(hi)):
        return "unbounded (too few pairs)"
    return f"[{lo:.3f}x, {hi:.3f}x]"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def _p(x: float | None) -> str:
    return "-" if x is None else f"{x:.2g}"


def _rows(g: GateResult) -> pd.DataFrame:
    rows = []
    for c in g.cases:
        if c.decision is None:
            rows.append({"status": c.status, "case": c.name, "metric": "-", "base": "-", "head": "-",
                         "ratio": "-", "ci": inert(c.error or "no pairs"), "p": "-", "pairs": len(c.rounds),
                         "noise": "-", "detectable": "-"})
            continue
        for metric in (*c.gated, *(m for m in METRICS if m not in c.gated)):
            t = c.decision.tests[metric]
            rows.append({
                "status": (t.verdict or "-") if t.gated else "not gated",
                "case": c.name, "metric": METRICS[metric],
                "base": "-" if t.base_median is None else f"{t.base_median:,.1f}",
                "head": "-" if t.head_median is None else f"{t.head_median:,.1f}",
                "ratio": _ratio(t.comparison.ratio if t.comparison else None), "ci": _ci(t),
                "p": _p(t.p_adjusted if t.gated else t.comparison.p_slower if t.comparison else None),
                "pairs": len(c.rounds), "noise": _pct(t.noise), "detectable": _pct(t.detectable),
            })
    return pd.DataFrame(rows)


def to_markdown(g: GateResult) -> str:
    """Status first, the interval and Holm-adjusted p of every gated test, the noise (sd of the per-round
    log ratios) and the smallest slowdown each case could have told from that noise."""
    st = g.settings
    conf = _confidence(st)
    df = _rows(g)
    cols = [("status", "status", None), ("case", "case", None), ("metric", "metric", None),
            ("base", "base", None), ("head", "head", None), ("ratio", "head/base", None),
            ("ci", f"{conf:g} % CI", None), ("p", "p (Holm)", None), ("pairs", "pairs", None),
            ("noise", "noise (sd)", None), ("detectable", "detectable slowdown", None)]
    lines = [f"### tritbench gate `{md_text(g.axis['label'])}`: {g.overall()}", ""]
    lines += md_table(df, cols, hide_constant=False, right={"base", "head", "ratio", "pairs", "noise", "detectable"})
    points = st["looks"]
    looks = (f"{len(points)} looks (at {', '.join(map(str, points[:-1]))} and up to {points[-1]} pairs, alpha split "
             "evenly between them)" if len(points) > 1 else f"one look at {points[0]} pairs")
    lines += [
        "",
        f"Verdicts: regression = a slowdown of at least {_pct(st['min_effect'])} with Holm-adjusted p < "
        f"{st['alpha']:g} (family-wise over every gated test, {looks}); pass = the interval rules out a slowdown "
        f"of {_pct(st['threshold'])}; inconclusive = neither. Improvements are reported, never gated.",
        f"Decided by: {', '.join(sorted({METRICS[m] for c in g.cases for m in c.gated}))}; "
        "each round's value is the median of one child's repetitions; base and head ran back to back in an "
        f"order drawn per round (seed {g.seed}).",
        f"Machine: {md_text(g.machine.get('cpu_model', '?'))} ({md_text(g.machine.get('arch', '?'))}, "
        f"{md_text(', '.join(g.machine.get('isa', []) or []) or 'ISA unknown')}). Results: "
        f"`{md_text(g.path)}`.",
    ]
    for side in ("base", "head"):
        builds = g.builds.get(side) or {}
        desc = "; ".join(f"{b}: {_build_text(fp)}" for b, fp in builds.items()) or "no child reported its build"
        value = g.axis[side]
        lines.append(f"- {side} (`{md_text(value)}`): {md_text(desc)}")
    return "\n".join(lines) + "\n"


def _build_text(fp: dict) -> str:
    keys = ("version", "llama_cpp_commit", "custom_op_library_sha256", "python")
    return ", ".join(f"{k} {fp[k]}" for k in keys if fp.get(k))


def _confidence(st: dict) -> float:
    """The intervals' two-sided confidence at the last look (1 - 2 alpha of that look)."""
    alpha = st["alpha"] / len(st["looks"])
    return round(100 * (1 - 2 * alpha), 3)


def annotations(g: GateResult) -> list[str]:
    """GitHub Actions workflow commands: an error per regression or failed case, a warning per inconclusive."""
    out = []
    for c in g.cases:
        s = c.status
        if s == "pass":
            continue
        detail = _summary(c)
        kind, title = {"regression": ("error", "Performance regression"), "error": ("error", "Gate case failed"),
                       "inconclusive": ("warning", "Performance gate inconclusive")}[s]
        # workflow-command data: % \r \n are escaped, so one annotation stays one line
        text = f"{c.name}: {detail}".replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        out.append(f"::{kind} title={title}::{inert(text)}")
    return out


def _summary(c: CaseResult) -> str:
    if c.error is not None or c.decision is None:
        return c.error or "no pairs were measured"
    parts = []
    for m in c.gated:
        t = c.decision.tests[m]
        parts.append(f"{METRICS[m]} head/base {_ratio(t.comparison.ratio if t.comparison else None)} {_ci(t)}, "
                     f"p (Holm) {_p(t.p_adjusted)}, {len(c.rounds)} pairs")
    return "; ".join(parts)


def to_junit(g: GateResult) -> str:
    """One testcase per case: <failure> for a regression, <error> for a case that failed to run, <skipped>
    for an inconclusive one."""
    n = g.counts()
    errors = sum(c.status == "error" for c in g.cases)
    suite = ET.Element("testsuite", name=f"tritbench gate {g.axis['label']}", tests=str(len(g.cases)),
                       failures=str(n["failed"] - errors), errors=str(errors), skipped=str(n["skipped"]))
    for c in g.cases:
        case = ET.SubElement(suite, "testcase", classname="tritbench.gate", name=inert(c.name))
        s, detail = c.status, inert(_summary(c))
        if s == "regression":
            ET.SubElement(case, "failure", message=detail, type="regression").text = detail
        elif s == "error":
            ET.SubElement(case, "error", message=detail, type="failed to run").text = detail
        elif s == "inconclusive":
            ET.SubElement(case, "skipped", message=f"inconclusive: {detail}")
        ET.SubElement(case, "system-out").text = detail
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def _test_json(t: Test) -> dict:
    c = t.comparison
    return {
        "gated": t.gated, "verdict": t.verdict, "base_median": t.base_median, "head_median": t.head_median,
        "ratio": c.ratio if c else None,
        "ci": [c.ci[0], c.ci[1]] if c and c.ci[0] > 0 and math.isfinite(c.ci[1]) else None,
        "confidence": c.confidence if c else None, "p": c.p_slower if c else None, "p_adjusted": t.p_adjusted,
        "noise_sd": t.noise, "detectable_slowdown": t.detectable,
    }


def to_json(g: GateResult) -> dict:
    """The `tritbench.gate/1` document: settings, both builds, the machine, the order seed, and per case its
    verdict, every metric's medians, ratio, interval and p, the noise floor and every round's order."""
    return {
        "schema": SCHEMA,
        "axis": g.axis,
        "settings": g.settings,
        "seed": g.seed,
        "verdict": g.overall(),
        "exit_code": g.exit_code(),
        "summary": g.counts(),
        "results": str(g.path),
        "machine": g.machine,
        "builds": g.builds,
        "cases": [
            {
                "name": c.name, "verdict": c.status, "error": c.error, "decided_by": list(c.gated),
                "pairs": len(c.rounds),
                "looks": [{"pairs": n, "verdict": d.verdict} for n, d in c.looks],
                "metrics": {m: _test_json(t) for m, t in (c.decision.tests.items() if c.decision else [])},
                "rounds": c.rounds,
            }
            for c in g.cases
        ],
    }
