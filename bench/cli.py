"""The `bench` command: run suites, manage models, list backends.

Errors in the user's input end as one line on stderr and exit code 2; a run whose cases failed
exits 1 after writing every record; Ctrl-C exits 130 after writing what was measured.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bench import machine, plugin
from bench.cli_cost import cost
from bench.cli_report import report
from bench.config import build_plan, case_id, load_suite, make_config
from bench.errors import BenchError, ConfigError
from bench.output import render
from bench.records import ResultsStore
from bench.runner import Runner, VariantRun

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Benchmark ternary (1.58-bit) LLMs.")
models_app = typer.Typer(no_args_is_help=True, help="Synthetic model presets and model files.")
list_app = typer.Typer(no_args_is_help=True, help="List what this installation has.")
app.add_typer(models_app, name="models")
app.add_typer(list_app, name="list")

err = Console(stderr=True)


def _stdout() -> Console:
    # Piped output gets room for a full table rather than rich's 80-column fallback.
    return Console() if sys.stdout.isatty() else Console(width=160)


def _split(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def _ints(text: str | None, name: str) -> list[int] | None:
    items = _split(text)
    if items is None:
        return None
    try:
        return [int(t) for t in items]
    except ValueError:
        raise ConfigError(f"{name} takes comma-separated integers, got '{text}'") from None


def _pairs(values: list[str] | None) -> list[list[int]] | None:
    if not values:
        return None
    out = []
    for v in values:
        nums = _ints(v, "--pg")
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
        out[key.strip()] = _split(rest)
    return out


def _ensure_models(variants) -> dict[str, dict]:
    """Synthesize missing preset files (once per spec for all formats), then read every file's metadata."""
    from models import read_model_info
    from models.synth import synthesize_many

    missing: dict = {}
    variants = [v for v in variants if not v.is_kernel]
    for v in variants:
        if v.model.spec is not None and not v.model.exists():
            missing.setdefault(v.model.spec, set()).add(v.model.format)
    for spec, fmts in missing.items():
        with err.status(f"synthesizing {spec.name} ({', '.join(sorted(fmts))})..."):
            synthesize_many(spec, sorted(fmts))
    infos: dict[str, dict] = {}
    for v in variants:
        path = str(v.model.path)
        if path not in infos:
            with err.status(f"reading {Path(path).name}..."):
                infos[path] = read_model_info(path).to_dict()
    return infos


def _idle_baseline(cfg):
    """The meter's idle reading before any case runs, or None (with a warning saying why)."""
    from bench.energy import measure_idle, select_meter

    meter = select_meter(cfg.energy)
    if not meter.available:
        if cfg.energy != "none":
            err.print(f"[yellow]warning:[/] energy: {meter.reason}", soft_wrap=True)
        return None
    if cfg.idle_s <= 0:
        return None
    with err.status(f"measuring idle power for {cfg.idle_s:g} s..."):
        return measure_idle(meter, cfg.idle_s)


def _probe_bandwidth(variants) -> dict[int, dict]:
    """Read bandwidth at each thread count the variants use, measured now, in this session: kernel
    cases report GB/s as a share of it, and the cost model's decode roofline divides it by bytes/token."""
    from bench.bandwidth import read_bandwidth_in_child

    out: dict[int, dict] = {}
    for t in sorted({v.n_threads for v in variants}):
        with err.status(f"probing read bandwidth with {t} thread(s)..."):
            out[t] = read_bandwidth_in_child(t)
    return out


