"""Edge-device profiles: run a case as a smaller machine would (pinned CPUs, a memory cap, a thread count).

The cap is the child's RLIMIT_AS (address space, which counts mmap'd weights), plus a cgroup v2
memory limit where this machine lets us create one. Speeds remain this machine's, not the board's:
a profile answers "does it fit, and how does it scale with these cores", not "how fast is a Pi".
"""

from __future__ import annotations

import os
import re
import resource
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.errors import ConfigError
from bench.machine import sysfs_root

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|KB|MB|GB|K|M|G)?\s*$", re.IGNORECASE)
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
        return {**asdict(self), "cpus": cpus, "threads": threads}


BUILTIN = {
    p.name: p
    for p in (
        # Raspberry Pi 5: 4 Cortex-A76 cores, 4 GB board (8 GB exists too)
        Profile("pi5-like", cpus=4, memory_bytes=4 << 30, threads=4, cap_to_machine=True),
        # Jetson Orin Nano: 6 Cortex-A78AE cores, 8 GB shared with the GPU
        Profile("orin-nano-like", cpus=6, memory_bytes=8 << 30, threads=6, cap_to_machine=True),
        Profile("edge-1c-1g", cpus=1, memory_bytes=1 << 30, threads=1),
        Profile("edge-2c-2g", cpus=2, memory_bytes=2 << 30, threads=2),
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
        out[name] = Profile(name, spec.get("cpus"), memory, spec.get("threads"))
    return out


def get_profile(name: str, custom: dict[str, Profile]) -> Profile:
    known = {**BUILTIN, **custom}
    if name not in known:
        raise ConfigError(f"unknown profile '{name}' (known: {', '.join(known)})")
    return known[name]


def allowed_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def memory_cgroup(name: str, root: Path | None = None) -> tuple[tuple[Path, str] | None, str]:
    """A fresh memory cgroup (v2 `memory.max`, else v1 `memory.limit_in_bytes`) to put a child in,
    as (folder, limit file), or None with the reason there is none."""
    base = (root or sysfs_root()) / "sys/fs/cgroup"
    try:
        v2 = "memory" in (base / "cgroup.subtree_control").read_text().split()
    except OSError:
        v2 = False
    parent, limit_file = (base, "memory.max") if v2 else (base / "memory", "memory.limit_in_bytes")
    if not (parent / limit_file).exists() and not (parent / "cgroup.procs").exists():
        return None, "unavailable: no cgroup memory controller at /sys/fs/cgroup"
    group = parent / name
    try:
        group.mkdir(exist_ok=True)
    except OSError as exc:
        return None, f"unavailable: cannot create {group}: {exc.strerror}"
    return (group, limit_file), f"applied: {group}"


def remove_cgroup(group: tuple[Path, str] | None) -> None:
    if group is not None:
        try:
            group[0].rmdir()
        except OSError:
            pass  # still busy or already gone: the kernel frees an empty group's memory anyway


def child_limits(limits: dict, cgroup: tuple[Path, str] | None):
    """A preexec function for the child: pin CPUs, cap the address space, join the memory cgroup."""

    def apply() -> None:
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, limits["cpus"])
        if limits.get("memory_bytes"):
            resource.setrlimit(resource.RLIMIT_AS, (limits["memory_bytes"], limits["memory_bytes"]))
            if cgroup is not None:
                folder, limit_file = cgroup
                (folder / limit_file).write_text(str(limits["memory_bytes"]))
                (folder / "cgroup.procs").write_text(str(os.getpid()))

    return apply
