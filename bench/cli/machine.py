"""`bench machine`: this machine's fingerprint, its state now, its energy sources and read bandwidth."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from tritbench import machine as fingerprinting
from tritbench import plugin
from tritbench.cli.console import err, plain, stdout


def machine(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    no_bandwidth: Annotated[bool, typer.Option("--no-bandwidth", help="Skip the read-bandwidth probe")] = False,
) -> None:
    """This machine's fingerprint, its state now, and its read bandwidth (1 thread and all threads)."""
    from tritbench.measure.bandwidth import read_bandwidth
    from tritbench.measure.energy import probe_meters

    libraries = plugin.libraries_of(sorted(plugin.available()))
    info = {"machine": fingerprinting.fingerprint(libraries=libraries), "state": fingerprinting.state(),
            "energy": {p.kind: p.to_dict() for p in probe_meters()}}
    if not no_bandwidth:
        cores = fingerprinting.physical_cores()
        with err.status("probing read bandwidth..."):
            info["read_bandwidth"] = {str(t): read_bandwidth(t) for t in sorted({1, cores})}
    if as_json:
        print(json.dumps(info, indent=2))
        return
    table = Table("field", "value", show_header=False, box=box.SIMPLE, padding=(0, 1), pad_edge=False)
    for section, values in info.items():
        for k, v in values.items():
            table.add_row(plain(f"{section}.{k}"), plain(json.dumps(v) if isinstance(v, (dict, list)) else v))
    stdout().print(table)
