"""The `bench` command: thin typer commands over the library (plan, execute, results, analysis, reports).

Errors in the user's input end as one line on stderr and exit code 2; a run whose cases failed
exits 1 after writing every record; Ctrl-C exits 130 after writing what was measured.
"""

from __future__ import annotations

import sys

import typer

from tritbench.cli import listing, machine, models, run
from tritbench.cli.cost import cost
from tritbench.cli.report import report
from tritbench.errors import BenchError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Benchmark ternary (1.58-bit) LLMs.")
app.command("run")(run.run)
app.add_typer(models.app, name="models")
app.add_typer(listing.app, name="list")
app.command("machine")(machine.machine)
app.command("cost")(cost)
app.command("report")(report)


def main() -> None:
    """Entry point: one-line errors and fixed exit codes instead of tracebacks."""
    from tritbench.models import ModelError

    try:
        app()  # standalone: usage errors exit 2 and typer.Exit sets the code
    except (BenchError, ModelError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        sys.exit(2)
