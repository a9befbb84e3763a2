"""A compact markdown summary for a CI job summary: the headline, one line per case, energy provenance and
failures; every speed-up with its interval. Cells come from results, so pipes and newlines are neutralised."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from tritbench.reports.tables import ReportData, table_notes
from tritbench.reports.units import fmt, inert


def md_text(value: object) -> str:
    """One inert cell: no control character, no pipe that ends it, no tag, link or image markup."""
    text = inert(value).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("![", "!\\[").replace("](", "]\\(")


def md_table(df: pd.DataFrame, columns: Iterable[tuple[str, str, object]], hide_constant: bool = True,
             pad: bool = False, right: set[str] | None = None, keep: set[str] | None = None) -> list[str]:
    """(column, header, formatter) -> markdown lines. As llama-bench does, a column whose value never changes
    (over two rows or more) is left out of the table and stated once above it (`hide_constant`), except those
    in `keep`. Numeric columns (or those in `right`) are right-aligned; `pad` pads cells to the column width
    for a terminal."""
    columns = [c for c in columns if c[0] in df]
    fixed = []
    if hide_constant and len(df) > 1:
        fixed = [c for c in columns if df[c[0]].astype(str).nunique() == 1 and c[0] not in (keep or ())]
        columns = [c for c in columns if c not in fixed] or columns
    lines = []
    if fixed:
        first = df.iloc[0]
        lines += ["All rows: " + ", ".join(f"{h} {md_text(f(first[c]) if f else first[c])}" for c, h, f in fixed), ""]
    heads = [h for _, h, _ in columns]
    rows = [[md_text(f(rec[c]) if f else rec[c]) for c, _, f in columns] for rec in df.to_dict("records")]
    aligned = [c in right if right is not None else df[c].dtype.kind in "fi" for c, _, _ in columns]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if pad else 4 if r else 3
              for i, (h, r) in enumerate(zip(heads, aligned, strict=True))]

    def line(cells: list[str]) -> str:
        if not pad:
            return "| " + " | ".join(cells) + " |"
        padded = (c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, aligned, strict=True))
        return "| " + " | ".join(padded) + " |"

    sep = ["-" * (w - 1) + ":" if r else "-" * w for w, r in zip(widths, aligned, strict=True)]
    return lines + [line(heads), line(sep)] + [line(r) for r in rows]


def render_markdown(data: ReportData, title: str = "tritbench report") -> str:
    """The summary as a markdown string."""
    out = [f"## {md_text(title)}", ""]
    if data.status_line:
        out += [f"**{data.status_line}**", ""]
    out.append(f"{data.n_records} record(s): {data.n_ok} measured, {len(data.failures)} failed; "
               f"{len(data.machines)} machine(s).")
    out.append("")
    if len(data.headline):
        out += ["### FP16 vs 1.58-bit", ""]
        out += md_table(data.headline, [
            ("machine", "machine", None), ("backend", "backend", None), ("model", "model", None),
            ("test", "test", None), ("f16_tokens_per_s", "f16 t/s", lambda v: fmt(v)),
            ("ternary_format", "1.58-bit", None), ("ternary_tokens_per_s", "1.58-bit t/s", lambda v: fmt(v)),
            ("speedup_text", "speed-up", None),
            ("size_ratio", "smaller file", lambda v: fmt(v, "{:.2f}", "x")),
            ("ternary_energy", "1.58-bit energy", None),
        ])
        out.append("")
    if len(data.cases):
        out += ["### LLM cases", ""]
        out += md_table(data.cases, [
            ("machine", "machine", None), ("backend", "backend", None), ("model", "model", None),
            ("format", "format", None), ("test", "test", None), ("tokens_per_s", "t/s", lambda v: fmt(v)),
            ("speedup_text", "vs f16", None),
            ("pct_of_roofline", "% roofline", lambda v: fmt(v, "{:.1f}")), ("energy_kind", "energy", None),
        ])
        out.append("")
    if len(data.kernels):
        out += ["### Kernel cases", ""]
        out += md_table(data.kernels, [
            ("machine", "machine", None), ("backend", "backend", None), ("format", "format", None),
            ("test", "test", None), ("latency_ms", "latency ms", lambda v: fmt(v, "{:.4f}")),
            ("weight_gbps", "GB/s", lambda v: fmt(v, "{:.2f}")),
            ("pct_of_bandwidth", "% read bw", lambda v: fmt(v, "{:.1f}")),
            ("speedup_text", "vs baseline", None),
        ])
        out.append("")
    for note in table_notes(data):
        out += [md_text(note), ""]
    if data.n_ok:
        both = pd.concat([data.cases, data.kernels], ignore_index=True)
        counts = both["energy_kind"].value_counts()
        reasons = sorted({d for d in both.loc[both["energy_kind"] == "unavailable", "energy_detail"] if d})
        line = "Energy: " + ", ".join(f"{counts.get(k, 0)} {k}" for k in ("measured", "estimated", "unavailable"))
        out += [md_text(line + (f" ({'; '.join(reasons)})" if reasons else "")), ""]
    if len(data.failures):
        out += ["### Failures", ""]
        out += md_table(data.failures, [(c, c, None) for c in ("backend", "model", "format", "test", "error")])
        out.append("")
    return "\n".join(out)