@app.command()
def run(
    suite: Annotated[Path | None, typer.Argument(help="Suite TOML file (default: the built-in suite)")] = None,
    backends: Annotated[str | None, typer.Option("-b", "--backends", help="Backends, comma-separated")] = None,
    models: Annotated[str | None, typer.Option("-m", "--models", help="Presets or GGUF paths")] = None,
    formats: Annotated[str | None, typer.Option("-f", "--formats", help="f16,q8_0,q4_0,tq1_0,tq2_0")] = None,
    embd_type: Annotated[str | None, typer.Option("--embd-type", help="Presets: token-embedding type")] = None,
    output_type: Annotated[str | None, typer.Option("--output-type", help="Presets: output-matrix type")] = None,
    n_prompt: Annotated[str | None, typer.Option("-p", "--n-prompt", help="Prompt lengths (pp tests)")] = None,
    n_gen: Annotated[str | None, typer.Option("-n", "--n-gen", help="Generation lengths (tg tests)")] = None,
    pg: Annotated[list[str] | None, typer.Option("--pg", help="N_PROMPT,N_GEN (repeatable)")] = None,
    depth: Annotated[str | None, typer.Option("-d", "--depth", help="KV cache depths")] = None,
    workloads: Annotated[str | None, typer.Option("-w", "--workloads", help="pp,tg,pg and/or gemv,gemm")] = None,
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
    """Run backends over models and tests; write one JSON record per case under --out."""
    overrides = {
        "backends": _split(backends), "models": _split(models), "formats": _split(formats),
        "embd_type": embd_type, "output_type": output_type, "profile": profile,
        "n_prompt": _ints(n_prompt, "-p"), "n_gen": _ints(n_gen, "-n"), "pg": _pairs(pg),
        "depth": _ints(depth, "-d"), "threads": _ints(threads, "-t"), "repetitions": repetitions,
        "workloads": _split(workloads), "shapes": _split(shapes), "M": _ints(rows, "-M"), "cache": _split(cache),
        "warmups": warmups, "rounds": rounds, "options": _options(opt), "out": out, "output": output,
        "timeout": timeout, "seed": seed, "energy": energy, "idle_s": idle_s,
    }
    cfg = make_config(load_suite(suite), overrides)
    variants = build_plan(cfg, machine.physical_cores())
    infos = _ensure_models(variants)
    store = ResultsStore.latest(Path(cfg.out)) if resume else ResultsStore.create(Path(cfg.out))
    finished = store.finished_case_ids() if resume else set()
    runs = []
    for v in variants:
        info = {} if v.is_kernel else infos[str(v.model.path)]
        pending = [w for w in v.workloads if case_id(v, w, info.get("sha256")) not in finished]
        runs.append(VariantRun(v, info, pending))
    skipped = sum(len(v.workloads) for v in variants) - sum(len(r.pending) for r in runs)
    if skipped:
        err.print(f"resuming {store.path}: {skipped} finished cases skipped")
    def warn(msg: str) -> None:
        err.print(f"[yellow]warning:[/] {msg}", soft_wrap=True)

    idle = _idle_baseline(cfg)
    bandwidth = _probe_bandwidth(variants)
    runner = Runner(cfg, runs, store, machine.fingerprint(), on_warning=warn, read_bandwidth=bandwidth,
                    idle=idle)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=err, transient=True) as progress:
            task = progress.add_task("running", total=runner.child_count())

            def advance(vr: VariantRun) -> None:
                progress.update(task, advance=1, description=vr.variant.label)

            runner.on_child_done = advance
            records = runner.run()
    except KeyboardInterrupt:
        err.print(f"interrupted: finished cases are kept in {store.path}; `bench run ... --resume` continues")
        raise typer.Exit(130) from None
    # Print in plan order (variants as listed, tests as listed), not in the interleaved finishing order.
    order = {
        case_id(vr.variant, w, vr.model_info.get("sha256")): i
        for i, (vr, w) in enumerate((vr, w) for vr in runs for w in vr.variant.workloads)
    }
    shown = store.records() if resume else [r.to_dict() for r in records]
    shown.sort(key=lambda r: order.get(r["case_id"], len(order)))
    sys.stdout.write(render(shown, cfg.output))
    err.print(f"results: {store.path}")
    if any(r.status != "ok" for r in records):
        raise typer.Exit(1)


@models_app.command("list")
def models_list() -> None:
    """Show the synthetic model presets."""
    from models import PRESETS

    table = Table(box=box.SIMPLE, padding=(0, 1), pad_edge=False)
    table.add_column("preset", no_wrap=True)
    for col in ("arch", "params", "hidden", "layers", "ffn", "heads", "kv", "vocab", "ctx"):
        table.add_column(col)
    for name, s in PRESETS.items():
        table.add_row(name, s.arch, f"{s.n_params() / 1e6:.0f}M", str(s.hidden), str(s.layers), str(s.ffn),
                      str(s.heads), str(s.kv_heads), str(s.vocab), str(s.n_ctx))
    _stdout().print(table)


