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
import sys
from pathlib import Path
from typing import Annotated

import typer

from tritbench.cli import db as db_flags
from tritbench.cli import run as flags
from tritbench.cli.console import err, plain
from tritbench.errors import BenchError, ConfigError
from tritbench.execute.gate import run_gate
from tritbench.plan.ab import LOOK_FACTOR, LOOKS, GateConfig, fraction, parse_axis
from tritbench.plan.suite import builtin_suite, make_config, read_suite
from tritbench.reports import gate as gate_report


def _write(path: str, text: str, what: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise BenchError(f"cannot write the {what} file {path}: {exc.strerror or exc}") from None


def gate(
    ab: Annotated[str | None, typer.Option("--ab", help="AXIS=BASE,HEAD: ref=, python=, model=, opt:NAME=, env:NAME=")
                  ] = None,
    suite: Annotated[Path | None, typer.Argument(help="Suite TOML file; with --baseline: the results to judge")] = None,
    baseline: Annotated[str | None, typer.Option("--baseline", help="Stored results of this machine to judge RESULTS "
                                                                    "against (dedicated machines): files, a bench db "
                                                                    "folder or a postgresql:// URL")] = None,
    machine: Annotated[str | None, typer.Option("--machine", help="--baseline history: machine ids or parts of CPU "
                                                                  "models")] = None,
    model: Annotated[str | None, typer.Option("--model", help="--baseline history: model names or formats")] = None,
    backend: Annotated[str | None, typer.Option("--backend", help="--baseline history: backend names")] = None,
    since: Annotated[str | None, typer.Option("--since", help="--baseline history: records from this date on")] = None,
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
    max_pairs: Annotated[int | None, typer.Option("--max-pairs", help="Undecided cases continue up to this")] = None,
    looks: Annotated[int, typer.Option("--looks", help="Looks from --pairs to --max-pairs, evenly spaced")] = LOOKS,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the base/head order (default: random)")] = None,
    metric: Annotated[str, typer.Option("--metric", help="auto (CPU time at 1 thread), cpu, wall, both")] = "auto",
    inconclusive: Annotated[str, typer.Option("--inconclusive", help="pass or fail")] = "fail",
    repo: Annotated[Path, typer.Option("--repo", help="ref axis: the git checkout")] = Path("."),
    json_path: Annotated[str | None, typer.Option("--json", help="Write the tritbench.gate/1 document")] = None,
    junit: Annotated[str | None, typer.Option("--junit", help="Write JUnit XML (one testcase per case)")] = None,
) -> None:
    """Gate head against base: paired rounds in random order, intervals, and a verdict per case."""
    if baseline is not None:
        if ab is not None:
            raise BenchError("--ab and --baseline exclude each other: a gate runs two sides now, or judges stored "
                             "results")
        if suite is None:
            raise BenchError("--baseline needs the results to judge: bench gate --baseline BASE RESULTS")
        _baseline_gate(baseline, suite, fraction(threshold, "--threshold"), alpha, fraction(min_effect, "--min-effect"),
                       inconclusive, json_path, junit, db_flags.filters(machine, model, backend, since))
    if any(v is not None for v in (machine, model, backend, since)):
        hint = " (the models to gate on are -m/--models)" if model is not None else ""
        raise BenchError(f"--machine, --model, --backend and --since filter a --baseline history{hint}")
    if ab is None:
        raise BenchError("bench gate needs --ab AXIS=BASE,HEAD (or --baseline BASE RESULTS)")
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
                      max_pairs=_max_pairs(pairs, max_pairs, looks), looks=looks,
                      seed=seed if seed is not None else secrets.randbelow(2**31), metric=metric,
                      inconclusive=inconclusive, repo=str(repo))
    gcfg.validate()
    events = flags.TerminalEvents()
    with flags.measuring(events, nothing="interrupted before any pair ran: nothing was measured"):
        result = run_gate(gcfg, cfg, events)
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


