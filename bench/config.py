"""Run configuration: a TOML suite and command-line lists merged, checked, and expanded into a plan.

A plan is a list of variants (backend x model file x threads x backend options); each variant
carries the workloads it runs, and each (variant, workload) pair is one case with one record.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from bench import plugin
from bench.errors import ConfigError
from bench.profiles import allowed_cpus, get_profile, parse_profiles
from bench.workloads import KINDS, LLM_KINDS, Workload, kernel_workloads, llm_workloads, shapes_of

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

OUTPUTS = ("md", "csv", "json", "jsonl")
CACHE_MODES = ("cold", "hot")


@dataclass
class RunConfig:
    """Everything `bench run` needs; every list is swept as a cartesian product."""

    backends: list[str] = field(default_factory=lambda: ["llamacpp"])
    models: list[str] = field(default_factory=lambda: ["small"])
    formats: list[str] = field(default_factory=lambda: ["f16", "q4_0", "tq1_0", "tq2_0"])
    embd_type: str | None = None  # presets: token-embedding type (default: the preset's, f16)
    output_type: str | None = None  # presets: output-matrix type (default: the preset's, f16)
    n_prompt: list[int] = field(default_factory=lambda: [128])
    n_gen: list[int] = field(default_factory=lambda: [64])
    pg: list[list[int]] = field(default_factory=list)
    depth: list[int] = field(default_factory=lambda: [0])
    workloads: list[str] = field(default_factory=lambda: list(LLM_KINDS))
    shapes: list[str] = field(default_factory=lambda: ["7b"])  # kernel tests: KxN or a preset's layers
    M: list[int] = field(default_factory=lambda: [1, 8, 64])  # kernel tests: activation rows (gemm: M >= 2)
    cache: list[str] = field(default_factory=lambda: ["cold"])  # kernel tests: weights from DRAM or cache
    threads: list[int] = field(default_factory=list)  # empty: physical cores (or the profile's threads)
    profile: str | None = None  # run every case as this edge profile (bench.profiles)
    profiles: dict = field(default_factory=dict)  # custom profiles: name -> {cpus, memory, threads}
    repetitions: int = 5
    warmups: int = 2
    rounds: int | None = None  # None: one round per repetition, variants interleaved
    options: dict[str, list] = field(default_factory=dict)
    out: str = "results"
    output: str = "md"
    timeout: float = 1800.0
    energy: str = "auto"  # energy meter: auto, rapl, pyrapl, jetson, hwmon, pi5, powermetrics, none
    idle_s: float = 2.0  # idle-power baseline before the run (0: none)
    seed: int = 0

    def validate(self) -> None:
        for name in ("backends", "models", "formats", "depth"):
            if not getattr(self, name):
                raise ConfigError(f"{name} is empty")
        if self.repetitions < 1:
            raise ConfigError(f"repetitions must be >= 1, got {self.repetitions}")
        if self.warmups < 0:
            raise ConfigError(f"warmups must be >= 0, got {self.warmups}")
        if self.rounds is not None and not 1 <= self.rounds <= self.repetitions:
            raise ConfigError(f"rounds must be between 1 and repetitions ({self.repetitions}), got {self.rounds}")
        for t in self.threads:
            if t < 1:
                raise ConfigError(f"threads must be >= 1, got {t}")
        for pair in self.pg:
            if len(pair) != 2:
                raise ConfigError(f"a pg test needs two numbers (n_prompt, n_gen), got {pair}")
        for kind in self.workloads:
            if kind not in KINDS:
                raise ConfigError(f"unknown workload '{kind}' (known: {', '.join(KINDS)})")
        for mode in self.cache:
            if mode not in CACHE_MODES:
                raise ConfigError(f"unknown cache mode '{mode}' (known: {', '.join(CACHE_MODES)})")
        for m in self.M:
            if m < 1:
                raise ConfigError(f"M must be >= 1, got {m}")
        if self.profile is not None:
            get_profile(self.profile, parse_profiles(self.profiles))
        if self.output not in OUTPUTS:
            raise ConfigError(f"unknown output format '{self.output}' (known: {', '.join(OUTPUTS)})")
        from bench.energy import METER_KINDS

        if self.energy not in METER_KINDS:
            raise ConfigError(f"unknown energy meter '{self.energy}' (known: {', '.join(METER_KINDS)})")
        if self.idle_s < 0:
            raise ConfigError(f"idle_s must be >= 0, got {self.idle_s}")
        if self.timeout <= 0:
            raise ConfigError(f"timeout must be > 0 seconds, got {self.timeout}")

    def tests(self) -> list[Workload]:
        """Every test asked for: llama-bench-style ones if pp/tg/pg are among `workloads`
        (driven by n_prompt, n_gen, pg and depth), kernel ones if gemv/gemm are."""
        kinds = list(dict.fromkeys(self.workloads))
        out: list[Workload] = []
        llm_kinds = [k for k in kinds if k in LLM_KINDS]
        if llm_kinds:
            tests = llm_workloads(self.n_prompt, self.n_gen, [tuple(p) for p in self.pg], self.depth)
            out += [w for w in tests if w.kind in llm_kinds]
            if not out:
                raise ConfigError(f"no {'/'.join(llm_kinds)} test: set -p, -n or --pg")
        kernel_kinds = [k for k in kinds if k not in LLM_KINDS]
        if kernel_kinds:
            out += kernel_workloads(kernel_kinds, shapes_of(self.shapes), self.M)
        if not out:
            raise ConfigError("no test to run")
        return out


_LIST_INT = {"n_prompt", "n_gen", "depth", "threads", "M"}
_LIST_STR = {"backends", "models", "formats", "workloads", "shapes", "cache"}
_SCALAR = {
    "embd_type": str, "output_type": str, "profile": str, "repetitions": int, "warmups": int, "rounds": int, "out": str,
    "output": str, "timeout": float, "seed": int, "energy": str, "idle_s": float,
}


def _check_type(key: str, value: Any, where: str) -> Any:
    if key in _LIST_INT or key in _LIST_STR:
        want = int if key in _LIST_INT else str
        if not isinstance(value, list):
            value = [value]
        for v in value:
            if not isinstance(v, want) or isinstance(v, bool):
                raise ConfigError(f"{where}: '{key}' takes a list of {want.__name__}s, got {v!r}")
        return value
    if key == "pg":
        if not isinstance(value, list) or not all(
            isinstance(p, list) and all(isinstance(x, int) for x in p) for p in value
        ):
            raise ConfigError(f"{where}: 'pg' takes a list of [n_prompt, n_gen] pairs, got {value!r}")
        return value
    if key == "profiles":
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: 'profiles' must be a table of tables")
        parse_profiles(value)
        return value
    if key == "options":
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: 'options' must be a table")
        return {k: v if isinstance(v, list) else [v] for k, v in value.items()}
    want = _SCALAR[key]
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, want) or isinstance(value, bool):
        raise ConfigError(f"{where}: '{key}' takes a {want.__name__}, got {value!r}")
    return value


def parse_suite(data: dict, where: str = "suite") -> dict:
    """Check a suite table's keys and types; unknown keys are errors (a typo must not be ignored)."""
    known = {f.name for f in fields(RunConfig)}
    out = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown key '{key}' (known: {', '.join(sorted(known))})")
        out[key] = _check_type(key, value, where)
    return out


