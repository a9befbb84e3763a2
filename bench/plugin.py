"""The backend interface and its discovery through the `tritbench.backends` entry-point group.

The core never imports a backend by name: it looks the name up here. A backend module must
import its heavy runtime (llama_cpp, onnxruntime, ...) lazily, inside `info()` and `open()`, so
that listing and validating backends stays cheap and a broken runtime fails inside the child.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, ClassVar, Protocol

from tritbench.errors import ConfigError

GROUP = "tritbench.backends"
# Most weight copies a kernel session holds for cold runs: tiny matrices would otherwise need thousands
# (each an onnxruntime session with its own thread pool); the record says when the cap left them cached.
MAX_WEIGHT_COPIES = 64
# Extra backends without packaging: TRITBENCH_PLUGINS="name=module:Class,other=pkg.mod:Other".
PLUGINS_ENV = "TRITBENCH_PLUGINS"


@dataclass(frozen=True)
class Option:
    """A backend setting the user can sweep (`--opt name=a,b`); `default` None means 'backend decides'."""

    type: type
    default: Any
    help: str

    def parse(self, name: str, value: Any) -> Any:
        """Convert a suite value or a command-line string to this option's type."""
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


class GenerationSession(Protocol):
    """A loaded model ready for pp/tg/pg tests. Every call returns only once the work is done."""

    n_vocab: int
    bos_token: int | None

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
    """A benchmarkable runtime. Class attributes describe it; instances live in the child process.

    Backends with pp/tg/pg in `workload_kinds` implement `open`; with gemv/gemm, `open_kernel`.
    """

    name: ClassVar[str]
    formats: ClassVar[tuple[str, ...]]
    workload_kinds: ClassVar[tuple[str, ...]]
    options: ClassVar[dict[str, Option]]

    def info(self) -> dict:
        """Version and build information: at least `version`."""

    def open(self, model_path: str, n_threads: int, options: dict, n_ctx: int) -> GenerationSession: ...

    def open_kernel(
        self, fmt: str, M: int, K: int, N: int, n_threads: int, options: dict, seed: int, min_total_bytes: int
    ) -> KernelSession:
        """Build the layer in format `fmt` from `tritbench.models.matrices.ternary_matrix(K, N, seed)`, with
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
        return eps[name].load()
    except Exception as exc:  # a plugin that cannot even be imported is the user's set-up problem
        raise ConfigError(f"backend '{name}' cannot be imported: {type(exc).__name__}: {exc}") from None