def _baseline_gate(base: str, results: Path, threshold: float, alpha: float, min_effect: float,
                   inconclusive: str, json_path: str | None, junit: str | None, filters) -> None:
    """Judge a run against stored results of the same machine and plan: two separate runs share no rounds, so
    the interval is an unpaired bootstrap of the ratio of medians, trustworthy only on a quiet machine. The
    baseline may be a results history (tritbench.cli.compare.read_pair: filtered, and the newest record of each
    case)."""
    from tritbench.cli.compare import read_pair
    from tritbench.reports.compare import compare_records, to_json, to_markdown

    GateConfig(parse_axis("env:X=a,b"), threshold=threshold, alpha=alpha, min_effect=min_effect,
               inconclusive=inconclusive).validate()
    if junit:
        raise BenchError("--junit is for --ab gates; --baseline writes --json")
    (old, name_a), (new, name_b) = read_pair(base, str(results), ("the baseline", "RESULTS"), filters, True)
    result = compare_records(old, new, "tokens_per_s", 1 - 2 * alpha, threshold, min_effect, machine=True)
    result.a_sources, result.b_sources = [name_a], [name_b]
    if not result.cases:
        raise BenchError(f"nothing to judge: no case of {name_b} matches a case of {name_a} on this machine id")
    text = to_markdown(result)
    blind = [c["label"] for c in result.cases if _undetectable(c["speedup"], threshold)]
    text += ("\nBaseline mode compares two separate runs (unpaired): trustworthy only on a quiet, dedicated "
             "machine; on a shared one use `bench gate --ab`.\n")
    if blind:
        text += (f"The two runs' noise makes a {100 * threshold:g} % slowdown undetectable for {len(blind)} case(s): "
                 f"{', '.join(blind)}.\n")
    sys.stdout.write(text)
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as f:
            f.write(text + "\n")
    if json_path:
        _write(json_path, to_json(result), "--json")
    n = result.counts
    print(f"gate: {n['pass']} passed, {n['regression']} failed, {n['inconclusive']} skipped")
    code = 1 if n["regression"] else 3 if n["inconclusive"] and inconclusive == "fail" else 0
    raise typer.Exit(code)


def _undetectable(s: dict, threshold: float) -> bool:
    """No interval, or one whose half-width (as a slowdown) exceeds the threshold."""
    lo, hi = s.get("lo"), s.get("hi")
    if not lo or not hi or lo <= 0:
        return True
    return 1 - (lo / hi) ** 0.5 > threshold


trials = typer.Typer(no_args_is_help=True, help="How often the gate cries wolf and how often it finds a slowdown.")
DEFAULT_BASE, DEFAULT_HEAD = "small@layers=20@vocab=1536", "small@layers=21@vocab=1536"  # 20/21: -4.8 %
Base = Annotated[str, typer.Option("--base", help="Model of A and A'")]
Head = Annotated[str, typer.Option("--head", help="Model of B: A with a known slowdown")]


def _trial_config(suite, backends, formats, n_prompt, n_gen, kinds, threads, repetitions, warmups, out):
    overrides = flags.plan_overrides(backends, None, formats, None, None, n_prompt, n_gen, None, None, kinds, None,
                                     None, None, threads, None, warmups, None, out, None, None)
    overrides["repetitions"] = repetitions
    return make_config({**builtin_suite("gate"), "backends": ["llamacpp"], "formats": ["tq2_0"],
                        "kinds": ["pp", "tg"], **(read_suite(suite) if suite else {})}, overrides)


def _print_trials(summary: dict, json_path: str | None) -> None:
    print(f"method: {summary['method']}")
    print("| gates | kind | regression | 95 % CI | inconclusive | pass | s per gate |")
    print("| ---: | --- | ---: | --- | ---: | ---: | ---: |")
    for kind in ("A/A", "injected"):
        s = summary[kind]
        lo, hi = s["regression"]["ci95"]
        rate = "-" if s["regression"]["rate"] is None else f"{100 * s['regression']['rate']:.1f} %"
        ci = "-" if lo is None else f"[{100 * lo:.1f} %, {100 * hi:.1f} %]"
        share = {v: "-" if s[v]["rate"] is None else f"{100 * s[v]['rate']:.1f} %" for v in ("inconclusive", "pass")}
        secs = "-" if s["seconds_per_gate"] is None else f"{s['seconds_per_gate']:.0f}"
        print(f"| {s['gates']} | {kind} | {s['regression']['count']} ({rate}) | {ci} | {share['inconclusive']} | "
              f"{share['pass']} | {secs} |")
    for case, ratios in summary.get("injected_ratio", {}).items():
        shown = ", ".join(f"{m} {r:.3f}x" for m, r in ratios.items())
        print(f"injected slowdown measured, {case}: {shown} (B / A, medians of the recording)")
    if json_path:
        _write(json_path, json.dumps(summary, indent=2) + "\n", "--json")



def _max_pairs(pairs: int, max_pairs: int | None, looks: int) -> int:
    """--max-pairs, or by default LOOK_FACTOR x --pairs (just --pairs for a single look)."""
    if max_pairs is not None:
        return max_pairs
    return LOOK_FACTOR * pairs if looks > 1 else pairs

