"""`bench hosts check lab.toml`, and `bench run --hosts lab.toml`: a suite on every host of an inventory."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from tritbench.cli.console import err, plain, stdout
from tritbench.fleet.controller import FleetEvents, check_hosts, run_fleet
from tritbench.fleet.inventory import load_inventory
from tritbench.plan.suite import RunConfig
from tritbench.reports.terminal import render
from tritbench.results.records import Record, read_records

app = typer.Typer(add_completion=False, no_args_is_help=True, help="The hosts of an inventory (lab.toml).")

Inventory = Annotated[Path, typer.Argument(help="Inventory TOML: [[hosts]] tables")]


def _gib(n: int | None) -> str:
    return f"{n / 2**30:.1f} GiB" if n else "?"


@app.command("check")
def check(inventory: Inventory,
          as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False) -> None:
    """Reach every host: its fingerprint (arch, page size, CPU, cores, RAM, governor, temperatures, Python)
    and what a bootstrap would do. Exit 2 when a host cannot be used."""
    hosts = load_inventory(inventory)
    with err.status(f"checking {len(hosts)} host(s)..."):
        results = check_hosts(hosts)
    if as_json:
        print(json.dumps([{"name": r["host"].name, **{k: v for k, v in r.items() if k != "host"}}
                          for r in results], indent=2))
    else:
        table = Table("host", "address", "status", "arch", "page", "cpu", "cores", "RAM", "governor", "max °C",
                      "python", "bootstrap", box=box.SIMPLE, pad_edge=False)
        for r in results:
            h = r["host"]
            if not r["ok"]:
                table.add_row(plain(h.name), plain(h.address), Text("unreachable", style="red"), *[""] * 8,
                              plain(r["error"].split(": ", 1)[-1]))
                continue
            p = r["probe"]
            temps = p.get("thermal_c") or {}
            table.add_row(plain(h.name), plain(h.address), Text("ok", style="green"), plain(p["arch"]),
                          plain(p["page_size"]), plain(p["cpu_model"] or "?"), plain(p["logical_cores"]),
                          plain(_gib(p["ram_bytes"])), plain(p["governor"] or "n/a"),
                          plain(f"{max(temps.values()):.0f}" if temps else "n/a"), plain(p["python"]),
                          plain(r["bootstrap"]))
        stdout().print(table)
        for r in results:
            for note in r.get("notes", []):
                err.print(Text("warning: ", style="yellow") + plain(f"{r['host'].name}: {note}"), soft_wrap=True)
    bad = [r for r in results if not r["ok"]]
    for r in bad:
        err.print(plain(f"bench: error: {r['error']}"), soft_wrap=True)
    if bad:
        raise typer.Exit(2)


class _Events(FleetEvents):
    def host(self, name: str, message: str) -> None:
        err.print(plain(f"{name}: {message}"), soft_wrap=True)

    def warning(self, name: str, message: str) -> None:
        err.print(Text("warning: ", style="yellow") + plain(f"{name}: {message}"), soft_wrap=True)


def run_on_hosts(inventory: Path, cfg: RunConfig, resume: bool) -> None:
    """`bench run --hosts`: every host in parallel; their records under --out, one file per host and run."""
    hosts = load_inventory(inventory)
    try:
        outcome = run_fleet(hosts, cfg, Path(cfg.out), resume=resume, events=_Events())
    except KeyboardInterrupt:
        err.print("interrupted: the hosts run on; `bench run --hosts ... --resume` re-attaches and collects")
        raise typer.Exit(130) from None
    records = [Record.from_dict(d) for d in read_records(outcome.files)] if outcome.files else []
    sys.stdout.write(render(records, cfg.output))
    for h in outcome.hosts:
        status = f"{h.status}" + (f", exit {h.exit_code}" if h.exit_code is not None else "")
        err.print(plain(f"{h.name}: {status}{': ' + h.message if h.message else ''}"), soft_wrap=True)
    err.print(plain(f"results: {', '.join(map(str, outcome.files)) or 'none'} (state: {outcome.state_path})"))
    if outcome.failed or any(r.status != "ok" for r in records):  # a failed or invalidated case
        raise typer.Exit(1)
