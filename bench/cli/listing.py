"""`bench list backends`: what this installation can run."""

from __future__ import annotations

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from tritbench import plugin
from tritbench.cli.console import plain, stdout
from tritbench.errors import ConfigError
from tritbench.plan.profiles import BUILTIN
from tritbench.reports.units import inert

app = typer.Typer(no_args_is_help=True, help="List what this installation has.")


@app.command("backends")
def list_backends() -> None:
    """Installed backends with their formats, workload kinds and options."""
    backends = Table("backend", "formats", "workloads", box=box.SIMPLE, padding=(0, 1), pad_edge=False)
    options = Table("backend", "option", "default", "meaning", box=box.SIMPLE, padding=(0, 1), pad_edge=False)
    for name in sorted(plugin.available()):
        try:
            cls = plugin.load(name)
        except ConfigError as exc:
            backends.add_row(plain(name), Text(inert(exc), style="red"), "")
            continue
        backends.add_row(plain(name), plain(", ".join(cls.formats)), plain(", ".join(cls.workload_kinds)))
        for key, o in cls.options.items():
            options.add_row(plain(name), plain(key), plain("auto" if o.default is None else o.default), plain(o.help))
    stdout().print(backends, options)


@app.command("profiles")
def list_profiles() -> None:
    """Built-in edge profiles (`bench run --profile NAME`): the board each imitates and what it cannot."""
    table = Table("profile", "cpus", "memory", "threads", "imitates", "cannot imitate", box=box.SIMPLE,
                  padding=(0, 1), pad_edge=False)
    for p in BUILTIN.values():
        memory = f"{p.memory_bytes / (1 << 30):g} GiB" if p.memory_bytes else "-"
        cpus = f"{p.cpus} (at most this machine's)" if p.cap_to_machine else str(p.cpus)
        table.add_row(plain(p.name), plain(cpus), plain(memory), plain(p.threads or "-"),
                      plain(p.imitates or "no particular board"), plain("; ".join(p.cannot_imitate)))
    stdout().print(table, plain("Timings under a profile are this machine's: a profile tells whether a model "
                                "fits and how it scales with that many cores, not how fast the board is."))
