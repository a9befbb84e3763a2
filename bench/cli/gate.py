"""`bench gate --ab AXIS=BASE,HEAD`: a paired A/B regression gate, its verdicts and its CI outputs.

Exit codes: 0 pass (improvements included), 1 regression, 2 bad input, 3 inconclusive (`--inconclusive pass`:
0 with a warning), 4 a case failed to run, 130 interrupted. The last line printed is
`gate: N passed, N failed, N skipped` (failed: regressions and cases that failed to run; skipped:
inconclusive).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from tritbench.cli import run as flags
from tritbench.cli.console import err, plain
from tritbench.errors import BenchError
from tritbench.execute.gate import run_gate
from tritbench.execute.session import RunInterrupted
from tritbench.plan.ab import GateConfig, fraction, parse_axis
from tritbench.plan.suite import builtin_suite, make_config, read_suite
from tritbench.reports import gate as gate_report


def _write(path: str, text: str, what: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise BenchError(f"cannot write the {what} file {path}: {exc.strerror or exc}") from None


def gate(
    ab: Annotated[str, typer.Option("--ab", help="AXIS=BASE,HEAD: ref=, python=, model=, opt:NAME=, env:NAME=")],
    suite: flags.Suite = None,
    backends: flags.Backends = None,
    models: flags.Models = None,
    formats: flags.Formats = None,
    embd_type: flags.EmbdType = None,
    output_type: flags.OutputType = None,
    n_prompt: flags.NPrompt = None,
    n_gen: flags.NGen = None,
    pg: flags.Pg = None,
    depth: flags.Depth = None,
    kinds: flags.Kinds = None,
    shapes: flags.Shapes = None,
    rows: flags.Rows = None,
    cache: flags.Cache = None,
    threads: flags.Threads = None,
    profile: flags.Profile = None,
    repetitions: Annotated[int | None, typer.Option("-r", "--repetitions", help="Repetitions per child")] = None,
    warmups: flags.Warmups = None,
    opt: flags.Opt = None,
    out: flags.Out = None,
    timeout: flags.Timeout = None,
    energy: flags.Energy = None,
    threshold: Annotated[str, typer.Option("--threshold", help="Pass: a slowdown this large is ruled out")] = "5%",
    alpha: Annotated[float, typer.Option("--alpha", help="Family-wise false-alarm rate")] = 0.01,
    min_effect: Annotated[str, typer.Option("--min-effect", help="Smallest slowdown called a regression")] = "1%",
    pairs: Annotated[int, typer.Option("--pairs", help="Paired rounds before the first look")] = 32,
    max_pairs: Annotated[int | None, typer.Option("--max-pairs", help="Undecided cases continue to this")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the base/head order (default: random)")] = None,
    metric: Annotated[str, typer.Option("--metric", help="auto (CPU time at 1 thread), cpu, wall, both")] = "auto",
    inconclusive: Annotated[str, typer.Option("--inconclusive", help="pass or fail")] = "fail",
    repo: Annotated[Path, typer.Option("--repo", help="ref axis: the git checkout")] = Path("."),
    json_path: Annotated[str | None, typer.Option("--json", help="Write the tritbench.gate/1 document")] = None,
    junit: Annotated[str | None, typer.Option("--junit", help="Write JUnit XML (one testcase per case)")] = None,
) -> None:
    """Gate head against base: paired rounds in random order, intervals, and a verdict per case."""
    axis = parse_axis(ab)
    overrides = flags.plan_overrides(backends, models, formats, embd_type, output_type, n_prompt, n_gen, pg, depth,
                                     kinds, shapes, rows, cache, threads, profile, warmups, opt, out, timeout, energy)
    overrides["repetitions"] = repetitions
    if axis.kind == "model" and overrides["models"]:
        raise BenchError("--ab model= names both sides' models: leave out -m")
    if axis.kind == "opt" and axis.name in (overrides["options"] or {}):
        raise BenchError(f"--ab opt:{axis.name} sets that option on both sides: leave it out of --opt")
    cfg = make_config({**builtin_suite("gate"), **(read_suite(suite) if suite else {})}, overrides)
    gcfg = GateConfig(axis, threshold=fraction(threshold, "--threshold"), alpha=alpha,
                      min_effect=fraction(min_effect, "--min-effect"), pairs=pairs,
                      max_pairs=max_pairs if max_pairs is not None else 2 * pairs,
                      seed=seed if seed is not None else secrets.randbelow(2**31), metric=metric,
                      inconclusive=inconclusive, repo=str(repo))
    gcfg.validate()
    events = flags.TerminalEvents()
    previous = signal.signal(signal.SIGTERM, flags._interrupt)
    try:
        result = run_gate(gcfg, cfg, events)
    except RunInterrupted as exc:
        events.close()
        err.print(plain(str(exc)))
        raise typer.Exit(130) from None
    except KeyboardInterrupt:
        events.close()
        err.print("interrupted before any pair ran: nothing was measured")
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        events.close()
    markdown = gate_report.to_markdown(result)
    sys.stdout.write(markdown)
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        try:
            with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as f:
                f.write(markdown + "\n")
        except OSError as exc:
            err.print(plain(f"warning: cannot append to GITHUB_STEP_SUMMARY: {exc.strerror or exc}"))
    if os.environ.get("GITHUB_ACTIONS") == "true":
        for line in gate_report.annotations(result):
            print(line)
    if json_path:
        _write(json_path, json.dumps(gate_report.to_json(result), indent=2) + "\n", "--json")
    if junit:
        _write(junit, gate_report.to_junit(result), "--junit")
    if result.overall() == "inconclusive" and inconclusive == "pass":
        err.print("warning: the gate is inconclusive; --inconclusive pass turns that into exit code 0")
    err.print(plain(f"results: {result.path}"))
    print(result.last_line())
    raise typer.Exit(result.exit_code())
