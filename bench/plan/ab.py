"""A gate's two sides: the one axis along which base and head differ (`--ab AXIS=BASE,HEAD`), and the
gate's own settings, validated before anything runs.

Axes:
- `ref=BASE,HEAD`: two git revisions of a checkout, each installed in its own environment;
- `python=A,B`: two installed environments: each side's children run that side's interpreter;
- `model=A,B`: two model references (presets, `preset@field=value` overrides or GGUF files);
- `opt:NAME=A,B`: two values of a backend option;
- `env:NAME=A,B`: two values of an environment variable the children get.
Everything else is the ordinary `bench run` plan, the same on both sides.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, replace

from tritbench import plugin
from tritbench.errors import ConfigError
from tritbench.plan.suite import RunConfig

AXES = ("ref", "python", "model", "opt", "env")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
METRIC_CHOICES = ("auto", "cpu", "wall", "both")
# A pair of children is a few seconds: a gate of more pairs than this is a mistake, not a plan.
MAX_PAIRS = 10_000


@dataclass(frozen=True)
class Axis:
    kind: str
    name: str | None  # opt: and env: axes: the option or variable
    base: str
    head: str

    @property
    def label(self) -> str:
        return f"{self.kind}{':' + self.name if self.name else ''}={self.base},{self.head}"


def parse_axis(text: str) -> Axis:
    """`ref=origin/main,HEAD`, `python=A,B`, `model=A,B`, `opt:NAME=A,B`, `env:NAME=A,B`."""
    key, sep, values = text.partition("=")
    kind, _, name = key.strip().partition(":")
    if not sep or kind not in AXES:
        raise ConfigError(f"--ab takes AXIS=BASE,HEAD with AXIS one of ref, python, model, opt:NAME, env:NAME; "
                          f"got '{text}'")
    if kind in ("opt", "env") and not name.strip():
        raise ConfigError(f"--ab {kind}: needs a name: {kind}:NAME=BASE,HEAD")
    if kind not in ("opt", "env") and name:
        raise ConfigError(f"--ab {kind} takes no name, got '{key}'")
    if kind == "env" and not _ENV_NAME.match(name.strip()):
        raise ConfigError(f"--ab env:{name}: not an environment variable name")
    sides = values.split(",")
    if len(sides) != 2 or (kind != "env" and not all(s.strip() for s in sides)):
        raise ConfigError(f"--ab {key} needs two sides, BASE,HEAD; got '{values}'")
    axis = Axis(kind, name.strip() or None, sides[0].strip(), sides[1].strip())
    if axis.base == axis.head:
        raise ConfigError(f"--ab {key}: both sides are '{axis.base}': nothing to compare")
    return axis


def fraction(text: str | float, name: str) -> float:
    """`5%` or `0.05` -> 0.05."""
    raw = str(text).strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise ConfigError(f"{name} takes a fraction (0.05) or a percentage (5%), got '{text}'") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, got '{text}'")
    return value


# The last look runs to LOOK_FACTOR x --pairs, with LOOKS looks spread evenly up to it. At this machine kind's noise
# (sd of a pair's log ratio 0.08 for pp64 and 0.11-0.13 for tg32, 1 thread, tokens per CPU-second) an A/A gate of
# 32 -> 64 pairs could not rule out a 5 % slowdown in 25-32 % of resampled gates, 32 -> 96 in 1-16 % (quiet to busy
# recordings), 32 -> 96 -> 160 in 0-2 %, for about a tenth more rounds on average: most gates still end at 32 pairs
# (issue 11's notes have the recordings and the resampling).
LOOK_FACTOR = 5
LOOKS = 3


@dataclass
class GateConfig:
    """`bench gate`'s settings besides the plan (a RunConfig whose `repetitions` are per child)."""

    axis: Axis
    threshold: float = 0.05  # pass: the interval rules out a slowdown this large
    alpha: float = 0.01  # family-wise, over every gated (case, metric) and every look
    min_effect: float = 0.01  # regression: a significant slowdown at least this large
    pairs: int = 32
    max_pairs: int = 160  # undecided cases continue up to this many pairs (== pairs: one look); see LOOK_FACTOR
    looks: int = LOOKS  # looks from pairs to max_pairs, evenly spaced
    seed: int = 0  # the order of base and head in each round
    metric: str = "auto"
    inconclusive: str = "fail"  # pass: an inconclusive gate exits 0 (with a warning)
    repo: str = "."  # the ref axis's checkout

    def validate(self) -> None:
        if not 0 < self.threshold < 1:
            raise ConfigError(f"--threshold must be between 0 and 100 %, got {self.threshold:g}")
        if not 0 < self.alpha < 0.5:
            raise ConfigError(f"--alpha must be between 0 and 0.5, got {self.alpha:g}")
        if not 0 <= self.min_effect < self.threshold:
            raise ConfigError(f"--min-effect must be >= 0 and below --threshold ({self.threshold:g}), "
                              f"got {self.min_effect:g}")
        if not 2 <= self.pairs <= MAX_PAIRS:
            raise ConfigError(f"--pairs must be between 2 and {MAX_PAIRS}, got {self.pairs}")
        if not self.pairs <= self.max_pairs <= MAX_PAIRS:
            raise ConfigError(f"--max-pairs must be between --pairs ({self.pairs}) and {MAX_PAIRS}, "
                              f"got {self.max_pairs}")
        if self.max_pairs > self.pairs and not 2 <= self.looks <= self.max_pairs - self.pairs + 1:
            raise ConfigError(f"--looks must be between 2 and {self.max_pairs - self.pairs + 1} (one look per pair "
                              f"from --pairs {self.pairs} to --max-pairs {self.max_pairs}), got {self.looks}")
        if self.metric not in METRIC_CHOICES:
            raise ConfigError(f"--metric takes {', '.join(METRIC_CHOICES)}, got '{self.metric}'")
        if self.inconclusive not in ("pass", "fail"):
            raise ConfigError(f"--inconclusive takes pass or fail, got '{self.inconclusive}'")

    def look_points(self) -> list[int]:
        """The pairs at each look: --pairs, then evenly spaced up to --max-pairs (one look when they are equal)."""
        if self.max_pairs == self.pairs:
            return [self.pairs]
        step = (self.max_pairs - self.pairs) / (self.looks - 1)
        return [self.pairs + round(i * step) for i in range(self.looks)]