@trials.command("record")
def trials_record(
    path: Annotated[Path, typer.Argument(help="The recording (JSONL, appended to)")],
    rounds: Annotated[int, typer.Option("--rounds", help="Rounds of A, A' and B")] = 64,
    base: Base = DEFAULT_BASE, head: Head = DEFAULT_HEAD, suite: flags.Suite = None,
    backends: flags.Backends = None, formats: flags.Formats = None, n_prompt: flags.NPrompt = None,
    n_gen: flags.NGen = None, kinds: flags.Kinds = None, threads: flags.Threads = None,
    repetitions: Annotated[int | None, typer.Option("-r", "--repetitions", help="Repetitions per child")] = None,
    warmups: flags.Warmups = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the order (default: random)")] = None,
) -> None:
    """Record rounds of A, A' (A again) and B (A slowed down) in random order, one JSON line per round."""
    from tritbench.execute.trials import record

    if rounds < 1:
        raise BenchError(f"--rounds must be >= 1, got {rounds}")
    cfg = _trial_config(suite, backends, formats, n_prompt, n_gen, kinds, threads, repetitions, warmups,
                        str(path.parent))
    events = flags.TerminalEvents()
    with flags.measuring(events, nothing=f"interrupted: the finished rounds are in {path}"):
        record(cfg, base, head, rounds, path, seed if seed is not None else secrets.randbelow(2**31), events)
    err.print(plain(f"recording: {path}"))


@trials.command("evaluate")
def trials_evaluate(
    path: Annotated[Path, typer.Argument(help="A recording")],
    pairs: Annotated[int, typer.Option("--pairs")] = 32,
    max_pairs: Annotated[int | None, typer.Option("--max-pairs")] = None,
    looks: Annotated[int, typer.Option("--looks")] = LOOKS,
    alpha: Annotated[float, typer.Option("--alpha")] = 0.01,
    threshold: Annotated[str, typer.Option("--threshold")] = "5%",
    json_path: Annotated[str | None, typer.Option("--json")] = None,
    resample: Annotated[int, typer.Option("--resample", help="Gates made of random blocks of rounds (0: disjoint "
                                          "windows)")] = 0,
    block: Annotated[int, typer.Option("--block", help="Consecutive rounds per block when resampling")] = 8,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the resampling")] = 0,
) -> None:
    """Apply the gate to disjoint windows of a recording (or, with --resample, to gates drawn from it): false
    alarms (A/A) and power (injected)."""
    from tritbench.errors import read_user_text
    from tritbench.execute.trials import evaluate

    read_user_text(path, "recording")
    g = GateConfig(parse_axis("env:X=a,b"), pairs=pairs, max_pairs=_max_pairs(pairs, max_pairs, looks), looks=looks,
                   alpha=alpha, threshold=fraction(threshold, "--threshold"))
    g.validate()
    if resample < 0 or block < 1:
        raise ConfigError(f"--resample must be >= 0 and --block >= 1, got {resample} and {block}")
    try:
        summary = evaluate(path, g.look_points(), g.alpha, g.threshold, g.min_effect, resample=resample,
                           block=block, seed=seed)
    except (ValueError, KeyError, TypeError) as exc:
        raise BenchError(f"{path} is not a gate-trials recording: {exc}") from None
    _print_trials(summary, json_path)


@trials.command("full")
def trials_full(
    trials_n: Annotated[int, typer.Option("--trials", help="Gates of each kind")] = 20,
    base: Base = DEFAULT_BASE, head: Head = DEFAULT_HEAD, suite: flags.Suite = None,
    backends: flags.Backends = None, formats: flags.Formats = None, n_prompt: flags.NPrompt = None,
    n_gen: flags.NGen = None, kinds: flags.Kinds = None, threads: flags.Threads = None,
    repetitions: Annotated[int | None, typer.Option("-r", "--repetitions", help="Repetitions per child")] = None,
    warmups: flags.Warmups = None,
    pairs: Annotated[int, typer.Option("--pairs")] = 32,
    max_pairs: Annotated[int | None, typer.Option("--max-pairs")] = None,
    looks: Annotated[int, typer.Option("--looks")] = LOOKS,
    out: Annotated[str, typer.Option("--out", help="Results folder of the gates")] = "results/gate-trials",
    log: Annotated[str | None, typer.Option("--log", help="Trials log, one line per finished gate; an existing "
                                            "one is continued (default: OUT/trials.jsonl)")] = None,
    json_path: Annotated[str | None, typer.Option("--json")] = None,
) -> None:
    """Run complete A/A and injected-slowdown gates, alternating, and tally their verdicts. Each finished gate
    is logged, and the same command continues the log until it holds --trials gates of each kind."""
    from tritbench.execute.trials import full

    cfg = _trial_config(suite, backends, formats, n_prompt, n_gen, kinds, threads, repetitions, warmups, out)
    events = flags.TerminalEvents()
    log_path = Path(log) if log else Path(out) / "trials.jsonl"
    if trials_n < 1:
        raise ConfigError(f"--trials must be >= 1, got {trials_n}")
    resume = f"the gates finished so far are in {log_path}, and the same command continues"
    with flags.measuring(events, after=f"; {resume}", nothing=f"interrupted: {resume}"):
        schedule = {"pairs": pairs, "max_pairs": _max_pairs(pairs, max_pairs, looks), "looks": looks}
        GateConfig(parse_axis("env:X=a,b"), **schedule).validate()
        summary = full(cfg, base, head, trials_n, schedule, log_path, events)
    _print_trials(summary, json_path)
