"""`bench compare A B`: the speed-up of B over A for every case both hold, with its interval and a verdict. A or B
may be a results history (a `bench db` folder or a postgresql:// URL), filtered as `bench report` filters it.

Exit codes: 0; with --check, 1 when a case regressed and 3 when none did but one is inconclusive; 2 for bad
input (a missing path, a bad flag, nothing to compare)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tritbench.cli import db as db_flags
from tritbench.cli.console import err, plain, warn_skipped
from tritbench.errors import BenchError, ConfigError
from tritbench.plan.ab import fraction as plan_fraction

if TYPE_CHECKING:
    from tritbench.results.history import Filters

OUTPUTS = ("md", "csv", "json")


def fraction(text: str, flag: str, allow_zero: bool = False) -> float:
    """'5%' or '0.05' -> 0.05; a ConfigError naming the flag for anything else, or for a value outside (0, 1)."""
    t = text.strip()
    value = plan_fraction(text, flag)
    if value >= 1 or value < 0 or (value == 0 and not allow_zero):
        hint = f" (for {t} percent write {t}%)" if value >= 1 and not t.endswith("%") else ""
        low = "0 %" if allow_zero else "above 0 %"
        raise ConfigError(f"{flag} must be from {low} to below 100 %, got {text!r}{hint}")
    return value


def read_results(path: Path, side: str) -> list[dict]:
    from tritbench.results.records import read_records

    if not path.exists():
        raise ConfigError(f"results file or folder not found: {path}")
    problems: list[str] = []
    records = read_records([path], problems)
    warn_skipped(problems)
    if not records:
        raise BenchError(f"nothing to compare: {side} ({path}) holds no result records")
    return records


def narrow(filters: Filters, other: list[dict], machine: bool) -> Filters:
    """`filters` plus what can match `other`'s cases (its machines when cases match by machine, its models and
    backends), for each kind the user left unfiltered: a team's history is large, and the rest would not match."""
    from dataclasses import replace

    def values(part: str, key: str) -> list[str] | None:
        found = [(r.get(part) or {}).get(key) for r in other]
        return sorted(set(found)) if found and all(isinstance(v, str) for v in found) else None

    extra = {"machine": values("machine", "id") if machine else None, "model": values("model", "name"),
             "backend": values("backend", "name")}
    return replace(filters, **{k: v for k, v in extra.items() if v is not None and getattr(filters, k) is None})


def read_pair(a: str, b: str, names: tuple[str, str], filters: Filters,
              machine: bool) -> list[tuple[list[dict], str]]:
    """The records of A and B, each result files or a results history (its records that match `filters`, and,
    when the other side is files, only those that can match them), with the name each is reported under."""
    from tritbench.results.history import is_history, open_store

    given = (a, b)
    past = [is_history(x) for x in given]
    filtering = filters.given
    if filtering and not any(past):
        raise ConfigError("--machine, --model, --backend and --since filter a results history: give a history "
                          "folder or a postgresql:// URL as one of the sides")
    files = {i: read_results(Path(x), names[i]) for i, x in enumerate(given) if not past[i]}
    out = []
    for i, x in enumerate(given):
        if not past[i]:
            out.append((files[i], x))
            continue
        store, other = open_store(x), files.get(1 - i)
        records = store.records(filters if other is None else narrow(filters, other, machine))
        if other is not None:  # a run that is also in the history is not compared with itself
            runs = {r.get("run_id") for r in other}
            records = [r for r in records if r.get("run_id") not in runs]
        if not records:
            match = ["the filters"] * filtering + [f"the machines, models and backends of {names[1 - i]}"] * (
                other is not None)
            which = f" that match {' and '.join(match)}" if match else ""
            raise BenchError(f"nothing to compare: {names[i]} (history {store.location}) holds no result "
                             f"records{which}")
        out.append((records, f"history {store.location}"))
    return out


def compare(
    a: Annotated[str, typer.Argument(metavar="A", help="Results of the base: a run-*.jsonl file, a folder of them, "
                                                       "or a history (a bench db folder, a postgresql:// URL)")],
    b: Annotated[str, typer.Argument(metavar="B", help="Results to compare with A, likewise")],
    output: Annotated[str, typer.Option("-o", "--output", help="md, csv or json")] = "md",
    threshold: Annotated[str, typer.Option("--threshold", help="Pass: the interval rules out a slowdown this large "
                                                                 "(5% or 0.05)")] = "5%",
    min_effect: Annotated[str, typer.Option("--min-effect", help="Regression: the interval lies below 1 minus "
                                                                   "this")] = "1%",
    confidence: Annotated[str, typer.Option("--confidence", help="Two-sided interval level")] = "0.95",
    check: Annotated[bool, typer.Option("--check", help="Exit 1 on a regression, 3 when inconclusive")] = False,
    ignore_machine: Annotated[bool, typer.Option("--ignore-machine", help="Match cases across machines")] = False,
    machine: db_flags.Machine = None,
    model: db_flags.Model = None,
    backend: db_flags.Backend = None,
    since: db_flags.Since = None,
) -> None:
    """Speed-up of B over A per case (tokens/s), with its interval, method and verdict."""
    from tritbench.reports.compare import compare_records, render

    kind = output.lower()
    if kind not in OUTPUTS:
        raise ConfigError(f"-o must be md, csv or json, got {output!r}")
    limits = (fraction(threshold, "--threshold"), fraction(min_effect, "--min-effect", allow_zero=True),
              fraction(confidence, "--confidence"))
    filters = db_flags.filters(machine, model, backend, since)
    (records_a, name_a), (records_b, name_b) = read_pair(a, b, ("A", "B"), filters, not ignore_machine)
    result = compare_records(records_a, records_b, "tokens_per_s", limits[2], limits[0], limits[1],
                             machine=not ignore_machine)
    result.a_sources, result.b_sources = [name_a], [name_b]
    if not result.cases:
        raise BenchError(_nothing(result, records_a, records_b, ignore_machine))
    sys.stdout.write(render(result, kind))
    if kind == "csv":  # the table holds compared cases only: the rest is named here
        for c in result.not_compared:
            err.print(plain(f"not compared: {c['label']}: {c['why']}"), soft_wrap=True)
    counts = result.counts
    code = 1 if counts["regression"] else 3 if counts["inconclusive"] else 0
    if check and code:
        raise typer.Exit(code)


def _nothing(result, records_a: list[dict], records_b: list[dict], ignore_machine: bool) -> str:
    """Why no case could be compared, in one line (record text made inert)."""
    from tritbench.reports.units import inert

    matched = [c for c in result.not_compared if c["why"] not in ("only in A", "only in B")]
    if matched:
        first = matched[0]
        return inert(f"nothing to compare: {len(matched)} case(s) match but none has {result.metric} in both A and B "
                     f"({first['label']}: {first['why']})")
    machines = [{(r.get("machine") or {}).get("id") for r in recs} for recs in (records_a, records_b)]
    hint = ""
    if not ignore_machine and not machines[0] & machines[1]:
        hint = " (they come from different machines: --ignore-machine compares across machines)"
    return f"nothing to compare: no case of B matches a case of A{hint}"
