"""Edge-device profiles: run a case as a smaller machine would (pinned CPUs, a memory cap, a thread count).

The cap is the child's RLIMIT_AS (address space, which counts mmap'd weights), plus a cgroup v2
memory limit where this machine lets us create one. Speeds remain this machine's, not the board's:
a profile answers "does it fit, and how does it scale with these cores", not "how fast is a Pi".
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass

from tritbench.errors import ConfigError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|KB|MB|GB|K|M|G)?\s*$", re.IGNORECASE)
# Below this a profile's memory cap cannot hold the interpreter, let alone a model (e.g. `memory = 1.5`, which
# reads as 1.5 bytes).
MIN_MEMORY_BYTES = 64 << 20
_UNITS = {"b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30,
          "kb": 1000, "mb": 1000**2, "gb": 1000**3}


def parse_size(text: str | int) -> int:
    """`4GiB`, `512 MiB`, `1G` (binary), `2GB` (decimal) or a byte count."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    m = _SIZE.match(str(text))
    if not m:
        raise ConfigError(f"cannot parse memory size '{text}' (e.g. 4GiB, 512MiB)")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "b").lower()])


@dataclass(frozen=True)
class Profile:
    """`cpus` CPUs to pin to, `memory_bytes` address-space cap, `threads` default thread count.
    Built-in board profiles cap their CPU count at this machine's (`cap_to_machine`); a custom
    profile asking for more CPUs than exist is an error."""

    name: str
    cpus: int | None = None
    memory_bytes: int | None = None
    threads: int | None = None
    cap_to_machine: bool = False
    imitates: str | None = None  # the real board, where the profile stands for one
    cannot_imitate: tuple[str, ...] = ()  # what of that board (or any device) a profile leaves as this machine's

    def resolve(self, allowed: list[int]) -> dict:
        """The concrete limits on this machine: which CPUs, how much memory, how many threads."""
        cpus = allowed
        if self.cpus is not None:
            if self.cpus < 1:
                raise ConfigError(f"profile '{self.name}': cpus must be >= 1, got {self.cpus}")
            if self.cpus > len(allowed) and not self.cap_to_machine:
                raise ConfigError(
                    f"profile '{self.name}' asks for {self.cpus} CPUs but this machine has {len(allowed)}")
            cpus = allowed[: self.cpus]
        threads = min(self.threads or len(cpus), len(cpus)) if self.cap_to_machine else (self.threads or len(cpus))
        return {**asdict(self), "cpus": cpus, "threads": threads, "cannot_imitate": list(self.cannot_imitate)}


# What no profile changes: the cores that run are this machine's, and so is everything around them.
THIS_MACHINE = ("the cores: this machine's microarchitecture, clock and caches run, not the board's",
                "memory bandwidth and latency: this machine's DRAM, not the board's")
GENERIC = (*THIS_MACHINE, "big.LITTLE: a device's slow and fast cores are not told apart",
           "thermal limits: a fanless device's throttling under sustained load")

BUILTIN = {
    p.name: p
    for p in (
        # Figures from the boards' product briefs (Raspberry Pi 5, Jetson Orin Nano 8GB module data sheet).
        Profile("pi5-like", cpus=4, memory_bytes=4 << 30, threads=4, cap_to_machine=True,
                imitates="Raspberry Pi 5, 4 GB (Broadcom BCM2712: 4x Cortex-A76 at 2.4 GHz, LPDDR4X-4267 on a "
                         "32-bit bus; 8 GB boards exist too)",
                cannot_imitate=(*THIS_MACHINE[:1],
                                "memory bandwidth: the Pi 5's LPDDR4X (about 17 GB/s peak), not this machine's DRAM",
                                "thermal limits: the Pi 5 throttles from 80 C without a cooler",
                                "CPUs beyond this machine's: capped at its count")),
        Profile("orin-nano-like", cpus=6, memory_bytes=8 << 30, threads=6, cap_to_machine=True,
                imitates="NVIDIA Jetson Orin Nano 8GB (6x Cortex-A78AE at up to 1.5 GHz, 8 GB "
                         "LPDDR5 shared with the GPU)",
                cannot_imitate=(*THIS_MACHINE[:1],
                                "memory bandwidth: Orin Nano's LPDDR5 (68 GB/s peak, shared with the GPU), not this "
                                "machine's DRAM",
                                "the GPU and its share of the 8 GB: CPU only here",
                                "power modes and thermal limits (nvpmodel budgets such as 7 W and 15 W)",
                                "CPUs beyond this machine's: capped at its count")),
        Profile("edge-1c-1g", cpus=1, memory_bytes=1 << 30, threads=1, cannot_imitate=GENERIC),
        Profile("edge-2c-2g", cpus=2, memory_bytes=2 << 30, threads=2, cannot_imitate=GENERIC),
    )
}


def parse_profiles(table: dict) -> dict[str, Profile]:
    """Custom profiles from a suite's `[profiles.NAME]` tables (keys: cpus, memory, threads)."""
    out = {}
    for name, spec in table.items():
        if not isinstance(spec, dict):
            raise ConfigError(f"profiles.{name} must be a table (cpus, memory, threads)")
        unknown = set(spec) - {"cpus", "memory", "threads"}
        if unknown:
            raise ConfigError(f"profiles.{name}: unknown key '{sorted(unknown)[0]}' (known: cpus, memory, threads)")
        for key in ("cpus", "threads"):
            if key in spec and (not isinstance(spec[key], int) or isinstance(spec[key], bool) or spec[key] < 1):
                raise ConfigError(f"profiles.{name}.{key} must be an integer >= 1, got {spec[key]!r}")
        memory = parse_size(spec["memory"]) if "memory" in spec else None
        if memory is not None and memory < MIN_MEMORY_BYTES:
            raise ConfigError(f"profiles.{name}.memory must be at least 64 MiB, got {spec['memory']!r} "
                              f"({memory} bytes; give a unit, e.g. 1.5GiB)")
        out[name] = Profile(name, spec.get("cpus"), memory, spec.get("threads"), cannot_imitate=GENERIC)
    return out


def get_profile(name: str, custom: dict[str, Profile]) -> Profile:
    known = {**BUILTIN, **custom}
    if name not in known:
        raise ConfigError(f"unknown profile '{name}' (known: {', '.join(known)})")
    return known[name]


def allowed_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
