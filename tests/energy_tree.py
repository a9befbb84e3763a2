"""Fake sysfs trees with the exact layouts of real energy interfaces, and helpers that drive them.

Builders write under a root (pass it as `root=` or TRITBENCH_SYSFS_ROOT) and return the files a
test changes. Zones and hwmon devices live under sys/devices/... with sys/class/... and
sys/bus/i2c/drivers/... entries as symlinks, as on a real kernel.

`advancing_counters` runs a separate process that advances RAPL `energy_uj` files at a given power,
wrapping at `max_energy_range_uj`, and reports the joules it injected. `stepping_power` is a thread
that steps a power reading through a schedule and reports the energy that schedule represents.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "energy"
INTEL_RANGE_UJ = 262143328850  # a client Intel package: 2^32 units of 61 µJ
DRAM_RANGE_UJ = 65712999613  # 2^32 units of 15.3 µJ
AMD_RANGE_UJ = 65532610987


def write_atomic(path: Path, text: str) -> None:
    """Replace a file's content in one step, so a concurrent reader never sees it half written."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _files(folder: Path, files: Mapping[str, object]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, value in files.items():
        (folder / name).write_text(f"{value}\n")


def _link(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(target, link.parent))


# ---------------------------------------------------------------- powercap RAPL

def _zone(folder: Path, name: str, energy_uj: int, range_uj: int) -> None:
    _files(folder, {"name": name, "energy_uj": energy_uj, "max_energy_range_uj": range_uj, "enabled": 1,
                    "constraint_0_name": "long_term", "constraint_0_power_limit_uw": 15000000,
                    "constraint_0_time_window_us": 27983872, "constraint_0_max_power_uw": 15000000})


