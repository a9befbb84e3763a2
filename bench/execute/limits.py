"""Edge-profile limits on a measuring child, applied by a small exec wrapper instead of `preexec_fn`
(which Python documents as unsafe while other threads run, as rich's progress thread does):

    python -m tritbench.execute.limits LIMITS_JSON -- COMMAND...

The wrapper pins its CPUs, caps its address space, joins the memory cgroup, then execs COMMAND, which
inherits all three. It imports nothing but the standard library.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path


def memory_cgroup(name: str, root: Path | None = None) -> tuple[tuple[Path, str] | None, str]:
    """A fresh memory cgroup (v2 `memory.max`, else v1 `memory.limit_in_bytes`) to put a child in,
    as (folder, limit file), or None with the reason there is none."""
    from tritbench.machine import sysfs_root  # here: the wrapper itself needs only the standard library

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


def wrap(command: list[str], limits: dict, cgroup: tuple[Path, str] | None) -> list[str]:
    """`command` run under the profile's limits: CPUs, address-space cap and memory cgroup."""
    spec = {"cpus": limits["cpus"], "memory_bytes": limits.get("memory_bytes"),
            "cgroup": [str(cgroup[0]), cgroup[1]] if cgroup else None}
    return [sys.executable, "-m", "tritbench.execute.limits", json.dumps(spec), "--", *command]


def apply(spec: dict) -> None:
    """Limit this process (and what it execs next) as `wrap` described."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, spec["cpus"])
    cap = spec.get("memory_bytes")
    if cap:
        if spec.get("cgroup"):
            folder, limit_file = Path(spec["cgroup"][0]), spec["cgroup"][1]
            (folder / limit_file).write_text(str(cap))
            (folder / "cgroup.procs").write_text(str(os.getpid()))
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def main(argv: list[str]) -> None:
    if len(argv) < 4 or argv[2] != "--":
        sys.exit("usage: python -m tritbench.execute.limits LIMITS_JSON -- COMMAND...")
    apply(json.loads(argv[1]))
    os.execv(argv[3], argv[3:])


if __name__ == "__main__":
    main(sys.argv)
