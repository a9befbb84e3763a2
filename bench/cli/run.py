"""`bench run`: flags -> a validated config -> `run_session`, shown with rich on stderr and printed on stdout."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from tritbench.cli.console import err, ints, plain, split
from tritbench.errors import ConfigError
from tritbench.execute.session import RunEvents, RunInterrupted, run_session
from tritbench.plan.suite import load_suite, make_config
from tritbench.reports.terminal import render


def _pairs(values: list[str] | None) -> list[list[int]] | None:
    if not values:
        return None
    out = []
    for v in values:
        nums = ints(v, "--pg")
        if len(nums) != 2:
            raise ConfigError(f"--pg takes N_PROMPT,N_GEN, got '{v}'")
        out.append(nums)
    return out


def _options(values: list[str] | None) -> dict[str, list] | None:
    if not values:
        return None
    out: dict[str, list] = {}
    for v in values:
        key, sep, rest = v.partition("=")
        if not sep or not key.strip() or not rest.strip():
            raise ConfigError(f"--opt takes NAME=VALUE[,VALUE...], got '{v}'")
        out[key.strip()] = split(rest)
    return out


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


class TerminalEvents(RunEvents):
    """Steps as spinners, warnings in yellow, and a progress bar over the children (all on stderr)."""

    def __init__(self) -> None:
        self.progress: Progress | None = None
        self.task = None

    def step(self, message: str):
        return err.status(plain(message))

    def warning(self, message: str) -> None:
        err.print(Text("warning: ", style="yellow") + plain(message), soft_wrap=True)

    def resumed(self, path: Path, skipped: int) -> None:
        err.print(plain(f"resuming {path}: {skipped} finished cases skipped"))

    def started(self, children: int) -> None:
        label = TextColumn("{task.description}", markup=False)  # labels hold model names: plain text
        columns = (label, BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        self.progress = Progress(*columns, console=err, transient=True)
        self.progress.start()
        self.task = self.progress.add_task("running", total=children)

    def child_done(self, label: str) -> None:
        if self.progress is not None:
            self.progress.update(self.task, advance=1, description=label)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def run(
    suite: Annotated[Path | None, typer.Argument(help="Suite TOML file (default: the built-in suite)")] = None,
    backends: Annotated[str | None, typer.Option("-b", "--backends", help="Backends, comma-separated")] = None,
    models: Annotated[str | None, typer.Option("-m", "--models", help="Presets or GGUF paths")] = None,
    formats: Annotated[str | None, typer.Option("-f", "--formats", help="f16,q8_0,q4_0,tq1_0,tq2_0")] = None,
    embd_type: Annotated[str | None, typer.Option("--embd-type", help="Presets: token-embedding type")] = None,
    output_type: Annotated[str | None, typer.Option("--output-type", help="Presets: output-matrix type")] = None,
    n_prompt: Annotated[str | None, typer.Option("-p", "--n-prompt", help="Prompt lengths (pp workloads)")] = None,
    n_gen: Annotated[str | None, typer.Option("-n", "--n-gen", help="Generation lengths (tg workloads)")] = None,
    pg: Annotated[list[str] | None, typer.Option("--pg", help="N_PROMPT,N_GEN (repeatable)")] = None,
    depth: Annotated[str | None, typer.Option("-d", "--depth", help="KV cache depths")] = None,
    kinds: Annotated[str | None, typer.Option("-w", "--workloads", help="Kinds: pp,tg,pg and/or gemv,gemm")] = None,
    shapes: Annotated[str | None, typer.Option("-s", "--shapes", help="Kernel shapes KxN or presets")] = None,
    rows: Annotated[str | None, typer.Option("-M", help="Kernel activation rows (gemm: M >= 2)")] = None,
    cache: Annotated[str | None, typer.Option("--cache", help="Kernel weights: cold, hot")] = None,
    threads: Annotated[str | None, typer.Option("-t", "--threads", help="Thread counts")] = None,
    profile: Annotated[str | None, typer.Option("--profile", help="Run as an edge device: pi5-like, ...")] = None,
    repetitions: Annotated[int | None, typer.Option("-r", "--repetitions", help="Repetitions per case")] = None,
    warmups: Annotated[int | None, typer.Option("--warmups", help="Warmup runs per child")] = None,
    rounds: Annotated[int | None, typer.Option("--rounds", help="Rounds the repetitions are split over")] = None,
    opt: Annotated[list[str] | None, typer.Option("--opt", help="Backend option NAME=V1,V2 (repeatable)")] = None,
    out: Annotated[str | None, typer.Option("--out", help="Results folder")] = None,
    output: Annotated[str | None, typer.Option("-o", "--output", help="md, csv, json or jsonl")] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Seconds before a child is killed")] = None,
    energy: Annotated[str | None, typer.Option("--energy", help="Energy meter (auto, none, ...)")] = None,
    idle_s: Annotated[float | None, typer.Option("--idle-s", help="Idle-power baseline seconds (0: none)")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the random token traces")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the latest run in --out")] = False,
) -> None:
    """Run backends over models and workloads; write one JSON record per case under --out."""
    overrides = {
        "backends": split(backends), "models": split(models), "formats": split(formats),
        "embd_type": embd_type, "output_type": output_type, "profile": profile,
        "n_prompt": ints(n_prompt, "-p"), "n_gen": ints(n_gen, "-n"), "pg": _pairs(pg),
        "depth": ints(depth, "-d"), "threads": ints(threads, "-t"), "repetitions": repetitions,
        "kinds": split(kinds), "shapes": split(shapes), "M": ints(rows, "-M"), "cache": split(cache),
        "warmups": warmups, "rounds": rounds, "options": _options(opt), "out": out, "output": output,
        "timeout": timeout, "seed": seed, "energy": energy, "idle_s": idle_s,
    }
    cfg = make_config(load_suite(suite), overrides)
    events = TerminalEvents()
    # SIGTERM (a CI job cancelled, `kill`) ends the run as Ctrl-C does: children stopped, finished cases kept.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        outcome = run_session(cfg, resume=resume, events=events)
    except RunInterrupted as exc:
        events.close()
        err.print(plain(f"{exc}; `bench run ... --resume` continues"))
        raise typer.Exit(130) from None
    except KeyboardInterrupt:
        events.close()
        err.print("interrupted before any case ran: nothing was measured")
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        events.close()
    sys.stdout.write(render(outcome.records, cfg.output))
    err.print(plain(f"results: {outcome.path}"))
    if outcome.failed:
        raise typer.Exit(1)