@models_app.command("synth")
def models_synth(
    presets: Annotated[str, typer.Argument(help="Preset names, comma-separated")],
    formats: Annotated[str, typer.Option("-f", "--formats")] = "f16,q8_0,q4_0,tq1_0,tq2_0",
    embd_type: Annotated[str | None, typer.Option("--embd-type", help="Token-embedding type")] = None,
    output_type: Annotated[str | None, typer.Option("--output-type", help="Output-matrix type")] = None,
) -> None:
    """Write (or find cached) GGUF files for presets; prints their paths."""
    from models import get_preset, resolve_model
    from models.synth import synthesize_many

    for name in _split(presets) or []:
        get_preset(name)  # a file path is not a preset: say so rather than read it
        variants = resolve_model(name, _split(formats) or [], embd_type=embd_type, output_type=output_type)
        with err.status(f"synthesizing {variants[0].name}..."):
            paths = synthesize_many(variants[0].spec, [v.format for v in variants])
        for fmt, path in paths.items():
            print(f"{variants[0].name}\t{fmt}\t{path}")


@models_app.command("info")
def models_info(
    model: Annotated[str, typer.Argument(help="A GGUF path, or a preset name with -f")],
    fmt: Annotated[str, typer.Option("-f", "--format", help="Format, for a preset")] = "tq2_0",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Read a model file's metadata: architecture, parameters, tensor types, bits per weight, sha256."""
    import json

    from models import read_model_info, resolve_model

    (variant,) = resolve_model(model, [fmt])[:1]
    info = read_model_info(str(variant.ensure())).to_dict()
    if as_json:
        print(json.dumps(info, indent=2))
        return
    table = Table("field", "value", show_header=False)
    for k, v in info.items():
        table.add_row(k, json.dumps(v) if isinstance(v, (dict, list)) else str(v))
    _stdout().print(table)


@list_app.command("backends")
def list_backends() -> None:
    """Installed backends with their formats, tests and options."""
    backends = Table("backend", "formats", "tests", box=box.SIMPLE, padding=(0, 1), pad_edge=False)
    options = Table("backend", "option", "default", "meaning", box=box.SIMPLE, padding=(0, 1), pad_edge=False)
    for name in sorted(plugin.available()):
        try:
            cls = plugin.load(name)
        except ConfigError as exc:
            backends.add_row(name, f"[red]{exc}[/]", "")
            continue
        backends.add_row(name, ", ".join(cls.formats), ", ".join(cls.workload_kinds))
        for key, o in cls.options.items():
            options.add_row(name, key, "auto" if o.default is None else str(o.default), o.help)
    _stdout().print(backends, options)


@app.command("machine")
def machine_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    no_bandwidth: Annotated[bool, typer.Option("--no-bandwidth", help="Skip the read-bandwidth probe")] = False,
) -> None:
    """This machine's fingerprint, its state now, and its read bandwidth (1 thread and all threads)."""
    import json

    from bench.bandwidth import read_bandwidth
    from bench.energy import probe_meters

    info = {"machine": machine.fingerprint(), "state": machine.state(),
            "energy": {p.kind: p.to_dict() for p in probe_meters()}}
    if not no_bandwidth:
        cores = machine.physical_cores()
        with err.status("probing read bandwidth..."):
            info["read_bandwidth"] = {str(t): read_bandwidth(t) for t in sorted({1, cores})}
    if as_json:
        print(json.dumps(info, indent=2))
        return
    table = Table("field", "value", show_header=False, box=box.SIMPLE, padding=(0, 1), pad_edge=False)
    for section, values in info.items():
        for k, v in values.items():
            table.add_row(f"{section}.{k}", json.dumps(v) if isinstance(v, (dict, list)) else str(v))
    _stdout().print(table)


app.command("cost")(cost)
app.command("report")(report)


def main() -> None:
    """Entry point: one-line errors and fixed exit codes instead of tracebacks."""
    from models import ModelError

    try:
        app()  # standalone: usage errors exit 2 and typer.Exit sets the code
    except (BenchError, ModelError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
