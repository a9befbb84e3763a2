"""The backend API and its discovery through the `tritbench.backends` entry-point group.

Two kinds of backend: a `GenerationBackend` loads a model file and runs pp/tg/pg workloads, a
`KernelBackend` builds one linear layer and runs gemv/gemm workloads; one class may be both. The core
never imports a backend by name: it looks the name up here. A backend module imports its heavy runtime
(llama_cpp, onnxruntime, ...) lazily, inside `info()` and `open()`, so that listing and validating
backends stays cheap and a broken runtime fails inside the child.

A backend owns the facts about what it runs: its formats (`FormatInfo`: bits per weight, ternary or not,
the baseline a format is compared with), the Python distributions that are its runtime (recorded in the
machine fingerprint), and, for generation, how to check its own counters.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, ClassVar, Protocol, runtime_checkable

from tritbench.errors import ConfigError

GROUP = "tritbench.backends"
# Most weight copies a kernel session holds for cold runs: tiny matrices would otherwise need thousands
# (each an onnxruntime session with its own thread pool); the record says when the cap left them cached.
MAX_WEIGHT_COPIES = 64
# Extra backends without packaging: TRITBENCH_PLUGINS="name=module:Class,other=pkg.mod:Other".
PLUGINS_ENV = "TRITBENCH_PLUGINS"
GENERATION_KINDS = ("pp", "tg", "pg")
KERNEL_KINDS = ("gemv", "gemm")


@dataclass(frozen=True)
class Option:
    """A backend setting the user can sweep (`--opt name=a,b`); `default` None means 'backend decides'."""

    type: type
    default: Any
    help: str
    minimum: float | None = None  # numbers below it are refused (e.g. a batch of 0 tokens)
    required: bool = False  # no default: a plan with this backend must give it (a peer build's binary)

    def parse(self, name: str, value: Any) -> Any:
        """Convert a suite value or a command-line string to this option's type, within its bounds."""
        parsed = self._convert(name, value)
        if self.minimum is not None and (parsed != parsed or parsed < self.minimum):  # NaN too
            raise ConfigError(f"option {name} must be >= {self.minimum:g}, got {value!r}")
        return parsed

    def _convert(self, name: str, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip().lower()
            if self.type is bool:
                if text in ("1", "true", "on", "yes"):
                    return True
                if text in ("0", "false", "off", "no"):
                    return False
                raise ConfigError(f"option {name} takes a boolean (0/1, on/off), got '{value}'")
            try:
                return self.type(text)
            except ValueError:
                raise ConfigError(f"option {name} takes a {self.type.__name__}, got '{value}'") from None
        if self.type is bool and isinstance(value, int) and value in (0, 1):
            return bool(value)
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, self.type) or (self.type is int and isinstance(value, bool)):
            raise ConfigError(f"option {name} takes a {self.type.__name__}, got {value!r}")
        return value


def ggml_block(ggml_type: str) -> tuple[int, int]:
    """(weights, bytes) of one block of a GGML type, from gguf's table (imported here: the measuring child
    never asks)."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        return GGML_QUANT_SIZES[GGMLQuantizationType[ggml_type.upper()]]
    except KeyError:
        raise ConfigError(f"unknown GGML type {ggml_type!r}") from None


@dataclass(frozen=True)
class FormatInfo:
    """What the core and the reports know of one weight format.

    `ternary`: a 1.58-bit format (weights in {-1, 0, +1} times a scale). `baseline`: the format speed-ups
    of this one are measured against (None: it is a baseline). Bits per weight of the linear layers come
    from gguf for a GGML type (`ggml_type`), else from `bits` (None: they depend on the file or layer)."""

    ternary: bool = False
    baseline: str | None = None
    ggml_type: str | None = None
    bits: float | None = None

    @property
    def bits_per_weight(self) -> float | None:
        if self.ggml_type:
            weights, nbytes = ggml_block(self.ggml_type)
            return 8 * nbytes / weights
        return self.bits


class GenerationSession(Protocol):
    """A loaded model ready for pp/tg/pg workloads. Every call returns only once the work is done."""

    n_vocab: int
    bos_token: int | None
    weights_mapped: bool | None  # weights memory-mapped from the file (file-backed RSS); None: unknown

    def effective_settings(self) -> dict:
        """The settings the backend actually uses (threads, batch sizes, context...)."""

    def reset(self) -> None:
        """Empty the KV cache so that the next token starts at position 0."""

    def prefill(self, tokens: list[int]) -> None:
        """Process tokens in batches, appending them to the KV cache."""

    def decode(self, token: int) -> None:
        """Process one token at the next position."""

    def reset_counters(self) -> None:
        """Zero the backend's own performance counters."""

    def counters(self) -> dict:
        """The backend's own counts and timings since reset_counters: keys n_prompt, n_gen,
        prompt_ms, gen_ms (None where the backend has no such counter)."""

    def check_counters(self, n_prompt: int, n_gen: int, counters: dict) -> str | None:
        """None if `counters` show exactly the work of one repetition (a prefill of `n_prompt` tokens, then
        `n_gen` single-token decodes), else what differs: e.g. a reused cached prefix."""

    def close(self) -> None: ...


