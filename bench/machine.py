"""Machine fingerprint: stable identity (what the machine is) apart from volatile state (what it is doing).

Every reader of /proc takes a `root` so that tests can point it at captured files.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import psutil

# ISA features that decide which ternary and quantized kernels a CPU can run.
ISA_FEATURES = {
    "x86": ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
            "avx512vbmi", "amx_tile", "amx_int8"),
    "arm": ("asimd", "asimddp", "i8mm", "sve", "sve2", "fphp", "asimdhp", "bf16"),
}
# tritbench's own runtime libraries; each backend adds the ones it runs on (its `libraries`).
LIBRARIES = ("numpy", "gguf", "pandas")


def sysfs_root() -> Path:
    """Root of /proc and /sys for readers: `TRITBENCH_SYSFS_ROOT` lets users and tests use another tree."""
    return Path(os.environ.get("TRITBENCH_SYSFS_ROOT", "/"))


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


# Arm's MIDR part numbers (implementer 0x41) for the cores our users run on: Arm's Technical
# Reference Manuals list them (MIDR_EL1.PartNum).
ARM_PARTS = {
    "0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78", "0xd40": "Neoverse-V1",
    "0xd44": "Cortex-X1", "0xd46": "Cortex-A510", "0xd47": "Cortex-A710", "0xd49": "Neoverse-N2",
    "0xd4f": "Neoverse-V2", "0xd4b": "Cortex-A78C", "0xd42": "Cortex-A78AE",
}
ARM_IMPLEMENTERS = {"0x41": "Arm", "0x4e": "NVIDIA", "0x51": "Qualcomm", "0x61": "Apple", "0x48": "HiSilicon"}


def parse_cpuinfo(text: str) -> dict:
    """CPU model and feature flags from /proc/cpuinfo text (x86 `model name`/`flags`,
    aarch64 `Features` with `CPU implementer`/`CPU part`, which name the core)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    flags = (fields.get("flags") or fields.get("Features") or "").split()
    implementer = fields.get("CPU implementer", "").lower()
    vendor = fields.get("vendor_id") or ARM_IMPLEMENTERS.get(implementer, implementer or None)
    model = fields.get("model name")
    if "CPU part" in fields and (not model or model.startswith("ARMv")):
        # aarch64 kernels print a generic "ARMv8 Processor" or nothing: the part number names the core
        part = fields["CPU part"].lower()
        model = (ARM_PARTS.get(part) if implementer == "0x41" else None) or f"{vendor or 'ARM'} part {part}"
    return {"cpu_model": model or fields.get("Hardware"), "flags": flags, "vendor": vendor,
            "board": fields.get("Model")}


# Set by a launcher that runs tritbench under an emulator (.ci/arm-llama.sh): the words that start a program
# under it (`qemu-aarch64-static -cpu cortex-a76 -L ROOT`). The measuring children are started with them (an
# emulated process cannot exec another architecture's program), and every record says the timings are emulated.
EMULATOR_ENV = "TRITBENCH_EMULATOR"
EMULATED_TARGET_ENV = "TRITBENCH_EMULATED_TARGET"  # the build target, when it is not the emulated core
# The key a cpuinfo written for qemu-user carries (.ci/arm-llama.sh): no kernel prints it.
CPUINFO_EMULATOR_KEY = "tritbench-emulator"
EMULATED_NOTE = ("emulated: timings are the emulator's, not this core's speed; cores, RAM and load are the "
                 "host's. Correctness only: never compare them with real hardware")


def emulator_command(env: dict[str, str] | None = None) -> list[str]:
    """The words that start a program under the emulator this process runs in ([] on real hardware)."""
    return shlex.split((os.environ if env is None else env).get(EMULATOR_ENV, ""))


def emulation(cpuinfo: str, arch: str, env: dict[str, str] | None = None) -> dict | None:
    """How this process is emulated, or None on real hardware. Three signs, any one enough: the launcher's
    TRITBENCH_EMULATOR; a /proc/cpuinfo written for qemu-user (its `tritbench-emulator` line); a /proc/cpuinfo
    of another architecture than the process's (qemu-user shows the guest the host's)."""
    env = os.environ if env is None else env
    words = emulator_command(env)
    fields = {k.strip(): v.strip() for k, sep, v in (ln.partition(":") for ln in cpuinfo.splitlines()) if sep}
    by = []
    if words:
        by.append(EMULATOR_ENV)
    if CPUINFO_EMULATOR_KEY in fields:
        by.append(f"/proc/cpuinfo ({CPUINFO_EMULATOR_KEY})")
    x86_text, arm_text = "vendor_id" in fields, "CPU implementer" in fields
    is_arm = arch.startswith(("aarch64", "arm"))
    if (is_arm and x86_text) or (arch in ("x86_64", "i686", "i386") and arm_text):
        by.append(f"/proc/cpuinfo of another architecture than {arch}")
    if not by:
        return None
    described = words or shlex.split(fields.get(CPUINFO_EMULATOR_KEY, ""))
    cpu = next((b for a, b in zip(described[:-1], described[1:], strict=True) if a == "-cpu"), None) \
        or env.get("QEMU_CPU")
    emulator = Path(words[0]).name if words else (described[0] if described else "unknown")
    return {"emulator": emulator, "cpu": cpu, "target": env.get(EMULATED_TARGET_ENV) or cpu,
            "detected_by": by, "timings": EMULATED_NOTE}


