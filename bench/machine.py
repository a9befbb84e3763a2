"""Machine fingerprint: stable identity (what the machine is) apart from volatile state (what it is doing).

Every reader of /proc takes a `root` so that tests can point it at captured files.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import psutil

# ISA features that decide which ternary and quantized kernels a CPU can run.
ISA_FEATURES = {
    "x86": ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16"),
    "arm": ("asimd", "asimddp", "i8mm", "sve", "sve2", "fphp", "asimdhp", "bf16"),
}
LIBRARIES = ("numpy", "gguf", "llama-cpp-python", "onnxruntime", "pandas")


def sysfs_root() -> Path:
    """Root of /proc and /sys for readers: `TRITBENCH_SYSFS_ROOT` lets users and tests use another tree."""
    return Path(os.environ.get("TRITBENCH_SYSFS_ROOT", "/"))


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def parse_cpuinfo(text: str) -> dict:
    """CPU model and feature flags from /proc/cpuinfo text (x86 `model name`/`flags`,
    aarch64 `Features` with `CPU implementer`/`CPU part`)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    flags = (fields.get("flags") or fields.get("Features") or "").split()
    model = fields.get("model name") or fields.get("Model") or fields.get("Hardware")
    if not model and "CPU part" in fields:
        model = f"ARM implementer {fields.get('CPU implementer', '?')} part {fields['CPU part']}"
    return {"cpu_model": model, "flags": flags, "vendor": fields.get("vendor_id") or fields.get("CPU implementer")}


def isa_features(arch: str, flags: list[str]) -> list[str]:
    family = "arm" if arch.startswith(("aarch64", "arm")) else "x86"
    present = set(flags)
    return [f for f in ISA_FEATURES[family] if f in present]


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def fingerprint(root: Path | None = None) -> dict:
    """Stable identity of this machine plus a `machine.id` derived from those fields only."""
    root = root or sysfs_root()
    arch = platform.machine()
    cpu = parse_cpuinfo(_read(root / "proc/cpuinfo") or "")
    info = {
        "arch": arch,
        "cpu_model": cpu["cpu_model"] or platform.processor() or None,
        "cpu_vendor": cpu["vendor"],
        "isa": isa_features(arch, cpu["flags"]),
        "hypervisor": "hypervisor" in cpu["flags"],
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": psutil.cpu_count(logical=True),
        "ram_bytes": psutil.virtual_memory().total,
        "os": platform.system(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "libraries": library_versions(),
    }
    stable = {k: info[k] for k in ("arch", "cpu_model", "isa", "physical_cores", "logical_cores", "ram_bytes", "os")}
    info["id"] = hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()[:16]
    return info


def physical_cores() -> int:
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def state(sample_s: float = 0.25) -> dict:
    """Volatile state just before a case: load average and how busy the CPUs are right now.

    The load average lags by a minute and counts our own previous case, so the idle-core estimate
    comes from a short utilisation sample taken while this harness is idle.
    """
    busy = psutil.cpu_percent(interval=sample_s, percpu=True)
    logical = len(busy) or 1
    idle_cores = sum(max(0.0, 100.0 - b) for b in busy) / 100.0
    return {
        "loadavg": list(os.getloadavg()),
        "cpu_busy_percent": busy,
        "idle_cores": round(idle_cores, 2),
        "logical_cores": logical,
    }
