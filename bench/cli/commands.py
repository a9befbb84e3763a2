"""The commands of `bench`, registered on one typer app (tritbench.cli.main runs it)."""

from __future__ import annotations

import typer

from tritbench.cli import compare, db, hosts, listing, machine, models, run
from tritbench.cli.cost import cost
from tritbench.cli.gate import gate, trials
from tritbench.cli.report import report

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Benchmark ternary (1.58-bit) LLMs.")
app.command("run")(run.run)
app.add_typer(models.app, name="models")
app.add_typer(listing.app, name="list")
app.command("machine")(machine.machine)
app.command("cost")(cost)
app.command("report")(report)
app.command("gate")(gate)
app.add_typer(trials, name="gate-trials")
app.command("compare")(compare.compare)
app.add_typer(db.app, name="db")
app.add_typer(hosts.app, name="hosts")
