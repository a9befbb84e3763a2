"""`bench report`: one self-contained HTML page (or a markdown summary) from result files."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated

import typer

from tritbench.cli import db as db_flags
from tritbench.cli.console import warn_skipped
from tritbench.costmodel.errors import CostModelError
from tritbench.errors import BenchError, ConfigError


def report(
    results: Annotated[list[Path] | None, typer.Argument(help="Results files (run-*.jsonl) or folders")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="File to write (default: stdout)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="html or md")] = "html",
    bandwidth: Annotated[float | None, typer.Option("--bandwidth", help="Read bandwidth for LLM rooflines, GB/s")]
    = None,
    node: Annotated[str, typer.Option("--node", help="Process node of the energy table: 7nm or 45nm")] = "7nm",
    title: Annotated[str, typer.Option("--title", help="Page title")] = "tritbench report",
    history: Annotated[bool, typer.Option("--history", help="Also report the results history (bench db)")] = False,
    db: db_flags.Db = None,
    store: db_flags.Store = None,
    machine: db_flags.Machine = None,
    model: db_flags.Model = None,
    backend: db_flags.Backend = None,
    since: db_flags.Since = None,
) -> None:
    """Report on results: speed, memory, energy with provenance, roofline, projections, kernels, machines."""
    from tritbench.reports.html import render_html
    from tritbench.reports.markdown import render_markdown
    from tritbench.reports.tables import from_records
    from tritbench.results.records import read_records

    kind = fmt.lower()
    if kind not in ("html", "md"):
        raise ConfigError(f"--format must be html or md, got {fmt!r}")
    if bandwidth is not None and not (math.isfinite(bandwidth) and bandwidth > 0):
        raise ConfigError(f"--bandwidth must be a positive number of GB/s, got {bandwidth}")
    results = results or []
    use_history = history or db is not None or store is not None
    if not results and not use_history:
        raise ConfigError("name results files or folders, or --history (the results history of `bench db`)")
    if not use_history and any(v is not None for v in (machine, model, backend, since)):
        raise ConfigError("--machine, --model, --backend and --since filter the history: add --history")
    for p in results:
        if not p.exists():
            raise ConfigError(f"results file or folder not found: {p}")
    problems: list[str] = []
    records = read_records(results, problems) if results else []
    sources = [str(p) for p in results]
    if use_history:
        past = db_flags.history_store(db, store)
        held = {(r["run_id"], r["case_id"]) for r in records}  # a run named as a file and also ingested: once
        records += [r for r in past.records(db_flags.filters(machine, model, backend, since))
                    if (r["run_id"], r["case_id"]) not in held]
        sources.append(f"history {past.location}")
    try:
        data = from_records(records, bandwidth, node, sources=sources)
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