class KernelSession(Protocol):
    """One linear layer (M x K input, K x N weights) ready to run; `run()` returns when the output is ready.

    For cold-cache measurement the session holds several weight copies, `weight_bytes` apart in total
    `copies * weight_bytes`, and each `run()` uses the next one, so weights stream from DRAM."""

    weight_bytes: int  # bytes of weights one call reads (packed, as stored)
    copies: int

    def effective_settings(self) -> dict: ...

    def run(self) -> None: ...

    def close(self) -> None: ...


class Backend(Protocol):
    """What every backend class declares. Instances live in the child process."""

    name: ClassVar[str]
    formats: ClassVar[dict[str, FormatInfo]]
    workload_kinds: ClassVar[tuple[str, ...]]
    options: ClassVar[dict[str, Option]]
    libraries: ClassVar[tuple[str, ...]]  # Python distributions of its runtime, versions recorded per machine

    def info(self) -> dict:
        """Version and build information: at least `version`."""


@runtime_checkable
class GenerationBackend(Backend, Protocol):
    """A backend with pp/tg/pg among its `workload_kinds`."""

    def open(self, model_path: str, n_threads: int, options: dict, n_ctx: int) -> GenerationSession:
        """Load the model at `model_path`. A backend that lists a derived format (models.DERIVED_FORMATS) among
        its `formats` is also given `fmt=` for those: it makes that format itself from the file at `model_path`
        (the file of the format DERIVED_FORMATS names)."""


@runtime_checkable
class KernelBackend(Backend, Protocol):
    """A backend with gemv/gemm among its `workload_kinds`."""

    def open_kernel(
        self, fmt: str, M: int, K: int, N: int, n_threads: int, options: dict, seed: int, min_total_bytes: int
    ) -> KernelSession:
        """Build the layer in format `fmt` from `models.matrices.ternary_matrix(K, N, seed)`, with
        enough weight copies that together they span at least `min_total_bytes` (0: one copy), but
        never more than MAX_WEIGHT_COPIES."""


def available() -> dict[str, Any]:
    """Backend name -> entry point, for every installed backend and every one named in TRITBENCH_PLUGINS."""
    eps: dict[str, Any] = {ep.name: ep for ep in entry_points(group=GROUP)}
    for item in filter(None, (t.strip() for t in os.environ.get(PLUGINS_ENV, "").split(","))):
        name, sep, target = item.partition("=")
        if not sep or ":" not in target:
            raise ConfigError(f"{PLUGINS_ENV}: expected NAME=MODULE:CLASS, got '{item}'")
        eps[name.strip()] = EntryPoint(name.strip(), target.strip(), GROUP)
    return eps


def load(name: str) -> type:
    """The backend class registered under `name`, or a ConfigError listing the known ones."""
    eps = available()
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none installed"
        raise ConfigError(f"unknown backend '{name}' (known: {known})")
    try:
        cls = eps[name].load()
    except Exception as exc:  # a plugin that cannot even be imported is the user's set-up problem
        raise ConfigError(f"backend '{name}' cannot be imported: {type(exc).__name__}: {exc}") from None
    for kinds, method in ((GENERATION_KINDS, "open"), (KERNEL_KINDS, "open_kernel")):
        if any(k in kinds for k in getattr(cls, "workload_kinds", ())) and not callable(getattr(cls, method, None)):
            raise ConfigError(f"backend '{name}' lists {'/'.join(kinds)} workloads but has no {method}()")
    return cls


def format_info(fmt: str) -> FormatInfo | None:
    """What the installed backends declare of format `fmt` (the first that declares it), None if none does."""
    return _declared_formats().get(str(fmt).lower())


@functools.lru_cache(maxsize=1)
def _declared_formats() -> dict[str, FormatInfo]:
    out: dict[str, FormatInfo] = {}
    for name in sorted(available()):
        try:
            formats = load(name).formats
        except ConfigError:
            continue
        for fmt, info in formats.items():
            out.setdefault(fmt.lower(), info)
    return out


def is_ternary(fmt: str) -> bool:
    """Is `fmt` a 1.58-bit format? The one rule: what the backend that runs it declares."""
    info = format_info(fmt)
    return bool(info and info.ternary)


def libraries_of(names: list[str]) -> list[str]:
    """The runtime libraries the named backends declare (those that cannot be loaded declare none)."""
    out: list[str] = []
    for name in names:
        try:
            out += getattr(load(name), "libraries", ())
        except ConfigError:
            continue
    return out