@dataclass
class Side:
    """One side of a gate: its plan, and how its children are started."""

    name: str  # base | head
    value: str  # the axis's value on this side
    cfg: RunConfig
    python: str | None = None
    env: dict | None = None

    @property
    def tag(self) -> dict:
        return {"side": self.name, "value": self.value}


def sides(axis: Axis, cfg: RunConfig) -> tuple[Side, Side]:
    """Base and head plans: `cfg` with the axis's value set on each side. ref and python sides get their
    interpreter later (tritbench.execute.gate builds or checks it)."""
    if axis.kind == "model":
        return tuple(Side(n, v, replace(cfg, models=[v])) for n, v in (("base", axis.base), ("head", axis.head)))
    if axis.kind == "opt":
        owners = [b for b in cfg.backends if axis.name in plugin.load(b).options]
        if not owners:
            known = sorted({o for b in cfg.backends for o in plugin.load(b).options})
            raise ConfigError(f"--ab opt:{axis.name}: no selected backend has that option (known: {', '.join(known)})")
        option = plugin.load(owners[0]).options[axis.name]
        if option.parse(axis.name, axis.base) == option.parse(axis.name, axis.head):
            raise ConfigError(f"--ab opt:{axis.name}: '{axis.base}' and '{axis.head}' are the same value")
        return tuple(Side(n, v, replace(cfg, options={**cfg.options, axis.name: [v]}))
                     for n, v in (("base", axis.base), ("head", axis.head)))
    if axis.kind == "env":
        return tuple(Side(n, v, cfg, env={axis.name: v}) for n, v in (("base", axis.base), ("head", axis.head)))
    if axis.kind == "python":
        for v in (axis.base, axis.head):
            if not (os.path.isfile(v) and os.access(v, os.X_OK)):
                raise ConfigError(f"--ab python: {v} is not an executable file")
        if os.path.abspath(axis.base) == os.path.abspath(axis.head):
            raise ConfigError("--ab python: both sides name the same interpreter")
        return tuple(Side(n, v, cfg, python=os.path.abspath(v)) for n, v in (("base", axis.base), ("head", axis.head)))
    return Side("base", axis.base, cfg), Side("head", axis.head, cfg)  # ref: the interpreter comes from the build