def this_emulation(root: Path | None = None) -> dict | None:
    """`emulation` of this process (None on real hardware)."""
    return emulation(_read((root or sysfs_root()) / "proc/cpuinfo") or "", platform.machine())


def board_model(root: Path) -> str | None:
    """The board name from the device tree (Raspberry Pi, Jetson...), None on PCs."""
    text = _read(root / "proc/device-tree/model") or _read(root / "sys/firmware/devicetree/base/model")
    return text.strip("\x00\n ") if text else None


def isa_features(arch: str, flags: list[str]) -> list[str]:
    family = "arm" if arch.startswith(("aarch64", "arm")) else "x86"
    present = set(flags)
    return [f for f in ISA_FEATURES[family] if f in present]


def library_versions(names: Iterable[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in dict.fromkeys(names):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def fingerprint(root: Path | None = None, libraries: Iterable[str] = ()) -> dict:
    """Stable identity of this machine plus a `machine.id` derived from those fields only; the versions of
    tritbench's libraries and of `libraries` (the backends' runtimes) beside it."""
    root = root or sysfs_root()
    arch = platform.machine()
    cpuinfo = _read(root / "proc/cpuinfo") or ""
    cpu = parse_cpuinfo(cpuinfo)
    info = {
        "arch": arch,
        "cpu_model": cpu["cpu_model"] or platform.processor() or None,
        "cpu_vendor": cpu["vendor"],
        "isa": isa_features(arch, cpu["flags"]),
        "hypervisor": "hypervisor" in cpu["flags"],
        "board": board_model(root) or cpu["board"],
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": psutil.cpu_count(logical=True),
        "ram_bytes": psutil.virtual_memory().total,
        "os": platform.system(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "libraries": library_versions([*LIBRARIES, *libraries]),
    }
    stable = {k: info[k] for k in ("arch", "cpu_model", "isa", "physical_cores", "logical_cores", "ram_bytes", "os")}
    emulated = emulation(cpuinfo, arch)
    if emulated:  # an emulated core is never the same machine as a real one (native ids stay as they were)
        info["emulation"] = emulated
        stable["emulation"] = {k: emulated[k] for k in ("emulator", "cpu", "target")}
    host = fleet_host()
    if host is not None:  # run by `bench run --hosts`: one board of a lab is one machine, even among twins
        info["host"] = stable["host"] = host
    info["id"] = hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()[:16]
    return info


def fleet_host() -> dict | None:
    """The inventory's name and labels of this host when `bench run --hosts` started the run (its agent sets
    TRITBENCH_HOST), else None."""
    raw = os.environ.get("TRITBENCH_HOST")
    if not raw:
        return None
    try:
        host = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(host, dict):
        return None
    return {"name": str(host.get("name")), "labels": dict(host.get("labels") or {})}


def physical_cores() -> int:
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def cpu_frequencies(root: Path | None = None) -> dict:
    """Current frequency (MHz) and governor of each CPU from cpufreq, where the kernel exposes it."""
    base = (root or sysfs_root()) / "sys/devices/system/cpu"
    mhz, governors = {}, set()
    for d in sorted(base.glob("cpu[0-9]*/cpufreq")):
        cur = _read(d / "scaling_cur_freq")
        if cur and cur.strip().isdigit():
            mhz[d.parent.name] = int(cur) / 1000
        gov = _read(d / "scaling_governor")
        if gov:
            governors.add(gov.strip())
    if not mhz:
        return {"cpu_mhz": None, "governor": None, "cpufreq": "unavailable: no cpufreq in sysfs"}
    return {"cpu_mhz": mhz, "governor": ",".join(sorted(governors)) or None}


def temperatures(root: Path | None = None) -> dict[str, float]:
    """Degrees Celsius by sensor from thermal zones and hwmon (millidegree files)."""
    root = root or sysfs_root()
    out: dict[str, float] = {}
    for zone in sorted((root / "sys/class/thermal").glob("thermal_zone*")):
        temp, kind = _read(zone / "temp"), _read(zone / "type")
        if temp and temp.strip().lstrip("-").isdigit():
            out[f"{zone.name}:{(kind or '').strip()}"] = int(temp) / 1000
    for hw in sorted((root / "sys/class/hwmon").glob("hwmon*")):
        name = (_read(hw / "name") or hw.name).strip()
        for t in sorted(hw.glob("temp*_input")):
            val = _read(t)
            if val and val.strip().lstrip("-").isdigit():
                label = _read(t.with_name(t.name.replace("_input", "_label")))
                out[f"{name}:{(label or t.name).strip()}"] = int(val) / 1000
    return out


def parse_throttled(text: str) -> dict:
    """`vcgencmd get_throttled` (e.g. `throttled=0x50005`): the Raspberry Pi firmware's bit flags."""
    _, _, value = text.strip().partition("=")
    bits = int(value, 16)
    names = {0: "under_voltage", 1: "arm_freq_capped", 2: "throttled", 3: "soft_temp_limit",
             16: "under_voltage_occurred", 17: "arm_freq_capped_occurred", 18: "throttling_occurred",
             19: "soft_temp_limit_occurred"}
    return {"raw": value, "now": [n for b, n in names.items() if b < 16 and bits >> b & 1],
            "since_boot": [n for b, n in names.items() if b >= 16 and bits >> b & 1]}


def throttling(root: Path | None = None, vcgencmd: str | None = None) -> dict | None:
    """Throttling counters: x86 thermal_throttle counts, or the Pi firmware's flags. None if neither exists."""
    base = (root or sysfs_root()) / "sys/devices/system/cpu"
    counts = {}
    for f in sorted(base.glob("cpu[0-9]*/thermal_throttle/core_throttle_count")):
        val = _read(f)
        if val and val.strip().isdigit():
            counts[f.parent.parent.name] = int(val)
    if counts:
        return {"core_throttle_count": counts}
    if vcgencmd is None:
        import shutil
        import subprocess

        if not shutil.which("vcgencmd"):
            return None
        try:
            vcgencmd = subprocess.run(["vcgencmd", "get_throttled"], capture_output=True, text=True, timeout=5).stdout
        except (OSError, subprocess.SubprocessError):
            return None
    try:
        return parse_throttled(vcgencmd)
    except ValueError:
        return None


def cpu_percent_sample(sample_s: float) -> list[dict[str, float]]:
    """Per logical CPU, the percent of the next `sample_s` seconds spent in each of psutil's cpu_times fields.

    Not psutil.cpu_times_percent: it divides by max(1, total) with times in seconds, so a sample shorter
    than a second reads as mostly busy (psutil 7.2: idle 25 % on an idle machine over 0.25 s)."""
    before = psutil.cpu_times(percpu=True)
    time.sleep(sample_s)
    # not strict: a CPU taken offline during the sample ends the list (it has no second reading)
    return [times_percent(a, b) for a, b in zip(before, psutil.cpu_times(percpu=True), strict=False)]


def times_percent(before, after) -> dict[str, float]:
    """Each field's share (percent) of the time between two cpu_times readings of one CPU."""
    # guest time is already counted in user on Linux, so it is not part of the total
    fields = [f for f in before._fields if f not in ("guest", "guest_nice")]
    deltas = {f: max(0.0, getattr(after, f) - getattr(before, f)) for f in fields}
    total = sum(deltas.values())
    if total <= 0:  # no time accounted in the sample: read as busy, the cautious side for a noise warning
        return {f: 0.0 for f in fields}
    return {f: round(d * 100.0 / total, 1) for f, d in deltas.items()}


def state(sample_s: float = 0.25) -> dict:
    """Volatile state just before a case: load average and how busy the CPUs are right now.

    The load average lags by a minute and counts our own previous case, so the idle-core estimate
    comes from a short utilisation sample taken while this harness is idle.
    """
    times = cpu_percent_sample(sample_s)
    # busy as psutil.cpu_percent counts it: everything but idle and iowait
    busy = [round(max(0.0, 100.0 - t["idle"] - t.get("iowait", 0.0)), 1) for t in times]
    logical = len(busy) or 1
    idle_cores = sum(max(0.0, 100.0 - b) for b in busy) / 100.0
    return {
        "loadavg": list(os.getloadavg()),
        "cpu_busy_percent": busy,
        # time the hypervisor ran another guest on our vCPUs (Linux guests; absent elsewhere)
        "steal_percent": [t["steal"] for t in times] if all("steal" in t for t in times) else None,
        "idle_cores": round(idle_cores, 2),
        "logical_cores": logical,
        **cpu_frequencies(),
        "temperatures_c": temperatures(),
        "throttling": throttling(),
    }
