"""What `bench run` prints at the end: a llama-bench-like table (md), CSV, JSON or JSONL of its records.

The table's rows and speed-ups are the reports' own (tritbench.reports.tables): a case against its
baseline format (f16, fp32) of the same backend, model, workload and settings, paired over the run's rounds,
with its interval in the column before it; rows stay in plan order.
"""

from __future__ import annotations

import io
import json

import pandas as pd

from tritbench.analysis.speedup import DEFAULT_CONFIDENCE
from tritbench.reports.markdown import md_table, md_text
from tritbench.reports.tables import from_records, table_notes
from tritbench.reports.units import count, fmt, iec, interval_text, times
from tritbench.results.records import Record

SAMPLE_KEYS = ("samples",)


def _spread(center: float, spread: float, unstable: bool, spec: str) -> str:
    return f"{spec.format(center)} ± {spec.format(spread)}" + (" (unstable)" if unstable else "")


def _in_plan_order(df: pd.DataFrame, records: list[Record]) -> pd.DataFrame:
    order = {r.case_id: i for i, r in enumerate(records)}
    return df.assign(_order=df["case_id"].map(order)).sort_values("_order", kind="stable")


def _versus(df: pd.DataFrame) -> str:
    """The speed-up column's header: 'vs f16' when every row compares with one format."""
    bases = set(df["baseline"].dropna())
    return f"vs {bases.pop()}" if len(bases) == 1 else "vs baseline"


def _with_interval(df: pd.DataFrame) -> pd.DataFrame:
    """The speed-up's interval as a column of its own ('' for a baseline against itself): the speed-up column
    stays last and holds the ratio alone."""
    text = ["" if m == "baseline" else "—" if pd.isna(r) else interval_text(lo, hi, u) for r, lo, hi, u, m in
            zip(df["speedup"], df["speedup_lo"], df["speedup_hi"], df["speedup_unstable"], df["speedup_method"],
                strict=True)]
    return df.assign(interval=text)


INTERVAL = f"{DEFAULT_CONFIDENCE * 100:g} % interval"


def to_markdown(records: list[Record]) -> str:
    if not records:
        return "no results\n"
    data = from_records([r.to_dict() for r in records])
    out: list[str] = []
    if len(data.cases):
        # t/s as mean ± sd, llama-bench's convention; the speed-up compares medians
        cases = _with_interval(_in_plan_order(data.cases, records))
        cases["t/s"] = [_spread(m, sd, u, "{:.2f}") for m, sd, u in
                        zip(cases["tokens_per_s_mean"], cases["tokens_per_s_sd"], cases["unstable"], strict=True)]
        out += md_table(cases, [
            ("model", "model", None), ("format", "format", None), ("file_bytes", "size", iec),
            ("n_params", "params", count), ("backend", "backend", None), ("n_threads", "threads", None),
            ("test", "test", None), ("t/s", "t/s", None), ("peak_rss_bytes", "peak RSS", iec),
            ("interval", INTERVAL, None), ("speedup", _versus(cases), times),
        ], hide_constant=False, pad=True, right={"file_bytes", "n_params", "n_threads", "t/s", "peak_rss_bytes",
                                                 "speedup"})
    if len(data.kernels):
        kernels = _with_interval(_in_plan_order(data.kernels, records))
        kernels["latency"] = [_spread(m, iqr, u, "{:.4f}") for m, iqr, u in
                              zip(kernels["latency_ms"], kernels["latency_iqr"], kernels["latency_unstable"],
                                  strict=True)]
        out += ([""] if out else []) + md_table(kernels, [
            ("backend", "backend", None), ("format", "format", None),
            ("bits_per_weight", "bits/w", lambda v: fmt(v, "{:.2f}")), ("n_threads", "threads", None),
            ("cache", "cache", None), ("test", "test", None), ("latency", "latency ms", None),
            ("weight_gbps", "GB/s", lambda v: fmt(v, "{:.2f}")),
            ("pct_of_bandwidth", "% read bw", lambda v: fmt(v, "{:.0f}", " %")),
            ("interval", INTERVAL, None), ("speedup", _versus(kernels), times),
        ], hide_constant=False, pad=True, right={"bits_per_weight", "n_threads", "latency", "weight_gbps",
                                                 "pct_of_bandwidth", "speedup"})
    for note in table_notes(data):
        out += ["", md_text(note)]
    failures = ["- " + md_text(f"{r.model.get('name')} {r.model.get('format')} {r.workload['name']}: {r.error}")
                for r in records if r.status != "ok"]
    if failures:
        out += ["", "failed cases:"] + failures
    return "\n".join(out) + "\n"


def _without_samples(obj):
    if isinstance(obj, dict):
        return {k: _without_samples(v) for k, v in obj.items() if k not in SAMPLE_KEYS}
    return obj


def to_csv(records: list[Record]) -> str:
    """One row per case; raw samples and nested lists are left out (they are in the JSON)."""
    if not records:
        return ""
    df = pd.json_normalize([_without_samples(r.to_dict()) for r in records], sep=".")
    df = df[[c for c in df.columns if not df[c].map(lambda v: isinstance(v, (list, dict))).any()]]
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    return buf.getvalue()


def render(records: list[Record], fmt: str) -> str:
    if fmt == "md":
        return to_markdown(records)
    if fmt == "csv":
        return to_csv(records)
    if fmt == "json":
        return json.dumps([r.to_dict() for r in records], indent=2) + "\n"
    if fmt == "jsonl":
        return "".join(json.dumps(r.to_dict()) + "\n" for r in records)
    raise ValueError(f"unknown output format {fmt}")
