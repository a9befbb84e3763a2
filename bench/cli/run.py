"""`bench run`: flags -> a validated config -> `run_session`, shown with rich on stderr and printed on stdout."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def measuring(events: TerminalEvents, after: str = "", nothing: str = "interrupted before any case ran: "
              "nothing was measured") -> Iterator[None]:
    """Around a measuring session: SIGTERM (a CI job cancelled, `kill`) ends it as Ctrl-C does, children stopped
    and finished cases kept, with one line and exit code 130; the progress display is closed however it ends."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    except RunInterrupted as exc:
        events.close()
        err.print(plain(f"{exc}{after}"))
        raise typer.Exit(130) from None
    except KeyboardInterrupt:
        events.close()
        err.print(nothing)
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        events.close()


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
        self.close()  # a gate's later looks start a new count
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


# The plan's flags, shared by `bench run` and `bench gate`.
Suite = Annotated[Path | None, typer.Argument(help="Suite TOML file (default: the built-in suite)")]
Backends = Annotated[str | None, typer.Option("-b", "--backends", help="Backends, comma-separated")]
Models = Annotated[str | None, typer.Option("-m", "--models", help="Presets (preset@field=value) or GGUF paths")]
Formats = Annotated[str | None, typer.Option("-f", "--formats", help="f16,q8_0,q4_0,tq1_0,tq2_0")]
EmbdType = Annotated[str | None, typer.Option("--embd-type", help="Presets: token-embedding type")]
OutputType = Annotated[str | None, typer.Option("--output-type", help="Presets: output-matrix type")]
NPrompt = Annotated[str | None, typer.Option("-p", "--n-prompt", help="Prompt lengths (pp workloads)")]
NGen = Annotated[str | None, typer.Option("-n", "--n-gen", help="Generation lengths (tg workloads)")]
Pg = Annotated[list[str] | None, typer.Option("--pg", help="N_PROMPT,N_GEN (repeatable)")]
Depth = Annotated[str | None, typer.Option("-d", "--depth", help="KV cache depths")]
Kinds = Annotated[str | None, typer.Option("-w", "--workloads", help="Kinds: pp,tg,pg and/or gemv,gemm")]
Shapes = Annotated[str | None, typer.Option("-s", "--shapes", help="Kernel shapes KxN or presets")]
Rows = Annotated[str | None, typer.Option("-M", help="Kernel activation rows (gemm: M >= 2)")]
Cache = Annotated[str | None, typer.Option("--cache", help="Kernel weights: cold, hot")]
Threads = Annotated[str | None, typer.Option("-t", "--threads", help="Thread counts")]
Profile = Annotated[str | None, typer.Option("--profile", help="Run as an edge device: pi5-like, ...")]
Warmups = Annotated[int | None, typer.Option("--warmups", help="Warmup runs per child")]
Opt = Annotated[list[str] | None, typer.Option("--opt", help="Backend option NAME=V1,V2 (repeatable)")]
Out = Annotated[str | None, typer.Option("--out", help="Results folder")]
Timeout = Annotated[float | None, typer.Option("--timeout", help="Seconds before a child is killed")]
Energy = Annotated[str | None, typer.Option("--energy", help="Energy meter (auto, none, ...)")]


def plan_overrides(backends, models, formats, embd_type, output_type, n_prompt, n_gen, pg, depth, kinds, shapes,
                   rows, cache, threads, profile, warmups, opt, out, timeout, energy) -> dict:
    """The plan flags' values as config overrides (None: not given)."""
    return {
        "backends": split(backends), "models": split(models), "formats": split(formats),
        "embd_type": embd_type, "output_type": output_type, "profile": profile,
        "n_prompt": ints(n_prompt, "-p"), "n_gen": ints(n_gen, "-n"), "pg": _pairs(pg),
        "depth": ints(depth, "-d"), "threads": ints(threads, "-t"),
        "kinds": split(kinds), "shapes": split(shapes), "M": ints(rows, "-M"), "cache": split(cache),
        "warmups": warmups, "options": _options(opt), "out": out, "timeout": timeout, "energy": energy,
    }


