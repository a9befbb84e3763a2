"""One self-contained HTML report: plotly's JavaScript inlined once, every chart and table built from
`tritbench.reports.tables.ReportData`, every string that came from results escaped (in the page and in the charts:
plotly reads entities such as `&lt;` as text)."""

from __future__ import annotations

import html
import string
from collections.abc import Callable, Iterable

import pandas as pd
import plotly.graph_objects as go

from tritbench.reports.tables import ReportData, speedup_note, table_notes
from tritbench.reports.units import fmt, inert, si

# Provenance never shares a look: measured solid, estimated hatched, unavailable a labelled gap.
PROVENANCE_STYLE = {
    "measured": {"color": "#1b7837", "pattern": ""},
    "estimated": {"color": "#e08214", "pattern": "/"},
    "unavailable": {"color": "#999999", "pattern": ""},
}

PAGE = string.Template("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>$title</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1300px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f3f3f3; }
.note { color: #555; font-size: 0.9em; }
.status { font-size: 1.2em; padding: 1em; background: #fff4e5; border: 1px solid #e08214; }
.figure { margin: 0.5em 0 1.5em; }
</style></head>
<body>
<h1>$title</h1>
<p class="note">Sources: $sources</p>
$body
</body></html>
""")


def e(value: object) -> str:
    """Escape anything that came from results, for the page or a plotly label (control characters, which
    HTML does not allow, made inert too)."""
    return html.escape(inert(value), quote=True)


class _Figures:
    """Turns figures into HTML divs: the first carries plotly.js, the rest reuse it."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, fig: go.Figure, caption: str = "") -> str:
        fig.update_layout(template="plotly_white", margin={"t": 60, "b": 60, "l": 70, "r": 20},
                          legend={"orientation": "h", "y": -0.2}, showlegend=True)
        div = fig.to_html(full_html=False, include_plotlyjs=self.count == 0, config={"displaylogo": False},
                          default_height=420, div_id=f"fig{self.count}")
        self.count += 1
        note = f'<p class="note">{caption}</p>' if caption else ""
        return f'<div class="figure">{div}{note}</div>'


def render_html(data: ReportData, title: str = "tritbench report") -> str:
    """The report page as one HTML string."""
    figures = _Figures()
    parts: list[str] = []
    status = data.status_line
    if status:
        parts.append(f'<p class="status">{e(status)}</p>')
    parts.append(_summary(data))
    if len(data.cases):
        parts.append(_speed(data, figures))
        parts.append(_memory(data, figures))
    if data.n_ok:
        parts.append(_energy(data, figures))
        parts.append(_roofline(data, figures))
    if len(data.kernels):
        parts.append(_kernels(data, figures))
    if len(data.projections) and data.n_ok:
        parts.append(_projections(data, figures))
    parts.append(_machines(data))
    parts.append(_case_tables(data))
    sources = ", ".join(e(s) for s in data.sources) or "(none)"
    return PAGE.substitute(title=e(title), sources=sources, body="\n".join(parts))


# ---- tables ----------------------------------------------------------------------------------------------

Column = tuple[str, str, Callable[[object], str]]


def table(df: pd.DataFrame, columns: Iterable[Column]) -> str:
    """An HTML table of `df`: (column, header, formatter) each; every cell escaped."""
    columns = [c for c in columns if c[0] in df]
    if not len(df) or not columns:
        return '<p class="note">(none)</p>'
    head = "".join(f"<th>{e(h)}</th>" for _, h, _ in columns)
    rows = []
    for rec in df.to_dict("records"):
        cells = []
        for col, _, f in columns:
            v = rec.get(col)
            numeric = isinstance(v, (int, float)) and not isinstance(v, bool)
            cells.append(f'<td{" class=n" if numeric else ""}>{e(f(v))}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _s(v: object) -> str:
    return "—" if v is None or (isinstance(v, float) and v != v) else str(v)


def _tps(v: object) -> str:
    return fmt(v, "{:,.1f}")


def _x(v: object) -> str:
    return fmt(v, "{:.2f}", "x")


def _pct(v: object) -> str:
    return fmt(v, "{:.1f}", " %")


def _bytes(v: object) -> str:
    return si(v, "B")


def _joules(v: object) -> str:
    return si(v, "J")


def _summary(data: ReportData) -> str:
    out = ["<h2>Summary: FP16 against 1.58-bit</h2>"]
    h = data.headline
    if not len(h):
        out.append('<p class="note">No case pairs an f16 model with a 1.58-bit format on the same machine, '
                   "backend and test, so there is no headline comparison.</p>")
    else:
        for r in h.to_dict("records"):
            out.append(
                f"<p><b>{e(r['test'])}</b> on {e(r['machine'])} / {e(r['backend'])} / {e(r['model'])}: "
                f"{e(r['ternary_format'])} runs at {e(_tps(r['ternary_tokens_per_s']))} t/s against f16's "
                f"{e(_tps(r['f16_tokens_per_s']))} t/s (<b>{e(r['speedup_text'])}</b>), in a file "
                f"{e(_x(r['size_ratio']))} smaller; energy: f16 {e(r['f16_energy'])}, "
                f"{e(r['ternary_format'])} {e(r['ternary_energy'])}.</p>")
        out.append(table(h, [
            ("machine", "machine", _s), ("backend", "backend", _s), ("model", "model", _s), ("test", "test", _s),
            ("n_threads", "threads", _s), ("f16_tokens_per_s", "f16 t/s", _tps),
            ("ternary_format", "1.58-bit format", _s), ("ternary_tokens_per_s", "1.58-bit t/s", _tps),
            ("speedup_text", "speed-up", _s), ("size_ratio", "file size f16 / 1.58-bit", _x),
            ("f16_pct_of_roofline", "f16 % of roofline", _pct),
            ("ternary_pct_of_roofline", "1.58-bit % of roofline", _pct),
            ("f16_energy", "f16 energy", _s), ("ternary_energy", "1.58-bit energy", _s),
        ]))
    for note in table_notes(data):
        out.append(f'<p class="note">{e(note)}</p>')
    out.append(f'<p class="note">{data.n_records} record(s): {data.n_ok} measured, '
               f"{len(data.failures)} failed; {len(data.machines)} machine(s).</p>")
    return "\n".join(out)


def _machines(data: ReportData) -> str:
    return "<h2>Machines</h2>" + table(data.machines, [
        (c, c, _s) for c in ("machine", "id", "arch", "cpu_model", "isa", "cores", "ram", "os", "board", "hypervisor",
                             "records", "failed")])


def _case_tables(data: ReportData) -> str:
    out = ["<h2>Cases</h2>"]
    if len(data.cases):
        out.append("<h3>LLM cases</h3>" + table(data.cases, [
            ("machine", "machine", _s), ("backend", "backend", _s), ("model", "model", _s),
            ("format", "format", _s), ("bits_per_weight", "bits/w", lambda v: fmt(v, "{:.2f}")),
            ("file_bytes", "file", _bytes), ("test", "test", _s), ("n_threads", "threads", _s),
            ("tokens_per_s", "t/s (median)", _tps), ("tokens_per_s_q1", "q1", _tps), ("tokens_per_s_q3", "q3", _tps),
            ("speedup_text", "vs f16", _s), ("ttft_ms", "TTFT ms", lambda v: fmt(v, "{:.2f}")),
            ("peak_rss_bytes", "peak RSS", _bytes), ("roofline_tokens_per_s", "roofline t/s", _tps),
            ("pct_of_roofline", "% of roofline", _pct), ("energy_kind", "energy", _s),
            ("j_per_token", "J/token", _joules), ("modelled_j_per_token", "modelled J/token", _joules),
            ("path", "model path", _s),
        ]))
    if len(data.kernels):
        out.append("<h3>Kernel cases</h3>" + _kernel_table(data.kernels))
    out.append("<h3>Failures</h3>" + table(data.failures, [(c, c, _s) for c in
                                                          ("machine", "backend", "model", "format", "test", "error")]))
    return "\n".join(out)


def _kernel_table(df: pd.DataFrame) -> str:
    return table(df, [
        ("machine", "machine", _s), ("backend", "backend", _s), ("format", "format", _s),
        ("bits_per_weight", "bits/w", lambda v: fmt(v, "{:.2f}")), ("test", "test", _s),
        ("n_threads", "threads", _s), ("cache", "cache", _s), ("latency_ms", "latency ms", lambda v: fmt(v, "{:.4f}")),
        ("weight_gbps", "weight GB/s", lambda v: fmt(v, "{:.2f}")),
        ("read_gbps", "read GB/s", lambda v: fmt(v, "{:.2f}")),
        ("pct_of_bandwidth", "% of read bandwidth", _pct), ("speedup_text", "vs baseline", _s),
        ("energy_kind", "energy", _s),
    ])


# ---- charts ----------------------------------------------------------------------------------------------

def _series_key(df: pd.DataFrame, *cols: str) -> pd.Series:
    return df[list(cols)].astype(str).agg(" / ".join, axis=1)


def _case_key(df: pd.DataFrame, *cols: str) -> pd.Series:
    """format / test, led by the model name when the report holds more than one model."""
    lead = ("model",) if "model" in df and df["model"].nunique() > 1 else ()
    return _series_key(df, *lead, *cols)


def _bars_by(df: pd.DataFrame, x: pd.Series, y: str, by: pd.Series, err: tuple[str, str] | None = None
             ) -> list[go.Bar]:
    traces = []
    for name in sorted(by.unique()):
        sub = df[by == name]
        error_y = None
        if err:
            error_y = {"type": "data", "symmetric": False, "array": (sub[err[1]] - sub[y]).tolist(),
                       "arrayminus": (sub[y] - sub[err[0]]).tolist()}
        traces.append(go.Bar(x=[e(v) for v in x[by == name]], y=sub[y].tolist(), name=e(name), error_y=error_y))
    return traces


def _speed(data: ReportData, figures: _Figures) -> str:
    c = data.cases
    out = ["<h2>Speed</h2>"]
    who = _series_key(c, "machine", "backend")
    for kind, label in (("pp", "prompt processing"), ("tg", "text generation"), ("pg", "prompt + generation")):
        m = c["kind"] == kind
        if not m.any():
            continue
        sub = c[m]
        fig = go.Figure(_bars_by(sub, _case_key(sub, "format", "test"), "tokens_per_s", who[m],
                                 ("tokens_per_s_q1", "tokens_per_s_q3")))
        fig.update_layout(title=f"{label} ({kind}): tokens/s, median with q1–q3", barmode="group",
                          yaxis_title="tokens/s", xaxis_title="format / test")
        out.append(figures(fig))
    if c["ttft_ms"].notna().any():
        sub = c[c["ttft_ms"].notna()]
        fig = go.Figure(_bars_by(sub, _case_key(sub, "format", "test"), "ttft_ms", who[c["ttft_ms"].notna()]))
        fig.update_layout(title="Time to first token (median)", barmode="group", yaxis_title="ms")
        out.append(figures(fig))
    if c["speedup"].notna().any():
        sub = c[c["speedup"].notna()]
        fig = go.Figure(_bars_by(sub, _case_key(sub, "format", "test"), "speedup", who[c["speedup"].notna()],
                                 ("speedup_lo", "speedup_hi")))
        fig.add_hline(y=1, line_dash="dot", annotation_text="f16")
        fig.update_layout(title="Speed-up over f16 on the same machine and backend, with its interval "
                                "(machines side by side)", barmode="group", yaxis_title="× f16 tokens/s")
        out.append(figures(fig, "Each machine is normalised by its own f16 run, so machines compare fairly. "
                                + e(speedup_note(c) or "")))
    return "\n".join(out)


def _memory(data: ReportData, figures: _Figures) -> str:
    c = data.cases.copy()
    phases = [p for p in ("load", "prefill", "decode") if c[f"{p}_rss_bytes"].notna().any()]
    # One bar per model file and per machine/backend/format: RSS differs little across tests.
    g = c.groupby(["machine", "backend", "model", "format"], sort=False).agg(
        file_bytes=("file_bytes", "max"), peak_rss_bytes=("peak_rss_bytes", "max"),
        **{f"{p}_rss_bytes": (f"{p}_rss_bytes", "max") for p in phases}).reset_index()
    x = [e(v) for v in _series_key(g, "machine", "backend", "model", "format")]
    fig = go.Figure([go.Bar(x=x, y=(g["file_bytes"] / 2**20).tolist(), name="model file")])
    for p in phases:
        fig.add_bar(x=x, y=(g[f"{p}_rss_bytes"] / 2**20).tolist(), name=f"peak RSS during {p}")
    fig.add_bar(x=x, y=(g["peak_rss_bytes"] / 2**20).tolist(), name="peak RSS (whole case)")
    fig.update_layout(title="Memory: model file and peak resident set", barmode="group", yaxis_title="MiB")
    return "<h2>Memory</h2>" + figures(fig)


def _energy(data: ReportData, figures: _Figures) -> str:
    df = pd.concat([data.cases, data.kernels], ignore_index=True)
    df = df.assign(label=_series_key(df, "machine", "backend", "model", "format", "test"))
    cats = [e(v) for v in df["label"]]
    fig = go.Figure()
    for kind in ("measured", "estimated"):
        m = (df["energy_kind"] == kind) & df["j_per_token"].notna()
        style = PROVENANCE_STYLE[kind]
        fig.add_bar(x=[cats[i] for i in df.index[m]], y=df.loc[m, "j_per_token"].tolist(), name=f"{kind} J/token",
                    marker={"color": style["color"], "pattern": {"shape": style["pattern"]}},
                    hovertext=[e(f"{kind}: {d}") for d in df.loc[m, "energy_detail"]])
    gap = df.index[df["j_per_token"].isna()]
    # Unavailable is a gap with its reason, never a bar of height 0.
    fig.add_scatter(x=[cats[i] for i in gap], y=[None] * len(gap), mode="markers", name="unavailable: no bar",
                    marker={"color": PROVENANCE_STYLE["unavailable"]["color"], "symbol": "x"})
    for i in gap:
        fig.add_annotation(x=cats[i], y=0.05, yref="paper", text="unavailable", textangle=-90, showarrow=False,
                           font={"color": "#777"}, hovertext=e(df.loc[i, "energy_detail"] or "no reading"))
    fig.update_xaxes(categoryorder="array", categoryarray=cats)
    fig.update_layout(title="Energy per token, by provenance (measured solid, estimated hatched, unavailable gap)",
                      yaxis_title="J/token", barmode="group")
    if not df["j_per_token"].notna().any():
        fig.update_yaxes(range=[0, 1], showticklabels=False)
    counts = df["energy_kind"].value_counts()
    reasons = sorted({d for d in df.loc[df["energy_kind"] == "unavailable", "energy_detail"] if d})
    caption = ("Provenance: " + ", ".join(f"{counts.get(k, 0)} {k}" for k in PROVENANCE_STYLE)
               + "." + (" Unavailable because: " + "; ".join(e(r) for r in reasons) if reasons else ""))
    body = figures(fig, caption)
    modelled = data.cases[data.cases["modelled_j_per_token"].notna()] if len(data.cases) else data.cases
    if len(modelled):
        fig2 = go.Figure(_bars_by(modelled, _case_key(modelled, "format", "test"), "modelled_j_per_token",
                                  _series_key(modelled, "machine", "backend")))
        fig2.update_layout(title="Modelled energy per token (cost model, node "
                                 f"{e(data.node)}): estimated, not measured", barmode="group",
                           yaxis_title="J/token (modelled)")
        fig2.update_traces(marker_pattern_shape="/")
        body += figures(fig2, "Provenance: estimated by the cost model (arithmetic + data movement).")
    return "<h2>Energy</h2>" + body


def _roofline(data: ReportData, figures: _Figures) -> str:
    df = pd.concat([data.cases, data.kernels], ignore_index=True)
    df = df[df["bytes_per_token"].notna() & df["tokens_per_s"].notna()]
    if not len(df):
        return ('<h2>Roofline</h2><p class="note">No case has a bytes-per-token figure from the cost model, so '
                "there is no roofline chart.</p>")
    fig = go.Figure()
    lo, hi = df["bytes_per_token"].min() / 2, df["bytes_per_token"].max() * 2
    notes = []
    for label, bw in sorted(data.bandwidths.items()):
        if bw["gbps"]:
            xs = [lo, hi]
            fig.add_scatter(x=xs, y=[bw["gbps"] * 1e9 / v for v in xs], mode="lines", line={"dash": "dash"},
                            name=e(f"bound {label}: {bw['gbps']:.1f} GB/s"))
        notes.append(f"{e(label)}: {e(fmt(bw['gbps'], '{:.1f}', ' GB/s'))} ({e(bw['source'])})")
    for name, g in df.groupby(_series_key(df, "machine", "backend", "kind"), sort=True):
        fig.add_scatter(x=g["bytes_per_token"].tolist(), y=g["tokens_per_s"].tolist(), mode="markers+text",
                        name=e(name), text=[e(f) for f in g["format"]], textposition="top center")
    fig.update_xaxes(type="log", title="bytes read per token (cost model)")
    fig.update_yaxes(type="log", title="measured tokens/s")
    fig.update_layout(title="Roofline: measured points against the memory-bandwidth bound")
    body = figures(fig, "Bandwidth per machine: " + "; ".join(notes))
    pct = df[df["pct_of_roofline"].notna()]
    if len(pct):
        fig2 = go.Figure(_bars_by(pct, _case_key(pct, "format", "test"), "pct_of_roofline",
                                  _series_key(pct, "machine", "backend")))
        fig2.update_layout(title="% of roofline per case (machines side by side)", barmode="group",
                           yaxis_title="% of bandwidth bound")
        body += figures(fig2)
    return "<h2>Roofline</h2>" + body


def _kernels(data: ReportData, figures: _Figures) -> str:
    k = data.kernels
    x = _series_key(k, "format", "test", "cache")
    who = _series_key(k, "machine", "backend")
    fig = go.Figure(_bars_by(k, x, "weight_gbps", who))
    fig.update_layout(title="Kernels: weight bytes streamed per second", barmode="group", yaxis_title="GB/s")
    fig2 = go.Figure(_bars_by(k, x, "pct_of_bandwidth", who))
    fig2.update_layout(title="Kernels: % of measured read bandwidth", barmode="group", yaxis_title="%")
    return "<h2>Kernels</h2>" + figures(fig) + figures(fig2) + _kernel_table(k)


def _projections(data: ReportData, figures: _Figures) -> str:
    p = data.projections
    fig = go.Figure()
    for f, g in p.groupby("format", sort=False):
        fig.add_bar(x=g["size"].tolist(), y=g["total_j_per_token"].tolist(), name=e(f),
                    marker={"pattern": {"shape": "/"}})
    fig.update_layout(title=f"Cost model: energy per token by model size (estimated, node {e(data.node)})",
                      barmode="group", yaxis_type="log", yaxis_title="J/token (modelled)", xaxis_title="model size")
    body = figures(fig, "Provenance: estimated by the cost model, not measured.")
    roof_cols = [c for c in p if c.startswith("roofline_tokens_per_s @ ")]
    for col in roof_cols:
        fig2 = go.Figure()
        for f, g in p.groupby("format", sort=False):
            fig2.add_bar(x=g["size"].tolist(), y=g[col].tolist(), name=e(f))
        label = col.removeprefix("roofline_tokens_per_s @ ")
        fig2.update_layout(title=e(f"Projected decode roofline by model size on {label}"), barmode="group",
                           yaxis_type="log", yaxis_title="tokens/s (bound)")
        body += figures(fig2)
    cols: list[Column] = [("size", "size", _s), ("n_params", "params", lambda v: si(v, "")),
                          ("format", "format", _s), ("bits_per_weight", "bits/w", lambda v: fmt(v, "{:.3g}")),
                          ("memory_bytes", "weights", _bytes), ("bytes_per_token", "bytes/token", _bytes),
                          ("paper_j_per_token", "paper J/token", _joules), ("total_j_per_token", "J/token", _joules),
                          ("total_vs_fp16", "x less than f16", lambda v: fmt(v, "{:.1f}"))]
    cols += [(c, c.replace("roofline_tokens_per_s", "roofline t/s"), _tps) for c in roof_cols]
    return "<h2>Cost-model projections by model size</h2>" + body + table(p, cols)
