"""What a device is, read on the device before anything is installed there.

The controller sends this file's source to the device's `python3 -` and reads one JSON line back, so it may
use the standard library only (the device may have nothing else yet) and must run on any Python 3.8+.
`main()` is also callable here, for tests of its readers."""

import json
import os
import platform
import shutil
import sys
import sysconfig


def _read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def cpu_model(cpuinfo):
    """x86 'model name', or the ARM board line or implementer/part (Linux prints no model name on many boards)."""
    for key in ("model name", "Model", "Hardware", "cpu model"):
        for line in (cpuinfo or "").splitlines():
            k, _, v = line.partition(":")
            if k.strip() == key and v.strip():
                return v.strip()
    return None


def mem_total_bytes(meminfo):
    for line in (meminfo or "").splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024
    return None


def thermal_c(root="/sys/class/thermal"):
    """Each thermal zone's temperature in degrees C (the kernel reports milli-degrees)."""
    out = {}
    try:
        zones = sorted(os.listdir(root))
    except OSError:
        return out
    for z in zones:
        raw = _read(os.path.join(root, z, "temp"))
        kind = (_read(os.path.join(root, z, "type")) or z).strip()
        if raw and raw.strip().lstrip("-").isdigit():
            out[kind + ":" + z] = int(raw.strip()) / 1000.0
    return out


def main(work_dir):
    work = os.path.expanduser(work_dir)
    try:
        os.makedirs(work, exist_ok=True)
        usage = shutil.disk_usage(work)
        free, writable = usage.free, os.access(work, os.W_OK)
    except OSError as exc:
        free, writable = None, False
        work = f"{work} ({exc.strerror})"
    libc, libc_version = platform.libc_ver()
    gov = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    return {
        "arch": platform.machine(),
        "page_size": os.sysconf("SC_PAGE_SIZE"),
        "cpu_model": cpu_model(_read("/proc/cpuinfo")),
        "logical_cores": os.cpu_count(),
        "ram_bytes": mem_total_bytes(_read("/proc/meminfo")),
        "governor": gov.strip() if gov else None,
        "thermal_c": thermal_c(),
        "python": platform.python_version(),
        "python_tag": "cp{}{}".format(*sys.version_info[:2]),
        "implementation": sys.implementation.name,
        "platform": sysconfig.get_platform(),
        "libc": libc or None,
        "libc_version": libc_version or None,
        "kernel": platform.release(),
        "work_dir": work,
        "work_dir_writable": writable,
        "work_dir_free_bytes": free,
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1] if len(sys.argv) > 1 else "~/.tritbench")))