def run(
    suite: Suite = None,
    backends: Backends = None,
    models: Models = None,
    formats: Formats = None,
    embd_type: EmbdType = None,
    output_type: OutputType = None,
    n_prompt: NPrompt = None,
    n_gen: NGen = None,
    pg: Pg = None,
    depth: Depth = None,
    kinds: Kinds = None,
    shapes: Shapes = None,
    rows: Rows = None,
    cache: Cache = None,
    threads: Threads = None,
    profile: Profile = None,
    repetitions: Annotated[int | None, typer.Option("-r", "--repetitions", help="Repetitions per case")] = None,
    warmups: Warmups = None,
    rounds: Annotated[int | None, typer.Option("--rounds", help="Rounds the repetitions are split over")] = None,
    opt: Opt = None,
    out: Out = None,
    output: Annotated[str | None, typer.Option("-o", "--output", help="md, csv, json or jsonl")] = None,
    timeout: Timeout = None,
    energy: Energy = None,
    idle_s: Annotated[float | None, typer.Option("--idle-s", help="Idle-power baseline seconds (0: none)")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the random token traces")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the latest run in --out")] = False,
    hosts: Annotated[Path | None, typer.Option("--hosts", help="Inventory TOML: run on its hosts over SSH")] = None,
) -> None:
    """Run backends over models and workloads; write one JSON record per case under --out."""
    overrides = {
        **plan_overrides(backends, models, formats, embd_type, output_type, n_prompt, n_gen, pg, depth, kinds,
                         shapes, rows, cache, threads, profile, warmups, opt, out, timeout, energy),
        "repetitions": repetitions, "rounds": rounds, "output": output, "idle_s": idle_s, "seed": seed,
    }
    cfg = make_config(load_suite(suite), overrides)
    if hosts is not None:
        from tritbench.cli.hosts import run_on_hosts

        run_on_hosts(hosts, cfg, resume)
        return
    events = TerminalEvents()
    with measuring(events, after="; `bench run ... --resume` continues"):
        outcome = run_session(cfg, resume=resume, events=events)
    sys.stdout.write(render(outcome.records, cfg.output))
    for line in model_checks(outcome.records):
        err.print(plain(line))
    err.print(plain(f"results: {outcome.path}"))
    if outcome.failed:
        raise typer.Exit(1)


def model_checks(records) -> list[str]:
    """One line per loaded model a backend checked before timing it (the onnx decoder against its float64
    reference, a peer build's greedy tokens against llama.cpp F16): that it computes the model benchmarked."""
    lines = {}
    for r in records:
        label = f"{r.backend['name']}/{r.model['name']}/{r.model['format']}"
        parity, tokens = r.settings.get("parity_check"), (r.settings.get("peer") or {}).get("token_check")
        if parity:
            lines[label] = (f"check: {label}: {'passed' if parity['passed'] else 'FAILED'} (logits within "
                            f"{max(parity['rel_errors']):.2g} of a float64 reference)")
        elif tokens:
            said = (f"{tokens['agreeing_prompts']} of {tokens['prompts']} seeded prompts agree"
                    if "prompts" in tokens else tokens.get("reason", ""))
            lines[label] = f"check: {label}: greedy tokens vs llama.cpp F16: {tokens['status']} ({said})"
        if r.settings.get("op_profile"):  # profiled per thread count: one line each
            at = f"{label} t{r.settings.get('n_threads')}"
            lines[at + "/profile"] = f"profile: {at}: {op_profile_line(r.settings['op_profile'])}"
    return list(lines.values())


def op_profile_line(shares: dict) -> str:
    """A decoder's profiled decode step in one line: the matmul share by op type, the rest's three largest."""
    ops = shares["by_op_type"]
    matmul = ", ".join(f"{op} {ops[op]:.1%}" for op in shares["matmul_ops"])
    rest = [f"{op} {s:.1%}" for op, s in ops.items() if op not in shares["matmul_ops"]][:3]
    rest.append(f"between nodes {shares['framework_share']:.1%}")
    line = (f"a decode step is {shares['matmul_share']:.1%} matmul ({matmul}), {shares['non_matmul_share']:.1%} "
            f"other ({', '.join(rest)}), {shares['steps']} profiled steps" +
            (f" from depth {shares['depth']}" if shares.get("depth", 1) > 1 else ""))
    clock = shares.get("op_clock")
    if clock:  # unprofiled steps on the op library's own clock
        mine = " + ".join(clock["ops"])
        line += (f"; unprofiled, {clock['ops_share']:.1%} in {mine}" +
                 (f", {clock['non_matmul_share']:.1%} other" if clock.get("non_matmul_share") is not None
                  else f" ({clock['why_not']})") + f", {clock['steps']} steps")
    return line
