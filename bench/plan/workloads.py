"""Workloads: llama-bench's tests (here: workloads) pp<N>, tg<N>, pg<N>,<M> (each optionally `@ d<D>`), and kernel
workloads `gemv KxN` (one token) and `gemm M<m> KxN` (m tokens) of one linear layer."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from tritbench.errors import ConfigError
from tritbench.plugin import GENERATION_KINDS, KERNEL_KINDS

KINDS = GENERATION_KINDS + KERNEL_KINDS

_NAME = re.compile(r"^\s*(pp|tg|pg)(\d+)(?:,(\d+))?\s*(?:@\s*d(\d+))?\s*$")
_KERNEL = re.compile(r"^\s*(gemv|gemm)\s*(?:M(\d+)\s+)?(\d+)x(\d+)\s*$")
_SHAPE = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$")


@dataclass(frozen=True)
class Workload:
    """One workload: `pp` processes a prompt, `tg` decodes tokens one by one, `pg` does both.

    `depth` is the number of tokens already in the KV cache when the timed part starts. A kernel
    workload multiplies M activation rows [M, K] by one weight matrix [K, N].
    """

    kind: str
    n_prompt: int = 0
    n_gen: int = 0
    depth: int = 0
    M: int = 0
    K: int = 0
    N: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown workload kind '{self.kind}' (known: {', '.join(KINDS)})")
        for field in ("n_prompt", "n_gen", "depth", "M", "K", "N"):
            if getattr(self, field) < 0:
                raise ConfigError(f"{field} must be >= 0, got {getattr(self, field)}")
        if self.kind in KERNEL_KINDS:
            if self.n_prompt or self.n_gen or self.depth:
                raise ConfigError(f"a {self.kind} workload takes M, K and N only")
            if self.K < 1 or self.N < 1:
                raise ConfigError(f"a {self.kind} workload needs K >= 1 and N >= 1, got {self.K}x{self.N}")
            if self.kind == "gemv" and self.M != 1:
                raise ConfigError(f"gemv is M = 1, got M = {self.M} (use gemm)")
            if self.kind == "gemm" and self.M < 2:
                raise ConfigError(f"gemm needs M >= 2, got M = {self.M} (M = 1 is gemv)")
            return
        if self.M or self.K or self.N:
            raise ConfigError(f"a {self.kind} workload takes no M, K or N")
        if self.kind == "pp" and (self.n_prompt < 1 or self.n_gen):
            raise ConfigError("a pp workload needs n_prompt >= 1 and no n_gen")
        if self.kind == "tg" and (self.n_gen < 1 or self.n_prompt):
            raise ConfigError("a tg workload needs n_gen >= 1 and no n_prompt")
        if self.kind == "pg" and (self.n_prompt < 1 or self.n_gen < 1):
            raise ConfigError("a pg workload needs n_prompt >= 1 and n_gen >= 1")

    @property
    def is_kernel(self) -> bool:
        return self.kind in KERNEL_KINDS

    @property
    def name(self) -> str:
        if self.kind == "gemv":
            return f"gemv {self.K}x{self.N}"
        if self.kind == "gemm":
            return f"gemm M{self.M} {self.K}x{self.N}"
        base = {
            "pp": f"pp{self.n_prompt}",
            "tg": f"tg{self.n_gen}",
            "pg": f"pg{self.n_prompt},{self.n_gen}",
        }[self.kind]
        return f"{base} @ d{self.depth}" if self.depth else base

    @property
    def n_tokens(self) -> int:
        """Tokens that pass through the model in one repetition, the depth included."""
        return self.depth + self.n_prompt + self.n_gen

    def to_dict(self) -> dict:
        return {**asdict(self), "name": self.name}

    @classmethod
    def from_dict(cls, d: dict) -> Workload:
        return cls(**{k: d.get(k, 0) for k in ("n_prompt", "n_gen", "depth", "M", "K", "N")}, kind=d["kind"])

    @classmethod
    def parse(cls, text: str) -> Workload:
        """Parse `pp512`, `tg128`, `pg512,128`, `tg128 @ d4096`, `gemv 4096x4096`, `gemm M64 4096x11008`."""
        k = _KERNEL.match(text)
        if k:
            kind, m_rows, K, N = k.group(1), k.group(2), int(k.group(3)), int(k.group(4))
            return cls(kind, M=int(m_rows) if m_rows else 1, K=K, N=N)
        m = _NAME.match(text)
        if not m:
            raise ConfigError(f"cannot parse workload '{text}' (expected e.g. pp512, tg128, pg512,128, tg128@d1024)")
        kind, a, b, depth = m.group(1), int(m.group(2)), m.group(3), int(m.group(4) or 0)
        if kind == "pg":
            if b is None:
                raise ConfigError(f"a pg workload needs two numbers, e.g. pg512,128: '{text}'")
            return cls("pg", a, int(b), depth)
        if b is not None:
            raise ConfigError(f"only pg takes two numbers: '{text}'")
        return cls(kind, a if kind == "pp" else 0, a if kind == "tg" else 0, depth)


def llm_workloads(
    n_prompt: list[int], n_gen: list[int], pg: list[tuple[int, int]], depth: list[int]
) -> list[Workload]:
    """The tests llama-bench would run for these lists: 0 in -p or -n turns that workload off."""
    for name, values in (("n_prompt", n_prompt), ("n_gen", n_gen), ("depth", depth)):
        for v in values:
            if v < 0:
                raise ConfigError(f"{name} must be >= 0, got {v}")
    out: list[Workload] = []
    for d in depth:
        out += [Workload("pp", p, 0, d) for p in n_prompt if p > 0]
        out += [Workload("tg", 0, n, d) for n in n_gen if n > 0]
        out += [Workload("pg", p, n, d) for p, n in pg]
    if not out:
        raise ConfigError("no workload to run: every n_prompt and n_gen is 0 and no pg workload is given")
    return list(dict.fromkeys(out))


def parse_shape(text: str) -> tuple[int, int]:
    """`4096x11008` -> (K, N): in-features by out-features."""
    m = _SHAPE.match(text)
    if not m:
        raise ConfigError(f"cannot parse shape '{text}' (expected KxN, e.g. 4096x11008, or a preset name)")
    return int(m.group(1)), int(m.group(2))


def shapes_of(names: list[str]) -> list[tuple[int, int]]:
    """Shapes from `KxN` strings and model presets (a preset stands for its distinct linear layers)."""
    from tritbench.models import PRESETS

    out: list[tuple[int, int]] = []
    for name in names:
        spec = PRESETS.get(name.strip().lower())
        if spec is not None:
            out += [(layer.in_features, layer.out_features) for layer in spec.linear_layers().values()]
        else:
            out.append(parse_shape(name))
    return list(dict.fromkeys(out))


def kernel_workloads(kinds: list[str], shapes: list[tuple[int, int]], rows: list[int]) -> list[Workload]:
    """gemv runs every shape at M = 1; gemm runs every shape at each M >= 2 in `rows`."""
    out: list[Workload] = []
    for kind in kinds:
        if kind == "gemv":
            out += [Workload("gemv", M=1, K=k, N=n) for k, n in shapes]
        elif kind == "gemm":
            ms = [m for m in rows if m >= 2]
            if not ms:
                raise ConfigError("gemm needs an M >= 2 in -M (M = 1 is gemv)")
            out += [Workload("gemm", M=m, K=k, N=n) for m in ms for k, n in shapes]
    return out
