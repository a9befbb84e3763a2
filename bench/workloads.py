"""Workloads in llama-bench's vocabulary: pp<N>, tg<N>, pg<N>,<M>, each optionally `@ d<D>`."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from bench.errors import ConfigError

LLM_KINDS = ("pp", "tg", "pg")

_NAME = re.compile(r"^\s*(pp|tg|pg)(\d+)(?:,(\d+))?\s*(?:@\s*d(\d+))?\s*$")


@dataclass(frozen=True)
class Workload:
    """One test: `pp` processes a prompt, `tg` decodes tokens one by one, `pg` does both.

    `depth` is the number of tokens already in the KV cache when the timed part starts.
    """

    kind: str
    n_prompt: int = 0
    n_gen: int = 0
    depth: int = 0

    def __post_init__(self) -> None:
        if self.kind not in LLM_KINDS:
            raise ConfigError(f"unknown workload kind '{self.kind}' (known: {', '.join(LLM_KINDS)})")
        for field in ("n_prompt", "n_gen", "depth"):
            if getattr(self, field) < 0:
                raise ConfigError(f"{field} must be >= 0, got {getattr(self, field)}")
        if self.kind == "pp" and (self.n_prompt < 1 or self.n_gen):
            raise ConfigError("a pp test needs n_prompt >= 1 and no n_gen")
        if self.kind == "tg" and (self.n_gen < 1 or self.n_prompt):
            raise ConfigError("a tg test needs n_gen >= 1 and no n_prompt")
        if self.kind == "pg" and (self.n_prompt < 1 or self.n_gen < 1):
            raise ConfigError("a pg test needs n_prompt >= 1 and n_gen >= 1")

    @property
    def name(self) -> str:
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
        return cls(kind=d["kind"], n_prompt=d["n_prompt"], n_gen=d["n_gen"], depth=d["depth"])

    @classmethod
    def parse(cls, text: str) -> Workload:
        """Parse `pp512`, `tg128`, `pg512,128`, `tg128 @ d4096`."""
        m = _NAME.match(text)
        if not m:
            raise ConfigError(f"cannot parse test '{text}' (expected e.g. pp512, tg128, pg512,128, tg128@d1024)")
        kind, a, b, depth = m.group(1), int(m.group(2)), m.group(3), int(m.group(4) or 0)
        if kind == "pg":
            if b is None:
                raise ConfigError(f"a pg test needs two numbers, e.g. pg512,128: '{text}'")
            return cls("pg", a, int(b), depth)
        if b is not None:
            raise ConfigError(f"only pg takes two numbers: '{text}'")
        return cls(kind, a if kind == "pp" else 0, a if kind == "tg" else 0, depth)


def llm_workloads(
    n_prompt: list[int], n_gen: list[int], pg: list[tuple[int, int]], depth: list[int]
) -> list[Workload]:
    """The tests llama-bench would run for these lists: 0 in -p or -n turns that test off."""
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
        raise ConfigError("no test to run: every n_prompt and n_gen is 0 and no pg test is given")
    return list(dict.fromkeys(out))
