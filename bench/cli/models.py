"""`bench models list|synth|info`: the synthetic presets and model files."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from tritbench.cli.console import err, plain, split, stdout

app = typer.Typer(no_args_is_help=True, help="Synthetic model presets and model files.")


@app.command("list")
def models_list() -> None:
    """Show the synthetic model presets.

    Wherever a preset name is taken, PRESET@FIELD=VALUE changes a field of it, and more @FIELD=VALUE may
    follow: small@layers=21, tiny@hidden=512@ffn=1024. Fields: arch, hidden, layers, ffn, heads, kv_heads,
    vocab, n_ctx, seed, embd_type, output_type.
    """
    from tritbench.models import PRESETS

    table = Table(box=box.SIMPLE, padding=(0, 1), pad_edge=False)
    table.add_column("preset", no_wrap=True)
    for col in ("arch", "params", "hidden", "layers", "ffn", "heads", "kv", "vocab", "ctx"):
        table.add_column(col)
    for name, s in PRESETS.items():
        table.add_row(name, s.arch, f"{s.n_params() / 1e6:.0f}M", str(s.hidden), str(s.layers), str(s.ffn),
                      str(s.heads), str(s.kv_heads), str(s.vocab), str(s.n_ctx))
    stdout().print(table)


@app.command("synth")
def models_synth(
    presets: Annotated[str, typer.Argument(help="Presets (PRESET or PRESET@FIELD=VALUE...), comma-separated")],
    formats: Annotated[str, typer.Option("-f", "--formats")] = "f16,q8_0,q4_0,tq1_0,tq2_0",
    embd_type: Annotated[str | None, typer.Option("--embd-type", help="Token-embedding type")] = None,
    output_type: Annotated[str | None, typer.Option("--output-type", help="Output-matrix type")] = None,
) -> None:
    """Write (or find cached) GGUF files for presets; prints their paths."""
    from tritbench.models import preset_spec, resolve_model
    from tritbench.models.synth import synthesize_many

    for name in split(presets) or []:
        preset_spec(name)  # a file path is not a preset: say so rather than read it
        variants = resolve_model(name, split(formats) or [], embd_type=embd_type, output_type=output_type)
        with err.status(f"synthesizing {variants[0].name}..."):
            paths = synthesize_many(variants[0].spec, [v.format for v in variants])
        for fmt, path in paths.items():
            print(f"{variants[0].name}\t{fmt}\t{path}")


@app.command("info")
def models_info(
    model: Annotated[str, typer.Argument(help="A GGUF path, or a preset (PRESET or PRESET@FIELD=VALUE...) with -f")],
    fmt: Annotated[str, typer.Option("-f", "--format", help="Format, for a preset")] = "tq2_0",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Read a model file's metadata: architecture, parameters, tensor types, bits per weight, sha256."""
    from tritbench.models import read_model_info, resolve_model

    (variant,) = resolve_model(model, [fmt])[:1]
    info = read_model_info(str(variant.ensure())).to_dict()
    if as_json:
        print(json.dumps(info, indent=2))
        return
    table = Table("field", "value", show_header=False)
    for k, v in info.items():
        table.add_row(plain(k), plain(json.dumps(v) if isinstance(v, (dict, list)) else v))
    stdout().print(table)
