"""`bench report`: one self-contained HTML page (or a markdown summary) from result files."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated

import typer

from tritbench.cli.console import warn_skipped
from tritbench.costmodel.errors import CostModelError
from tritbench.errors import BenchError, ConfigError


def report(
    results: Annotated[list[Path], typer.Argument(help="Results files (run-*.jsonl) or folders")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="File to write (default: stdout)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="html or md")] = "html",
    bandwidth: Annotated[float | None, typer.Option("--bandwidth", help="Read bandwidth for LLM rooflines, GB/s")]
    = None,
    node: Annotated[str, typer.Option("--node", help="Process node of the energy table: 7nm or 45nm")] = "7nm",
    title: Annotated[str, typer.Option("--title", help="Page title")] = "tritbench report",
) -> None:
    """Report on results: speed, memory, energy with provenance, roofline, projections, kernels, machines."""
    from tritbench.reports.html import render_html
    from tritbench.reports.markdown import render_markdown
    from tritbench.reports.tables import build_data

    kind = fmt.lower()
    if kind not in ("html", "md"):
        raise ConfigError(f"--format must be html or md, got {fmt!r}")
    if bandwidth is not None and not (math.isfinite(bandwidth) and bandwidth > 0):
        raise ConfigError(f"--bandwidth must be a positive number of GB/s, got {bandwidth}")
    for p in results:
        if not p.exists():
            raise ConfigError(f"results file or folder not found: {p}")
    problems: list[str] = []
    try:
        data = build_data(results, bandwidth, node, problems)
    except CostModelError as exc:  # e.g. an unknown --node
        raise ConfigError(str(exc)) from None
    warn_skipped(problems)
    text = render_html(data, title) if kind == "html" else render_markdown(data, title)
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise BenchError(f"cannot write report {output}: {exc.strerror or exc}") from None
    print(f"report: {output}", file=sys.stderr)
