"""`bench compare A B`: the speed-up of B over A for every case both hold, with its interval and a verdict.

Exit codes: 0; with --check, 1 when a case regressed and 3 when none did but one is inconclusive; 2 for bad
input (a missing path, a bad flag, nothing to compare)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tritbench.cli.console import err, plain, warn_skipped
from tritbench.errors import BenchError, ConfigError
from tritbench.plan.ab import fraction as plan_fraction

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


def compare(
    a: Annotated[Path, typer.Argument(metavar="A", help="Results of the base: a run-*.jsonl file or a folder of them")],
    b: Annotated[Path, typer.Argument(metavar="B", help="Results to compare with A, likewise")],
    output: Annotated[str, typer.Option("-o", "--output", help="md, csv or json")] = "md",
    threshold: Annotated[str, typer.Option("--threshold", help="Pass: the interval rules out a slowdown this large "
                                                                 "(5% or 0.05)")] = "5%",
    min_effect: Annotated[str, typer.Option("--min-effect", help="Regression: the interval lies below 1 minus "
                                                                   "this")] = "1%",
    confidence: Annotated[str, typer.Option("--confidence", help="Two-sided interval level")] = "0.95",
    check: Annotated[bool, typer.Option("--check", help="Exit 1 on a regression, 3 when inconclusive")] = False,
    ignore_machine: Annotated[bool, typer.Option("--ignore-machine", help="Match cases across machines")] = False,
) -> None:
    """Speed-up of B over A per case (tokens/s), with its interval, method and verdict."""
    from tritbench.reports.compare import compare_records, render

    kind = output.lower()
    if kind not in OUTPUTS:
        raise ConfigError(f"-o must be md, csv or json, got {output!r}")
    limits = (fraction(threshold, "--threshold"), fraction(min_effect, "--min-effect", allow_zero=True),
              fraction(confidence, "--confidence"))
    records_a, records_b = read_results(a, "A"), read_results(b, "B")
    result = compare_records(records_a, records_b, "tokens_per_s", limits[2], limits[0], limits[1],
                             machine=not ignore_machine)
    result.a_sources, result.b_sources = [str(a)], [str(b)]
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