def build_intel_powercap(root: Path, *, packages: int = 1, subzones: tuple[str, ...] = ("core", "uncore", "dram"),
                         psys: bool = True, mmio: bool = True, range_uj: int = INTEL_RANGE_UJ,
                         dram_range_uj: int = DRAM_RANGE_UJ, start_uj: int = 1_000_000) -> dict[str, Path]:
    """Intel powercap: intel-rapl:<N> packages with subzones, psys, and an intel-rapl-mmio duplicate.

    Returns the `energy_uj` file of every zone by entry name (intel-rapl:0, intel-rapl:0:2, ...).
    """
    devices = root / "sys/devices/virtual/powercap"
    cls = root / "sys/class/powercap"
    out: dict[str, Path] = {}
    control = devices / "intel-rapl"
    _files(control, {"enabled": 1})
    _link(cls / "intel-rapl", control)
    for n in range(packages):
        pkg = control / f"intel-rapl:{n}"
        _zone(pkg, f"package-{n}", start_uj + n * 1000, range_uj)
        _link(cls / pkg.name, pkg)
        out[pkg.name] = pkg / "energy_uj"
        for m, sub in enumerate(subzones):
            z = pkg / f"intel-rapl:{n}:{m}"
            _zone(z, sub, start_uj // 2 + m, dram_range_uj if sub == "dram" else range_uj)
            _link(cls / z.name, z)
            out[z.name] = z / "energy_uj"
    if psys:
        z = control / f"intel-rapl:{packages}"
        _zone(z, "psys", start_uj * 3, range_uj)
        _link(cls / z.name, z)
        out[z.name] = z / "energy_uj"
    if mmio:
        mcontrol = devices / "intel-rapl-mmio"
        _files(mcontrol, {"enabled": 1})
        _link(cls / "intel-rapl-mmio", mcontrol)
        z = mcontrol / "intel-rapl-mmio:0"
        _zone(z, "package-0", start_uj + 7, range_uj)
        _link(cls / z.name, z)
        out[z.name] = z / "energy_uj"
    return out


def build_amd_powercap(root: Path, *, packages: int = 1, core: bool = False,
                       range_uj: int = AMD_RANGE_UJ, start_uj: int = 5_000_000) -> dict[str, Path]:
    """AMD Zen powercap (kernel >= 5.8): the same intel-rapl layout, package zones only (core optional)."""
    return build_intel_powercap(root, packages=packages, subzones=("core",) if core else (), psys=False, mmio=False,
                                range_uj=range_uj, start_uj=start_uj)


# ---------------------------------------------------------------- Jetson INA3221

ORIN_NANO_RAILS = {"VDD_IN": (5080, 1181), "VDD_CPU_GPU_CV": (5072, 412), "VDD_SOC": (5076, 310)}
NANO_RAILS = {"POM_5V_IN": (5064, 714), "POM_5V_GPU": (5024, 39), "POM_5V_CPU": (5016, 199)}


def build_jetson_hwmon(root: Path, rails: Mapping[str, tuple[int, int]] = ORIN_NANO_RAILS, *,
                       address: str = "1-0040", hwmon: int = 1) -> dict[str, tuple[Path, Path]]:
    """JetPack >= 5: hwmon `ina3221` with in<k>_label / in<k>_input (mV) / curr<k>_input (mA), k = 1..3.

    `rails` maps label -> (mV, mA); unused channels are labelled NC. Returns label -> (in, curr) files.
    """
    dev = root / "sys/devices/platform/bus@0/c240000.i2c/i2c-1" / address
    _files(dev, {"name": "ina3221", "modalias": "of:Nina3221T(null)Cti,ina3221"})
    hw = dev / "hwmon" / f"hwmon{hwmon}"
    _files(hw, {"name": "ina3221", "update_interval": 1100, "samples": 512})
    out = {}
    labels = list(rails) + ["NC"] * (3 - len(rails))
    for k, label in enumerate(labels, start=1):
        mv, ma = rails.get(label, (0, 0))
        _files(hw, {f"in{k}_label": label, f"in{k}_input": mv, f"in{k}_enable": 1, f"curr{k}_input": ma,
                    f"curr{k}_crit": 32760, f"curr{k}_max": 32760, f"shunt{k}_resistor": 5000,
                    f"in{k + 3}_input": ma * 5})
        if label != "NC":
            out[label] = (hw / f"in{k}_input", hw / f"curr{k}_input")
    _files(hw, {"in7_input": 0, "curr4_input": sum(ma for _, ma in rails.values())})
    _link(root / "sys/bus/i2c/drivers/ina3221" / address, dev)
    _link(root / "sys/class/hwmon" / f"hwmon{hwmon}", hw)
    return out


def build_jetson_iio(root: Path, rails: Mapping[str, tuple[int, int]] = NANO_RAILS, *,
                     address: str = "6-0040", device: int = 0) -> dict[str, Path]:
    """JetPack 4: iio `ina3221x` with rail_name_<k>, in_voltage<k>_input (mV), in_current<k>_input (mA),
    in_power<k>_input (mW), k = 0..2. Returns rail -> in_power file."""
    dev = root / "sys/devices/7000c400.i2c/i2c-6" / address
    iio = dev / f"iio:device{device}"
    _files(iio, {"name": "ina3221x", "running_mode": 1})
    out = {}
    for k, (rail, (mv, ma)) in enumerate(rails.items()):
        _files(iio, {f"rail_name_{k}": rail, f"in_voltage{k}_input": mv, f"in_current{k}_input": ma,
                     f"in_power{k}_input": mv * ma // 1000, f"crit_current_limit_{k}": 4000,
                     f"warn_current_limit_{k}": 3000})
        out[rail] = iio / f"in_power{k}_input"
    _link(root / "sys/bus/i2c/drivers/ina3221x" / address, dev)
    return out


# ---------------------------------------------------------------- generic hwmon

def _hwmon(root: Path, number: int, device: Path, files: Mapping[str, object]) -> Path:
    hw = device / "hwmon" / f"hwmon{number}"
    _files(hw, files)
    _link(root / "sys/class/hwmon" / f"hwmon{number}", hw)
    return hw


def build_coretemp(root: Path, number: int = 0) -> Path:
    """A hwmon with temperatures only (every x86 box has one): must be ignored."""
    return _hwmon(root, number, root / "sys/devices/platform/coretemp.0",
                  {"name": "coretemp", "temp1_input": 45000, "temp1_label": "Package id 0", "temp1_crit": 100000})


def build_acpi_power_meter(root: Path, watts: float = 142.5, number: int = 2) -> Path:
    """ACPI power meter (servers): name power_meter, power1_average in µW (no power1_input). Returns that file.

    The driver registers with the old hwmon_device_register(), so `name` and the sensors sit on the ACPI
    device, reached as hwmon<N>/device/, and hwmon<N>/ itself has no `name`."""
    acpi = root / "sys/devices/LNXSYSTM:00/LNXSYBUS:00/ACPI000D:00"
    _files(acpi, {"name": "power_meter", "power1_average": int(watts * 1e6), "power1_average_interval": 1000,
                  "power1_average_interval_min": 1000, "power1_average_interval_max": 1000,
                  "power1_is_battery": 0, "power1_accuracy": "100.0%", "power1_model_number": "",
                  "power1_oem_info": "", "power1_serial_number": "", "hid": "ACPI000D", "path": "\\_SB_.PMI0"})
    (acpi / "measures").mkdir()
    hw = _hwmon(root, number, acpi, {"uevent": ""})
    _link(hw / "device", acpi)
    return acpi / "power1_average"


def build_ina226(root: Path, watts: float = 3.2, number: int = 4) -> Path:
    """An INA226 board monitor: power1_input in µW. Returns that file."""
    hw = _hwmon(root, number, root / "sys/devices/platform/soc/fe804000.i2c/i2c-1/1-0045", {
        "name": "ina226", "in0_input": 2, "in1_input": 5100, "curr1_input": int(watts / 5.1 * 1000),
        "power1_input": int(watts * 1e6), "shunt_resistor": 10000, "update_interval": 1})
    return hw / "power1_input"


def build_amd_energy(root: Path, cores: int = 4, sockets: int = 1, number: int = 3,
                     start_uj: int = 80_000_000) -> dict[str, Path]:
    """amd_energy (kernel 5.8-5.12, and AMD's out-of-tree module): energy<k>_input µJ, labels Ecore<NNN>
    then Esocket<N>. Returns label -> file."""
    files: dict[str, object] = {"name": "amd_energy"}
    labels = [f"Ecore{c:03d}" for c in range(cores)] + [f"Esocket{s}" for s in range(sockets)]
    for k, label in enumerate(labels, start=1):
        files[f"energy{k}_label"] = label
        files[f"energy{k}_input"] = start_uj * (cores if label.startswith("Esocket") else 1) + k
    hw = _hwmon(root, number, root / "sys/devices/platform/amd_energy.0", files)
    return {label: hw / f"energy{k}_input" for k, label in enumerate(labels, start=1)}


def build_amdgpu(root: Path, watts: float = 35.0, number: int = 5) -> Path:
    """A GPU's hwmon with power1_average: not the CPU's power, so `auto` must not pick it."""
    hw = _hwmon(root, number, root / "sys/devices/pci0000:00/0000:00:01.1/0000:03:00.0",
                {"name": "amdgpu", "power1_average": int(watts * 1e6), "power1_cap": 150000000})
    return hw / "power1_average"


# ---------------------------------------------------------------- Raspberry Pi 5, macOS

PI5_MODEL = "Raspberry Pi 5 Model B Rev 1.0"
# channel numbers as vcgencmd prints them: (current channel, voltage channel)
PMIC_CHANNELS = {"3V7_WL_SW": (0, 8), "3V3_SYS": (1, 9), "1V8_SYS": (2, 10), "DDR_VDD2": (3, 11),
                 "DDR_VDDQ": (4, 12), "1V1_SYS": (5, 13), "0V8_SYS": (6, 14), "VDD_CORE": (7, 15),
                 "3V3_DAC": (17, 20), "3V3_ADC": (18, 21), "0V8_AON": (16, 19), "HDMI": (22, 23)}


def build_pi_model(root: Path, model: str = PI5_MODEL) -> Path:
    """The device-tree model string (NUL-terminated, as the kernel exposes it)."""
    base = root / "sys/firmware/devicetree/base"
    base.mkdir(parents=True, exist_ok=True)
    (base / "model").write_bytes(model.encode() + b"\x00")
    _link(root / "proc/device-tree", base)
    return base / "model"


def pmic_text(rails: Mapping[str, tuple[float, float]], ext5v: float = 5.1465, batt: float = 0.0) -> str:
    """`vcgencmd pmic_read_adc` output for rails given as name -> (volts, amps): currents, then voltages."""
    lines = [f"{name + '_A':>14} current({PMIC_CHANNELS.get(name, (30, 31))[0]})={amps:.8f}A"
             for name, (_, amps) in rails.items()]
    lines += [f"{name + '_V':>14} volt({PMIC_CHANNELS.get(name, (30, 31))[1]})={volts:.8f}V"
              for name, (volts, _) in rails.items()]
    lines += [f"{'EXT5V_V':>14} volt(24)={ext5v:.8f}V", f"{'BATT_V':>14} volt(25)={batt:.8f}V"]
    return "\n".join(lines) + "\n"


def powermetrics_text(cpu_mw: float, gpu_mw: float = 0.0, ane_mw: float = 0.0, elapsed_ms: float = 100.0) -> str:
    """One `powermetrics --samplers cpu_power -n 1` sample from an Apple Silicon Mac, trimmed."""
    total = round(cpu_mw) + round(gpu_mw) + round(ane_mw)
    return (
        "Machine model: Mac14,2\nOS version: 23E224\nBoot arguments:\nBoot time: Mon Apr  8 09:14:02 2024\n\n\n\n"
        f"*** Sampled system activity (Mon Apr  8 11:02:17 2024 +0200) ({elapsed_ms:.2f}ms elapsed) ***\n\n\n"
        "**** Processor usage ****\n\n"
        "E-Cluster HW active frequency: 1312 MHz\n"
        "E-Cluster HW active residency:  38.41% (600 MHz:   0% 912 MHz:  61%)\n"
        "E-Cluster idle residency:  61.59%\n"
        "P-Cluster HW active frequency: 3204 MHz\nP-Cluster HW active residency:  97.02% (660 MHz:   0%)\n"
        "P-Cluster idle residency:   2.98%\n\n"
        f"CPU Power: {round(cpu_mw)} mW\nGPU Power: {round(gpu_mw)} mW\nANE Power: {round(ane_mw)} mW\n"
        f"Combined Power (CPU + GPU + ANE): {total} mW\n\n"
    )


# ---------------------------------------------------------------- drivers

@dataclass
class Advancement:
    """What `advancing_counters` injected: joules per counter file, filled in when the block exits."""

    rates_w: dict[Path, float]
    injected_j: dict[Path, float] = field(default_factory=dict)

    @property
    def total_j(self) -> float:
        return sum(self.injected_j.values())


def _advance_main(argv: list[str]) -> int:
    """`python energy_tree.py advance PERIOD_S FILE=WATTS...`: advance counters until SIGTERM, then print
    the microjoules added to each file as JSON. Prints `ready` once every file has been written once."""
    period_s = float(argv[0])
    files = [Path(a.rsplit("=", 1)[0]) for a in argv[1:]]
    rates = [float(a.rsplit("=", 1)[1]) for a in argv[1:]]
    ranges = [int((f.parent / "max_energy_range_uj").read_text()) for f in files]
    starts = [int(f.read_text()) for f in files]
    added = [0] * len(files)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    t0 = time.perf_counter()
    ready = False
    while not stop:
        now = time.perf_counter()
        for i, f in enumerate(files):
            added[i] = int(rates[i] * (now - t0) * 1e6)
            write_atomic(f, f"{(starts[i] + added[i]) % ranges[i]}\n")
        if not ready:
            print("ready", flush=True)
            ready = True
        time.sleep(period_s)
    print(json.dumps(added), flush=True)
    return 0


@contextmanager
def advancing_counters(rates_w: Mapping[Path, float], period_s: float = 0.002) -> Iterator[Advancement]:
    """Advance each RAPL `energy_uj` file at `rates_w[file]` watts, wrapping at its zone's max_energy_range_uj,
    from a separate process (so the meter under test sees the file change as it would a kernel counter).

    On exit the process stops; `Advancement.injected_j` then holds exactly what was added to each file
    between its value on entry and its value on exit, wraps included.
    """
    paths = list(rates_w)
    args = [f"{p}={rates_w[p]}" for p in paths]
    proc = subprocess.Popen([sys.executable, __file__, "advance", str(period_s), *args],
                            stdout=subprocess.PIPE, text=True)
    adv = Advancement(dict(rates_w))
    try:
        if proc.stdout is None or proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the counter advancer did not start")
        yield adv
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
        lines = out.strip().splitlines()
        if lines:
            adv.injected_j = {p: uj / 1e6 for p, uj in zip(paths, json.loads(lines[-1]), strict=True)}


@dataclass
class Steps:
    """What `stepping_power` did. Each write is timed before and after (a loaded machine can pause the
    thread between the two), so the energy of the schedule is known to lie within `injected_range_j`."""

    writes: list[tuple[float, float, float]] = field(default_factory=list)  # (before, after, watts)
    injected_j: float = 0.0  # with every switch at the middle of its write
    injected_range_j: tuple[float, float] = (0.0, 0.0)

    def covers(self, joules: float | None, rel: float = 0.04) -> bool:
        """Whether `joules` is within `rel` of the range the schedule's energy lies in."""
        lo, hi = self.injected_range_j
        return joules is not None and lo * (1 - rel) <= joules <= hi * (1 + rel)

    def finish(self) -> None:
        # energy = sum_i switch_i x (P_before_i - P_after_i), the power being 0 before the first write
        lo = hi = mid = 0.0
        previous = 0.0
        for before, after, watts in self.writes:
            k = previous - watts
            mid += k * (before + after) / 2
            lo += k * (after if k < 0 else before)
            hi += k * (before if k < 0 else after)
            previous = watts
        self.injected_j, self.injected_range_j = mid, (lo, hi)


@contextmanager
def stepping_power(write: Callable[[float], None], steps: list[tuple[float, float]]) -> Iterator[Steps]:
    """A thread that writes each (watts, seconds) step through `write`, then 0 W.

    The power is 0 W before the first and after the last write, so a meter started before entering
    and stopped after exiting should integrate the schedule's energy: `Steps.covers(reading.joules)`.
    """
    result = Steps()

    def run() -> None:
        for watts, seconds in [*steps, (0.0, 0.0)]:
            before = time.perf_counter()
            write(watts)
            result.writes.append((before, time.perf_counter(), watts))
            time.sleep(seconds)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        thread.join()
        result.finish()


def hwmon_power_writer(path: Path) -> Callable[[float], None]:
    """Writes watts to a hwmon power file in µW."""
    return lambda watts: write_atomic(path, f"{round(watts * 1e6)}\n")


def jetson_current_writer(current: Path, millivolts: int) -> Callable[[float], None]:
    """Writes watts to an INA3221 rail as the current (mA) that gives them at the rail's voltage."""
    return lambda watts: write_atomic(current, f"{round(watts * 1e6 / millivolts)}\n")


if __name__ == "__main__" and sys.argv[1:2] == ["advance"]:
    sys.exit(_advance_main(sys.argv[2:]))
