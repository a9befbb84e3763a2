"""Run configuration: the built-in default suite, a user's TOML suite over it, and command-line values over
both, type-checked and validated into one `RunConfig`. Every default lives in suites/default.toml."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from tritbench.errors import ConfigError, read_user_text
from tritbench.plan.profiles import get_profile, parse_profiles
from tritbench.plan.workloads import GENERATION_KINDS, KINDS, Workload, kernel_workloads, llm_workloads, shapes_of

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

OUTPUTS = ("md", "csv", "json", "jsonl")
# Bounds on values that parse but that no run can take: each child is a process, so a billion repetitions
# is a billion processes (the plan alone would not fit in memory).
MAX_REPETITIONS = 10_000
MAX_WARMUPS = 1_000
MAX_SEED = 2**63 - 1
CACHE_MODES = ("cold", "hot")


@dataclass
class RunConfig:
    """Everything `bench run` needs; every list is swept as a cartesian product. The values of a run
    that names nothing are those of suites/default.toml (`default_suite()`)."""

    backends: list[str]
    models: list[str]
    formats: list[str]
    n_prompt: list[int]
    n_gen: list[int]
    pg: list[list[int]]
    depth: list[int]
    kinds: list[str]  # workload kinds: pp, tg, pg (from n_prompt, n_gen, pg) and/or gemv, gemm
    shapes: list[str]  # kernel workloads: KxN or a preset's linear layers
    M: list[int]  # kernel workloads: activation rows (gemm: M >= 2)
    cache: list[str]  # kernel workloads: weights from DRAM (cold) or cache (hot)
    threads: list[int]  # empty: physical cores (or the profile's threads)
    profiles: dict  # custom profiles: name -> {cpus, memory, threads}
    repetitions: int
    warmups: int
    options: dict[str, list]
    out: str
    output: str
    timeout: float
    energy: str  # energy meter: auto, rapl, pyrapl, jetson, hwmon, pi5, powermetrics, none
    idle_s: float  # idle-power baseline before the run (0: none)
    seed: int
    # TOML has no null: these are absent from the default suite, and None means "not set".
    embd_type: str | None = None  # presets: token-embedding type (default: the preset's, f16)
    output_type: str | None = None  # presets: output-matrix type (default: the preset's, f16)
    profile: str | None = None  # run every case as this edge profile (tritbench.plan.profiles)
    rounds: int | None = None  # None: one round per repetition, variants interleaved

    def validate(self) -> None:
        for name in ("backends", "models", "formats", "depth"):
            if not getattr(self, name):
                raise ConfigError(f"{name} is empty")
        if not 1 <= self.repetitions <= MAX_REPETITIONS:
            raise ConfigError(f"repetitions must be between 1 and {MAX_REPETITIONS}, got {self.repetitions}")
        if not 0 <= self.warmups <= MAX_WARMUPS:
            raise ConfigError(f"warmups must be between 0 and {MAX_WARMUPS}, got {self.warmups}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed must be between 0 and 2**63-1, got {self.seed}")
        if self.rounds is not None and not 1 <= self.rounds <= self.repetitions:
            raise ConfigError(f"rounds must be between 1 and repetitions ({self.repetitions}), got {self.rounds}")
        for t in self.threads:
            if t < 1:
                raise ConfigError(f"threads must be >= 1, got {t}")
        for pair in self.pg:
            if len(pair) != 2:
                raise ConfigError(f"a pg workload needs two numbers (n_prompt, n_gen), got {pair}")
        for kind in self.kinds:
            if kind not in KINDS:
                raise ConfigError(f"unknown workload kind '{kind}' (known: {', '.join(KINDS)})")
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
        from tritbench.measure.energy import METER_KINDS

        if self.energy not in METER_KINDS:
            raise ConfigError(f"unknown energy meter '{self.energy}' (known: {', '.join(METER_KINDS)})")
        if not (math.isfinite(self.idle_s) and self.idle_s >= 0):
            raise ConfigError(f"idle_s must be a finite number of seconds >= 0, got {self.idle_s}")
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ConfigError(f"timeout must be a finite number of seconds > 0, got {self.timeout}")
        if not self.out.strip():
            raise ConfigError("out is empty: name a results folder")

    def workloads(self) -> list[Workload]:
        """Every workload asked for: llama-bench-style ones if pp/tg/pg are among `kinds` (driven by
        n_prompt, n_gen, pg and depth), kernel ones if gemv/gemm are."""
        kinds = list(dict.fromkeys(self.kinds))
        out: list[Workload] = []
        llm_kinds = [k for k in kinds if k in GENERATION_KINDS]
        if llm_kinds:
            workloads = llm_workloads(self.n_prompt, self.n_gen, [tuple(p) for p in self.pg], self.depth)
            out += [w for w in workloads if w.kind in llm_kinds]
            if not out:
                raise ConfigError(f"no {'/'.join(llm_kinds)} workload: set -p, -n or --pg")
        kernel_kinds = [k for k in kinds if k not in GENERATION_KINDS]
        if kernel_kinds:
            out += kernel_workloads(kernel_kinds, shapes_of(self.shapes), self.M)
        if not out:
            raise ConfigError("no workload to run")
        return out


_LIST_INT = {"n_prompt", "n_gen", "depth", "threads", "M"}
_LIST_STR = {"backends", "models", "formats", "kinds", "shapes", "cache"}
_SCALAR = {
    "embd_type": str, "output_type": str, "profile": str, "repetitions": int, "warmups": int, "rounds": int, "out": str,
    "output": str, "timeout": float, "seed": int, "energy": str, "idle_s": float,
}
# Keys that were renamed: a suite still using the old name gets told the new one.
_RENAMED = {"workloads": "kinds"}


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
        if key in _RENAMED:
            raise ConfigError(f"{where}: '{key}' is now called '{_RENAMED[key]}'")
        if key not in known:
            raise ConfigError(f"{where}: unknown key '{key}' (known: {', '.join(sorted(known))})")
        out[key] = _check_type(key, value, where)
    return out


def _parse_toml(text: str, where: str) -> dict:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: invalid TOML: {exc}") from None
    return parse_suite(data, where)


def builtin_suite(name: str) -> dict:
    """A suite shipped in suites/: `default` (what `bench run` runs with no arguments, and every setting's
    default) or `gate` (what `bench gate` gates, and its defaults over `default`)."""
    return _parse_toml(resources.files("tritbench").joinpath(f"suites/{name}.toml").read_text(), f"{name} suite")


def default_suite() -> dict:
    return builtin_suite("default")


def read_suite(path: Path) -> dict:
    """The settings a user's suite file sets, and only those."""
    return _parse_toml(read_user_text(Path(path), "suite"), str(path))


def load_suite(path: Path | None) -> dict:
    """A suite file's settings over the default suite's; None gives the default suite."""
    if path is None:
        return default_suite()
    return {**default_suite(), **read_suite(path)}


def make_config(suite: dict, overrides: dict) -> RunConfig:
    """Suite values, then command-line values on top (None means 'not given')."""
    merged = {**default_suite(), **suite, **{k: v for k, v in overrides.items() if v is not None}}
    cfg = RunConfig(**merged)
    cfg.validate()
    return cfg