def load_suite(path: Path | None) -> dict:
    """A suite file's settings; None gives the built-in default suite."""
    if path is None:
        text = resources.files("bench").joinpath("suites/default.toml").read_text()
        where = "default suite"
    else:
        try:
            text = Path(path).read_text()
        except FileNotFoundError:
            raise ConfigError(f"suite file not found: {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read suite file {path}: {exc}") from None
        where = str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: invalid TOML: {exc}") from None
    return parse_suite(data, where)


def make_config(suite: dict, overrides: dict) -> RunConfig:
    """Suite values, then command-line values on top (None means 'not given')."""
    merged = {**suite, **{k: v for k, v in overrides.items() if v is not None}}
    cfg = RunConfig(**merged)
    cfg.validate()
    return cfg


@dataclass(frozen=True)
class KernelWeights:
    """What a kernel variant multiplies by: seeded ternary matrices in one format (no model file)."""

    format: str
    name: str = "ternary-matrix"
    path: None = None
    spec: None = None

    def exists(self) -> bool:
        return True


@dataclass
class Variant:
    """One backend with one model file (or kernel weight format) and fixed settings; it runs several workloads."""

    backend: str
    model: Any  # models.ModelVariant, or KernelWeights for kernel tests
    n_threads: int
    options: dict
    workloads: list[Workload]
    swept: tuple[str, ...] = ()  # option names the user set, shown in labels
    cache: str | None = None  # kernel tests only
    limits: dict | None = None  # an edge profile's resolved limits (bench.profiles)

    @property
    def is_kernel(self) -> bool:
        return isinstance(self.model, KernelWeights)

    @property
    def label(self) -> str:
        opts = ",".join(f"{k}={self.options[k]}" for k in self.swept)
        head = f"{self.backend}/{self.model.name}/{self.model.format}/t{self.n_threads}"
        return head + (f"/{self.cache}" if self.cache else "") + (f"/{opts}" if opts else "")

    @property
    def n_ctx(self) -> int:
        return max((w.n_tokens for w in self.workloads), default=0)


