"""`bench cost`: the cost model of a model shape per weight format, the papers' energy model beside ours,
projections for the papers' model sizes, and (with --results) measured cases against their roofline."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tritbench.cli.console import err, plain, stdout, warn_skipped
from tritbench.costmodel.errors import CostModelError
from tritbench.errors import ConfigError, read_user_text
from tritbench.reports.units import fmt, inert, si

_FLAGS = ("hidden", "layers", "ffn", "ffn_mats", "heads", "kv_heads", "head_dim", "vocab", "seq")


def cost(
    model: Annotated[str | None, typer.Option("-m", "--model", help="Preset name or GGUF file")] = None,
    hidden: Annotated[int | None, typer.Option("--hidden", help="Hidden size")] = None,
    layers: Annotated[int | None, typer.Option("--layers", help="Transformer blocks")] = None,
    ffn: Annotated[int | None, typer.Option("--ffn", help="FFN width")] = None,
    ffn_mats: Annotated[int | None, typer.Option("--ffn-mats", help="FFN matrices per block: 3 gated, 2 plain")] = None,
    heads: Annotated[int | None, typer.Option("--heads", help="Attention heads")] = None,
    kv_heads: Annotated[int | None, typer.Option("--kv-heads", help="K/V heads (default: heads)")] = None,
    head_dim: Annotated[int | None, typer.Option("--head-dim", help="Head size (default: hidden/heads)")] = None,
    vocab: Annotated[int | None, typer.Option("--vocab", help="Vocabulary size")] = None,
    seq: Annotated[int | None, typer.Option("--seq", help="Sequence length / KV depth (default 512)")] = None,
    node: Annotated[str, typer.Option("--node", help="Process node of the energy table: 7nm or 45nm")] = "7nm",
    bandwidth: Annotated[float | None, typer.Option("--bandwidth", help="Your read bandwidth, GB/s")] = None,
    no_probe: Annotated[bool, typer.Option("--no-probe", help="Do not measure this machine's bandwidth")] = False,
    energy_file: Annotated[Path | None, typer.Option("--energy-table", help="TOML overriding the energy table")]
    = None,
    results: Annotated[list[Path] | None, typer.Option("--results", help="Results file or folder (repeatable)")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Energy and roofline cost model: FP16 vs Q4_0 vs TQ2_0 vs TQ1_0, the BitNet papers' model beside ours."""
    try:
        from tritbench.costmodel import cost_report, energy_table, join_results

        flags = {"hidden": hidden, "layers": layers, "ffn": ffn, "ffn_mats": ffn_mats, "heads": heads,
                 "kv_heads": kv_heads, "head_dim": head_dim, "vocab": vocab, "seq": seq}
        arch, zero_fraction, zero_source = resolve_arch(model, flags)
        table = energy_table(node, read_user_text(energy_file, "energy table") if energy_file else None)
        if bandwidth is not None and not (math.isfinite(bandwidth) and bandwidth > 0):
            raise ConfigError(f"--bandwidth must be a positive number of GB/s, got {bandwidth}")
        frames = _check_results(results)
        probed = None if no_probe else _probe()
        bandwidths = {"probed": probed["gbps"] if probed else None, "user": bandwidth}
        report = cost_report(arch, table, bandwidths, zero_fraction, zero_source)
        report["bandwidth_probe"] = probed
        if frames is not None:
            joined = join_results(frames, bandwidth or bandwidths["probed"], table, _file_zero_fractions(frames))
            report["measured"] = measured_rows(joined)
        if as_json:
            print(json.dumps(_json_safe(report), indent=2))
            return
        render(report, stdout(width=120))  # the tables are laid out for 120 columns
    except CostModelError as exc:  # the model's inputs came from these flags and files
        raise ConfigError(str(exc)) from None


