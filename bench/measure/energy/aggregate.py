"""Idle baseline, net energy and a case's energy metrics: pure functions of readings (except measure_idle)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from tritbench.measure.energy.meter import Meter
from tritbench.measure.energy.reading import EnergyReading


def measure_idle(meter: Meter, seconds: float, sleep: Callable[[float], None] = time.sleep) -> EnergyReading:
    """The meter's reading over `seconds` of this process doing nothing.

    Take it with the machine otherwise quiet, just before the measured work, with the same meter:
    idle watts are then `reading.watts` (joules / window) and `net_energy` subtracts them.
    """
    if seconds <= 0:
        raise ValueError(f"an idle window must be longer than 0 s, not {seconds}")
    meter.start()
    try:
        sleep(seconds)
    finally:
        reading = meter.stop()
    return reading


def idle_watts(idle: EnergyReading | None) -> float | None:
    """Mean power of an idle reading, or None when it has no figure."""
    return idle.watts if idle is not None else None


def net_energy(gross: EnergyReading, idle_watts: float | None) -> float | None:
    """Energy above the idle baseline: gross.joules - idle_watts x gross.window_s (None if either is missing).

    It can come out negative when the work's power is within the idle noise; that is kept, not clipped.
    """
    if gross.joules is None or gross.window_s is None or idle_watts is None:
        return None
    return gross.joules - idle_watts * gross.window_s


def combine_readings(readings: Sequence[EnergyReading]) -> EnergyReading:
    """One reading for several windows (a case's repetitions): their sum when all share one available source.

    Any unavailable window makes the whole unavailable (a partial sum would look like a full one), and
    windows from different sources are never added (measured and estimated figures do not mix).
    """
    if not readings:
        return EnergyReading.unavailable("no measured windows")
    cost = combine_costs([r.sampling_cost for r in readings])  # spent even when there is no figure
    missing = [r for r in readings if not r.available]
    if missing:
        reason = missing[0].reason or "?"
        if len(missing) < len(readings):
            reason = f"{len(missing)} of {len(readings)} windows unavailable: {reason}"
        return EnergyReading.unavailable(reason, sampling_cost=cost)
    sources = sorted({r.source for r in readings})
    if len(sources) > 1:
        return EnergyReading.unavailable(f"windows measured by different sources ({', '.join(sources)})",
                                         sampling_cost=cost)
    domains: dict[str, float] = {}
    parts: dict[str, float] = {}
    for r in readings:
        for d, j in r.domains.items():
            domains[d] = domains.get(d, 0.0) + j
        for d, j in r.parts.items():
            parts[d] = parts.get(d, 0.0) + j
    notes = list(dict.fromkeys(r.note for r in readings if r.note))
    return EnergyReading(
        source=sources[0], joules=sum(r.joules or 0.0 for r in readings),
        window_s=sum(r.window_s or 0.0 for r in readings), domains=domains, parts=parts,
        samples=sum(r.samples for r in readings), wraps=sum(r.wraps for r in readings),
        note="; ".join(notes) or None, sampling_cost=cost)


def combine_costs(costs: Sequence[dict | None]) -> dict | None:
    """The sampling cost of several windows: counts and times added up, distinct notes kept.

    None when no window recorded one (meters that spawn nothing); a time is None if any window's is.
    If only some windows recorded one, nothing is added up and the note says so.
    """
    known = [c for c in costs if c is not None]
    if not known:
        return None
    if len(known) < len(costs):
        return {"processes": None, "background": None, "cpu_s": None, "wall_s": None,
                "note": f"only {len(known)} of {len(costs)} windows recorded their sampling cost"}

    def total(key: str) -> float | None:
        values = [c.get(key) for c in known]
        return None if any(v is None for v in values) else sum(values)

    notes = list(dict.fromkeys(c.get("note") for c in known if c.get("note")))
    return {"processes": total("processes"), "background": total("background"), "cpu_s": total("cpu_s"),
            "wall_s": total("wall_s"), "note": " | ".join(notes) or None}


def energy_metrics(readings: Sequence[EnergyReading] | EnergyReading, tokens: int | None,
                   idle: EnergyReading | float | None = None) -> dict:
    """The `metrics.energy` block of a result record.

    `readings`: one per measured window (repetition), summed by `combine_readings`; `tokens`: tokens
    processed in those windows (prompt + generated, all repetitions); `idle`: the idle reading (used
    only if it comes from the same source) or idle watts. Every figure is None when it cannot be had.
    `sampling_cost` is the windows' summed sampling cost (see EnergyReading), None for meters that spawn nothing.
    """
    if isinstance(readings, EnergyReading):
        readings = [readings]
    r = combine_readings(readings)
    if isinstance(idle, EnergyReading):
        watts = idle.watts if idle.source == r.source else None
        idle_source: str | None = idle.source
    else:
        watts, idle_source = idle, None if idle is None else "given"
    net = net_energy(r, watts)

    def per_token(joules: float | None) -> float | None:
        return joules / tokens if joules is not None and tokens else None

    return {
        "source": r.source,
        "joules": r.joules,
        "window_s": r.window_s,
        "watts": r.watts,
        "joules_per_token": per_token(r.joules),
        "idle_watts": watts,
        "idle_source": idle_source,
        "net_joules": net,
        "net_joules_per_token": per_token(net),
        "domains": dict(r.domains),
        "parts": dict(r.parts),
        "windows": len(readings),
        "samples": r.samples,
        "wraps": r.wraps,
        "note": r.note,
        "sampling_cost": r.sampling_cost,
    }