def case_id(variant: Variant, workload: Workload, model_sha256: str | None) -> str:
    """Identity of a case for --resume: same backend, model contents, settings and test."""
    key = {
        "backend": variant.backend,
        "model": variant.model.name,
        "format": variant.model.format,
        "sha256": model_sha256,
        "n_threads": variant.n_threads,
        "options": variant.options,
        "workload": workload.name,
        "cache": variant.cache,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _backend_option_sets(backend_cls: type, options: dict[str, list]) -> list[dict]:
    """The cartesian product of this backend's options (its defaults where not swept)."""
    spec = backend_cls.options
    names = list(spec)
    values = [
        [spec[n].parse(n, v) for v in options[n]] if n in options else [spec[n].default] for n in names
    ]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]


def build_plan(cfg: RunConfig, default_threads: int) -> list[Variant]:
    """Expand the config into variants, checking every name before anything runs.

    Each backend runs the requested tests and formats it supports; a test kind or format that no
    selected backend supports, or a backend that supports none of them, is an error.
    """
    from models import resolve_model

    tests = cfg.tests()
    classes = {name: plugin.load(name) for name in dict.fromkeys(cfg.backends)}
    for opt in cfg.options:
        if not any(opt in cls.options for cls in classes.values()):
            known = sorted({o for cls in classes.values() for o in cls.options})
            raise ConfigError(f"unknown option '{opt}' for backends {', '.join(classes)} (known: {', '.join(known)})")
    _check_coverage(classes, tests, cfg.formats)
    limits = None
    if cfg.profile:
        limits = get_profile(cfg.profile, parse_profiles(cfg.profiles)).resolve(allowed_cpus())
        default_threads = limits["threads"]
        for t in cfg.threads:
            if t > len(limits["cpus"]):
                raise ConfigError(f"{t} threads exceed the {len(limits['cpus'])} CPUs of profile '{cfg.profile}'")
    threads = cfg.threads or [default_threads]
    formats = list(dict.fromkeys(cfg.formats))
    variants: list[Variant] = []
    for name, cls in classes.items():
        mine = [w for w in tests if w.kind in cls.workload_kinds]
        llm, kernel = [w for w in mine if not w.is_kernel], [w for w in mine if w.is_kernel]
        my_formats = [f for f in formats if f in cls.formats]
        opt_sets = _backend_option_sets(cls, {k: v for k, v in cfg.options.items() if k in cls.options})
        settings = list(itertools.product(threads, opt_sets))
        for t, opts in settings:
            swept = tuple(k for k in opts if k in cfg.options)
            if llm:
                for ref in dict.fromkeys(cfg.models):
                    for model in resolve_model(ref, my_formats, embd_type=cfg.embd_type,
                                               output_type=cfg.output_type):
                        variants.append(Variant(name, model, t, opts, llm, swept, limits=limits))
            for fmt in my_formats if kernel else []:
                for mode in dict.fromkeys(cfg.cache):
                    variants.append(Variant(name, KernelWeights(fmt), t, opts, kernel, swept, mode, limits))
    return variants


def _check_coverage(classes: dict[str, type], tests: list[Workload], formats: list[str]) -> None:
    kinds = list(dict.fromkeys(w.kind for w in tests))
    for kind in kinds:
        if not any(kind in cls.workload_kinds for cls in classes.values()):
            raise ConfigError(f"no selected backend runs {kind} tests (backends: {', '.join(classes)})")
    for fmt in formats:
        if not any(fmt in cls.formats for cls in classes.values()):
            known = ", ".join(f"{n}: {'/'.join(c.formats)}" for n, c in classes.items())
            raise ConfigError(f"no selected backend has format '{fmt}' ({known})")
    for name, cls in classes.items():
        if not any(k in cls.workload_kinds for k in kinds):
            runs = ", ".join(cls.workload_kinds)
            raise ConfigError(f"backend '{name}' runs none of the requested tests (it runs: {runs})")
        if not any(f in cls.formats for f in formats):
            raise ConfigError(f"backend '{name}' has none of the requested formats (known: {', '.join(cls.formats)})")