def resolve_arch(model: str | None, flags: dict[str, int | None]):
    """(Arch, zero fraction, its source) from -m PRESET|FILE and/or explicit flags; ConfigError if neither."""
    from tritbench.costmodel import PAPER_SEQ, Arch, from_spec
    from tritbench.models import PRESETS, ModelError

    given = {k: v for k, v in flags.items() if v is not None}
    for k, v in given.items():
        if v <= 0:
            raise ConfigError(f"--{k.replace('_', '-')} must be a positive integer, got {v}")
    seq = given.pop("seq", PAPER_SEQ)
    zero_fraction, zero_source = None, None
    if model is not None:
        name = model.strip()
        if name.lower() in PRESETS:
            from tritbench.costmodel.adapters import preset_zero_fraction

            spec = PRESETS[name.lower()]
            arch = from_spec(spec, seq)
            zero_fraction, zero_source = preset_zero_fraction(spec), "measured: the preset's synthetic weights"
        else:
            path = Path(name).expanduser()
            if not path.exists():
                raise ConfigError(f"unknown model {name!r}: not a preset ({', '.join(PRESETS)}) nor an existing file")
            from tritbench.costmodel.adapters import gguf_zero_fraction, read_gguf_arch

            try:
                arch, _ = read_gguf_arch(path, seq)
                zero_fraction = gguf_zero_fraction(path)
            except ModelError as exc:
                raise ConfigError(str(exc)) from None
            zero_source = f"measured: {path.name} (first rows of every linear tensor)" if zero_fraction else None
        if given:
            if "head_dim" not in given and ("hidden" in given or "heads" in given):
                given["head_dim"] = given.get("hidden", arch.hidden) // given.get("heads", arch.heads) or 1
            arch = arch.replace(**given, name=f"{arch.name}+flags", source=f"{arch.source} with flags")
        return arch, zero_fraction, zero_source
    missing = [f"--{k.replace('_', '-')}" for k in ("hidden", "layers", "ffn", "heads", "vocab") if k not in given]
    if missing:
        raise ConfigError(f"give -m PRESET|FILE or the architecture flags (missing: {', '.join(missing)})")
    given.setdefault("kv_heads", given["heads"])
    given.setdefault("head_dim", given["hidden"] // given["heads"] or 1)
    return Arch(name="custom", seq=seq, source="flags", **given), None, None


def _check_results(paths: list[Path] | None):
    if not paths:
        return None
    from tritbench.errors import BenchError
    from tritbench.results.records import load_results

    for p in paths:
        if not p.exists():
            raise ConfigError(f"results file or folder not found: {p}")
    problems: list[str] = []
    try:
        frame = load_results(paths, problems)
    except BenchError as exc:
        raise ConfigError(str(exc)) from None
    warn_skipped(problems)
    return frame


def _probe() -> dict:
    from tritbench.machine import physical_cores
    from tritbench.measure.bandwidth import read_bandwidth

    cores = physical_cores()
    with err.status(f"probing read bandwidth with {cores} thread(s)..."):
        return read_bandwidth(cores)


def _file_zero_fractions(df) -> dict[str, float]:
    """Measured zero fraction of each existing model file the records name."""
    from tritbench.costmodel.adapters import gguf_zero_fraction
    from tritbench.models import ModelError

    out: dict[str, float] = {}
    if "model.path" not in df:
        return out
    for path in {p for p in df["model.path"].dropna().unique() if isinstance(p, str)}:
        try:
            z = gguf_zero_fraction(path) if Path(path).is_file() else None
        except (ModelError, OSError):
            z = None
        if z is not None:
            out[path] = z
    return out


_MEASURED_COLUMNS = {
    "model.name": "model", "model.format": "format", "workload.name": "test", "backend.name": "backend",
    "settings.n_threads": "n_threads", "metrics.tokens_per_s.median": "tokens_per_s",
}


def measured_rows(joined) -> list[dict]:
    """The joined DataFrame's identifying columns and cost columns as plain dicts (NaN -> None)."""
    from tritbench.costmodel import COST_COLUMNS

    rows = []
    for rec in joined.to_dict("records"):
        row = {short: rec.get(col) for col, short in _MEASURED_COLUMNS.items()}
        row.update({col.removeprefix("cost."): rec.get(col) for col in COST_COLUMNS})
        rows.append(_json_safe(row))
    return rows


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalars
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def render(report: dict, console: Console) -> None:
    """Print the report as rich tables laid out for 120 columns."""
    a, p = report["arch"], report["paper"]
    bw = report["bandwidth_gbps"]
    sp = report["sparsity"]
    zeros = "—" if sp["zero_fraction"] is None else f"{100 * sp['zero_fraction']:.1f} %"
    # names and sources come from model files: printed as plain text, never as markup
    console.print(Text(inert(a["name"]), style="bold") + plain(
        f" ({a['source']}): hidden {a['hidden']}, {a['layers']} layers, ffn {a['ffn']} x"
        f"{a['ffn_mats']}, heads {a['heads']}/{a['kv_heads']} x {a['head_dim']}, vocab {a['vocab']}, seq {a['seq']}, "
        f"{si(a['n_params'], '').strip()} params"
    ))
    console.print(plain(f"energy table {report['node']}; zero weights {zeros} ({sp['source']})"))
    console.print(
        f"BitNet papers' model, arithmetic of one {p['seq']}-token sequence: FP16 {si(p['fp16_joules'], 'J')}, "
        f"ternary {si(p['ternary_joules'], 'J')}, {p['ratio']:.1f}x; per operation {report['per_op_ratio']:.1f}x"
    )
    bw_label = {k: f"t/s {k}\n@{v:.3g} GB/s" if v else f"t/s {k}\n(none)" for k, v in bw.items()}
    console.print(_format_table(report["formats"], bw_label, f"Per format, per token at depth {a['seq']}"))
    if "projections" in report:
        console.print(_format_table(report["projections"], bw_label, "Projections: the papers' model sizes",
                                    by_size=True))
    if "measured" in report:
        console.print(_measured_table(report["measured"]))
    mix = ", ".join(f"{k} {v:g}" for k, v in report["energy_table"]["memory_mix"].items())
    console.print("arith: arithmetic only; +data: with data movement (bytes/token x pJ/byte, memory mix "
                  f"{mix}); x: times less energy than f16; paper: the BitNet papers' model / seq; GB = 1e9 B.",
                  style="dim")


def _format_table(rows: list[dict], bw_label: dict[str, str], title: str, by_size: bool = False) -> Table:
    t = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, title_justify="left")
    if by_size:
        t.add_column("size", no_wrap=True)
    t.add_column("format", no_wrap=True)
    if not by_size:
        t.add_column("bits\n/weight", justify="right", no_wrap=True)
    names = ("memory", "bytes\n/token", *bw_label.values(), "paper\nJ/token", "arith\nJ/token", "+data\nJ/token",
             "x\narith", "x\ntotal")
    for name in names:
        t.add_column(name, justify="right", no_wrap=True)
    for i, r in enumerate(rows):
        cells = [r["size"]] if by_size else []
        cells.append(r["format"])
        if not by_size:
            cells.append(f"{r['bits_per_weight']:g}")
        cells += [si(r["memory_bytes"], "B"), si(r["bytes_per_token"], "B")]
        cells += [fmt(r["roofline_tokens_per_s"][k], "{:,.1f}") for k in bw_label]
        cells += [si(r["paper_j_per_token"], "J"), si(r["arith_j_per_token"], "J"), si(r["total_j_per_token"], "J")]
        cells += [f"{r['arith_vs_fp16']:.1f}", f"{r['total_vs_fp16']:.1f}"]
        last_of_size = by_size and (i + 1 == len(rows) or rows[i + 1]["size"] != r["size"])
        t.add_row(*cells, end_section=last_of_size)
    return t


def _measured_table(rows: list[dict]) -> Table:
    t = Table(title="Measured cases against the model", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False,
              title_justify="left")
    for name in ("backend", "model", "format", "test", "t/s", "roofline\nt/s", "% of\nroofline", "modelled\nJ/token",
                 "measured\nJ/token", "note"):
        t.add_column(name, justify="left" if name in ("backend", "model", "format", "test", "note") else "right")
    for r in rows:
        t.add_row(
            plain(r["backend"] or "—"), plain(r["model"]), plain(r["format"]), plain(r["test"]),
            fmt(r["tokens_per_s"], "{:,.1f}"),
            fmt(r["roofline_tokens_per_s"], "{:,.1f}"), fmt(r["pct_of_roofline"], "{:.1f} %"),
            si(r["modelled_j_per_token"], "J"), si(r["measured_j_per_token"], "J"), plain(r["note"] or ""),
        )
    return t
