"""What an energy meter returns: one reading per window, labelled with where its number came from."""

from __future__ import annotations

from dataclasses import dataclass, field

PREFIXES = ("measured:", "estimated:", "unavailable:")


@dataclass(frozen=True)
class EnergyReading:
    """Energy over one window, with its provenance.

    `source` is exactly one of `measured:<source>/<domain>[+<domain>...]`, `estimated:<method>` or
    `unavailable:<reason>`. `joules` is the sum of `domains` (J per domain actually added up) and is
    None whenever the source is unavailable: a missing value is never a zero. `parts` holds domains
    that were read but are contained in a summed one (RAPL core/uncore inside a package, Jetson
    sub-rails inside VDD_IN), for information only. `samples` counts polls of polled sources, `wraps`
    the counter wraparounds corrected; `note` states a caveat that applies to this figure.
    `sampling_cost` says what taking the samples cost when the meter runs a program for them (Pi 5
    `vcgencmd`, macOS `powermetrics`): `processes` started for the reading, how many of those ran in the
    `background` alongside the measured work, their `cpu_s` and `wall_s`, and a `note` on what these
    cover; it is None for meters that only read files (RAPL, hwmon, Jetson, pyRAPL).
    """

    source: str
    joules: float | None = None
    window_s: float | None = None
    domains: dict[str, float] = field(default_factory=dict)
    samples: int = 0
    wraps: int = 0
    parts: dict[str, float] = field(default_factory=dict)
    note: str | None = None
    sampling_cost: dict | None = None

    def __post_init__(self) -> None:
        if not self.source.startswith(PREFIXES):
            raise ValueError(f"energy source must start with one of {', '.join(PREFIXES)}: {self.source!r}")
        if self.source.startswith("unavailable:") and self.joules is not None:
            raise ValueError("an unavailable reading carries no joules")
        if not self.source.startswith("unavailable:") and self.joules is None:
            raise ValueError(f"{self.source} needs joules")

    @classmethod
    def unavailable(cls, reason: str, window_s: float | None = None, *,
                    sampling_cost: dict | None = None) -> EnergyReading:
        return cls(source=f"unavailable:{reason}", window_s=window_s, sampling_cost=sampling_cost)

    @classmethod
    def measured(cls, source: str, domains: dict[str, float], window_s: float, *, samples: int = 0, wraps: int = 0,
                 parts: dict[str, float] | None = None, note: str | None = None,
                 sampling_cost: dict | None = None) -> EnergyReading:
        """A measured reading whose joules are the sum of `domains`, labelled `measured:<source>/<d1>+<d2>`."""
        if not domains:
            raise ValueError("a measured reading needs at least one domain")
        return cls(source=f"measured:{source}/{'+'.join(domains)}", joules=float(sum(domains.values())),
                   window_s=window_s, domains=dict(domains), samples=samples, wraps=wraps,
                   parts=dict(parts or {}), note=note,
                   sampling_cost=None if sampling_cost is None else dict(sampling_cost))

    @property
    def available(self) -> bool:
        return not self.source.startswith("unavailable:")

    @property
    def reason(self) -> str | None:
        """Why there is no figure (the text after `unavailable:`), or None when there is one."""
        return None if self.available else self.source.removeprefix("unavailable:")

    @property
    def watts(self) -> float | None:
        """Mean power over the window, or None."""
        if self.joules is None or not self.window_s:
            return None
        return self.joules / self.window_s

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "joules": self.joules,
            "window_s": self.window_s,
            "domains": dict(self.domains),
            "samples": self.samples,
            "wraps": self.wraps,
            "parts": dict(self.parts),
            "note": self.note,
            "sampling_cost": None if self.sampling_cost is None else dict(self.sampling_cost),
        }

    @classmethod
    def from_dict(cls, d: dict) -> EnergyReading:
        return cls(source=d["source"], joules=d.get("joules"), window_s=d.get("window_s"),
                   domains=dict(d.get("domains") or {}), samples=d.get("samples", 0), wraps=d.get("wraps", 0),
                   parts=dict(d.get("parts") or {}), note=d.get("note"),
                   sampling_cost=None if d.get("sampling_cost") is None else dict(d["sampling_cost"]))


@dataclass(frozen=True)
class MeterProbe:
    """Whether one kind of meter can measure on this machine, and if not, why."""

    kind: str
    available: bool
    reason: str | None
    domains: list[str] = field(default_factory=list)  # what a reading would add up
    parts: list[str] = field(default_factory=list)  # read for information only (contained in a domain)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "available": self.available, "reason": self.reason,
                "domains": list(self.domains), "parts": list(self.parts)}
