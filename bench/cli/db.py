"""`bench db`: the results history (tritbench.results.history): result JSONL files ingested into Parquet files
and queried with DuckDB, or, with --store, into a team's PostgreSQL database (tritbench.results.postgres). The
JSONL files stay the truth: `bench db rebuild` makes the history again from them; `bench db push` copies the
embedded history into PostgreSQL."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from tritbench.cli.console import err, plain, split, warn_skipped
from tritbench.errors import ConfigError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="The results history: ingest result files into Parquet (or PostgreSQL with --store), "
                       "query it.")

OUTPUTS = ("md", "csv", "json")

Db = Annotated[Path | None, typer.Option("--db", help="History folder (default: $TRITBENCH_HOME/history, else "
                                                       "~/.cache/tritbench/history)")]
Store = Annotated[str | None, typer.Option("--store", help="A PostgreSQL history instead of the folder: "
                                                         "postgresql://user@host:port/db (a password is best kept in "
                                                         "PGPASSWORD or ~/.pgpass)")]
Machine = Annotated[str | None, typer.Option("--machine", help="Machine ids or parts of CPU models, comma-separated")]
Model = Annotated[str | None, typer.Option("--model", help="Model names or formats, comma-separated")]
Backend = Annotated[str | None, typer.Option("--backend", help="Backend names, comma-separated")]
Since = Annotated[str | None, typer.Option("--since", help="Records from this date on (2026-12-01, UTC)")]


def filters(machine: str | None, model: str | None, backend: str | None, since: str | None):
    """The query flags as history Filters (a bad --since is a ConfigError)."""
    from tritbench.results.history import Filters, parse_since

    when = None
    if since is not None:
        try:
            when = parse_since(since)
        except ValueError:
            raise ConfigError(f"--since takes a date such as 2026-12-01 or 2026-12-01T12:00, got {since!r}") from None
    return Filters(machine=split(machine), model=split(model), backend=split(backend), since=when)


def history_store(db: Path | None, store: str | None):
    """The history the flags name: --store (a PostgreSQL URL) or --db (a folder; by default the default one)."""
    from tritbench.results.history import is_postgres, open_store

    if db is not None and is_postgres(db):  # typer made the URL a path ("postgresql:/host/db"): name the flag
        raise ConfigError("--db takes a history folder: give a PostgreSQL history as --store "
                          "postgresql://user@host:port/db")
    if store is None:
        return open_store(db)
    if db is not None:
        raise ConfigError("--db and --store name two histories: give one (`bench db push --db DIR --store URL` "
                          "copies one into the other)")
    if not is_postgres(store):
        from tritbench.results.postgres import mask

        raise ConfigError(f"--store takes a postgresql://user@host:port/db URL (a history folder is --db), got "
                          f"{mask(store)!r}")
    return open_store(store)


@app.command("ingest")
def ingest(
    results: Annotated[list[Path], typer.Argument(help="Results files (run-*.jsonl) or folders of them")],
    db: Db = None,
    store: Store = None,
) -> None:
    """Add result records to the history: the same file twice adds nothing, a newer record of a case replaces it."""
    from tritbench.results.history import ingest_paths

    history = history_store(db, store)
    problems: list[str] = []
    try:
        counts = ingest_paths(history, results, problems)
    finally:
        warn_skipped(problems)
    skipped = f" ({counts.skipped_files} file(s) unchanged since ingested, not read)" if counts.skipped_files else ""
    print(f"ingested {counts.read} records{skipped}: {counts.added} added, {counts.replaced} replaced by newer, "
          f"{counts.unchanged} already held, {counts.older} not newer than the history's")
    print(f"history {history.location}: {counts.rows} records from {counts.sources} result file(s)")


@app.command("push")
def push(
    store: Annotated[str, typer.Option("--store", help="The PostgreSQL history to push into: "
                                                       "postgresql://user@host:port/db")],
    db: Db = None,
) -> None:
    """Copy the embedded history (--db) into a PostgreSQL one (--store): again adds nothing; newer records win."""
    from tritbench.results.postgres import push as push_rows

    target, source = history_store(None, store), history_store(db, None)
    counts = push_rows(source, target)
    print(f"pushed {counts.read} records from {source.location}: {counts.added} added, {counts.replaced} replaced "
          f"by newer, {counts.unchanged} already held, {counts.older} not newer than the store's")
    print(f"history {target.location}: {counts.rows} records from {counts.sources} result file(s)")


@app.command("rebuild")
def rebuild(db: Db = None, store: Store = None) -> None:
    """Make the history again from the result files it was ingested from; prints its checksum before and after."""
    from tritbench.errors import BenchError

    history = history_store(db, store)
    try:
        before = history.checksum()
    except BenchError:  # a corrupt segment: the rebuild is what repairs it
        before = "unreadable"
    problems: list[str] = []
    try:
        counts = history.rebuild(problems)
    finally:
        warn_skipped(problems)
    after = history.checksum()
    for path in counts.changed_files:
        err.print(plain(f"note: {path} changed since it was ingested"), soft_wrap=True)
    print(f"rebuilt from {counts.sources} result file(s): {counts.rows} records")
    print(f"checksum {after} ({'unchanged' if after == before else f'was {before}'})")


@app.command("info")
def info(db: Db = None, store: Store = None) -> None:
    """Where the history is, its size, its source files and its checksum."""
    from tritbench.reports.units import iec

    history = history_store(db, store)
    facts = history.info()
    print(f"history {facts['location']}: {facts['records']} records in {facts['storage']}, {iec(facts['bytes'])}")
    print(f"checksum {history.checksum()}")
    print(f"{len(facts['sources'])} source file(s):")
    for s in facts["sources"]:
        sys.stdout.write(f"  {plain(s)}\n")


@app.command("query")
def query(
    machine: Machine = None,
    model: Model = None,
    backend: Backend = None,
    since: Since = None,
    output: Annotated[str, typer.Option("-o", "--output", help="md, csv or json")] = "md",
    db: Db = None,
    store: Store = None,
) -> None:
    """Median tokens/s by machine x model x format x backend x threads x workload, over the history."""
    kind = output.lower()
    if kind not in OUTPUTS:
        raise ConfigError(f"-o must be md, csv or json, got {output!r}")
    rows = history_store(db, store).summary(filters(machine, model, backend, since))
    if not rows:
        err.print("no ok record with tokens/s matches", soft_wrap=True)
    sys.stdout.write(render(rows, kind))


def render(rows: list[dict], kind: str) -> str:
    """The query's rows as a markdown table (constant columns stated once above it), CSV or JSON."""
    import pandas as pd

    if kind == "json":
        return json.dumps(rows, indent=2, allow_nan=False) + "\n"
    columns = ["machine_id", "machine_cpu", "machine_arch", "model_name", "model_format", "backend_name", "n_threads",
               "workload_name", "runs", "records", "tokens_per_s", "first", "last"]
    frame = pd.DataFrame(rows, columns=columns)
    if kind == "csv":
        buf = io.StringIO()
        frame.to_csv(buf, index=False)
        return buf.getvalue()
    if frame.empty:
        return ""
    from tritbench.reports.markdown import md_table
    from tritbench.reports.units import fmt

    frame["last"] = frame["last"].map(lambda v: v[:10] if isinstance(v, str) else v)  # the day is enough here
    lines = md_table(frame, [
        ("machine_id", "machine", None), ("machine_cpu", "cpu", None), ("machine_arch", "arch", None),
        ("model_name", "model", None), ("model_format", "format", None), ("backend_name", "backend", None),
        ("n_threads", "threads", lambda v: fmt(v, "{:.0f}")), ("workload_name", "test", None), ("runs", "runs", None),
        ("records", "records", None), ("tokens_per_s", "t/s (median)", lambda v: fmt(v, "{:,.2f}")),
        ("last", "last", None),
    ], pad=True, right={"n_threads", "runs", "records", "tokens_per_s"}, keep={"tokens_per_s"})
    return "\n".join(lines) + "\n"
