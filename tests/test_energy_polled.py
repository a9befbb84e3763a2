"""Polled sources (Jetson INA3221, generic hwmon, Raspberry Pi 5 PMIC, macOS powermetrics): the power a
helper thread steps through a schedule is integrated to within a few percent of the energy it represents;
rails and channels are never counted twice; failures mid-window give unavailable, never a zero."""

import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tritbench.measure.energy import (
    HwmonMeter,
    JetsonMeter,
    Pi5Meter,
    PowermetricsMeter,
    measure_idle,
    net_energy,
    parse_pmic_read_adc,
    parse_powermetrics,
)

from .energy_tree import (
    FIXTURES,
    build_acpi_power_meter,
    build_amd_energy,
    build_amdgpu,
    build_coretemp,
    build_ina226,
    build_jetson_hwmon,
    build_jetson_iio,
    build_pi_model,
    hwmon_power_writer,
    jetson_current_writer,
    pmic_text,
    powermetrics_text,
    stepping_power,
    write_atomic,
)

STEPS = [(6.0, 0.25), (14.0, 0.3), (3.0, 0.25), (9.0, 0.2)]
FAST = {"interval_s": 0.01, "min_interval_s": 0.005}
REPO = Path(__file__).resolve().parent.parent

# A stand-in for `powermetrics --samplers cpu_power -i <ms>`: its preamble once, then one sample per
# interval, back to back, each the time-weighted mean of the mW in a state file over its interval and
# printed (with its real `ms elapsed`) as soon as the interval ends; it burns `burn_ms` of CPU per
# sample, and after `count` samples (if >= 0) it fails as a real one might.
FAKE_POWERMETRICS = """\
import sys, time
repo, ms, state, burn_s, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]) / 1e3, int(sys.argv[5])
sys.path.insert(0, repo)
from tests.energy_tree import powermetrics_text

def mw():
    with open(state) as f:
        return float(f.read())

sys.stdout.write(powermetrics_text(0.0).partition("*** Sampled")[0])
sys.stdout.flush()
n, t = 0, time.perf_counter()
while count < 0 or n < count:
    c = time.process_time()
    while time.process_time() - c < burn_s:
        pass
    end, mj, v, last = t + ms / 1e3, 0.0, mw(), t
    while True:
        now = time.perf_counter()
        mj += v * (min(now, end) - last)
        if now >= end:
            break
        v, last = mw(), now
        time.sleep(0.001)
    text = powermetrics_text(mj / (end - t), elapsed_ms=(end - t) * 1e3)
    sys.stdout.write("*** Sampled" + text.partition("*** Sampled")[2])
    sys.stdout.flush()
    n, t = n + 1, end
sys.stderr.write("powermetrics: lost contact with the SMC\\n")
sys.exit(1)
"""


@dataclass
class FakePowermetrics:
    """The `stream=` of a PowermetricsMeter: gives the stand-in's argv and counts how often it is launched."""

    folder: Path
    burn_ms: float = 0.0
    count: int = -1
    launches: list[list[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.script, self.state = self.folder / "fake_powermetrics.py", self.folder / "fake_powermetrics.mw"
        self.script.write_text(FAKE_POWERMETRICS)
        self.set_watts(0.0)

    def set_watts(self, watts: float) -> None:
        write_atomic(self.state, f"{watts * 1000}\n")

    def __call__(self, ms: int) -> list[str]:
        argv = [sys.executable, str(self.script), str(REPO), str(ms), str(self.state), str(self.burn_ms),
                str(self.count)]
        self.launches.append(argv)
        return argv


def fake_powermetrics_meter(fake: FakePowermetrics, interval_s: float = 0.05) -> PowermetricsMeter:
    text = powermetrics_text(0.0)
    return PowermetricsMeter(runner=lambda ms: text, stream=fake, platform="darwin", interval_s=interval_s,
                             min_interval_s=0.005)


def integrate(meter, write, steps=STEPS):
    """Start the meter, run the schedule, stop: (reading, what the schedule injected)."""
    write(0.0)
    meter.start()
    with stepping_power(write, steps) as done:
        pass
    return meter.stop(), done


# ---------------------------------------------------------------- Jetson

def test_jetson_hwmon_integrates_vdd_in_and_keeps_the_sub_rails_apart(tmp_path):
    rails = build_jetson_hwmon(tmp_path, {"VDD_IN": (5000, 0), "VDD_CPU_GPU_CV": (5000, 400), "VDD_SOC": (5000, 300)})
    meter = JetsonMeter(tmp_path, **FAST)
    assert meter.domains == ["VDD_IN"] and meter.parts == ["VDD_CPU_GPU_CV", "VDD_SOC"]
    r, injected = integrate(meter, jetson_current_writer(rails["VDD_IN"][1], 5000))
    assert r.source == "measured:ina3221/VDD_IN"
    assert injected.covers(r.joules), (r.joules, injected.injected_range_j)
    assert injected.injected_j > 5
    assert r.parts["VDD_CPU_GPU_CV"] == pytest.approx(2.0 * r.window_s, rel=1e-6)  # 5 V x 0.4 A
    assert r.samples > 50


def test_jetson_without_an_input_rail_sums_the_monitored_rails(tmp_path):
    # AGX Orin: two INA3221s, no VDD_IN, unconnected channels labelled NC
    build_jetson_hwmon(tmp_path, {"VDD_GPU_SOC": (5000, 600), "VDD_CPU_CV": (5000, 200), "VIN_SYS_5V0": (5000, 500)})
    build_jetson_hwmon(tmp_path, {"NC": (0, 0), "VDDQ_VDD2_1V8AO": (5000, 100)}, address="1-0041", hwmon=2)
    meter = JetsonMeter(tmp_path, **FAST)
    assert meter.domains == ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"] and meter.parts == []
    meter.start()
    time.sleep(0.1)
    r = meter.stop()
    assert r.joules == pytest.approx(7.0 * r.window_s, rel=1e-6)


def test_jetson_iio_layout_of_jetpack_4(tmp_path):
    power = build_jetson_iio(tmp_path)
    meter = JetsonMeter(tmp_path, **FAST)
    assert meter.domains == ["POM_5V_IN"] and meter.parts == ["POM_5V_GPU", "POM_5V_CPU"]

    def write(watts):
        write_atomic(power["POM_5V_IN"], f"{round(watts * 1000)}\n")  # in_power is in mW

    r, injected = integrate(meter, write)
    assert r.source == "measured:ina3221/POM_5V_IN" and injected.covers(r.joules)


def test_a_rail_that_vanishes_mid_window_gives_unavailable(tmp_path):
    rails = build_jetson_hwmon(tmp_path)
    meter = JetsonMeter(tmp_path, **FAST)
    meter.start()
    rails["VDD_SOC"][1].unlink()
    time.sleep(0.1)
    r = meter.stop()
    assert r.joules is None
    path = tmp_path / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1/curr3_input"
    assert r.source == f"unavailable:jetson: {path} disappeared during the measurement"


# ---------------------------------------------------------------- generic hwmon

def test_acpi_power_meter_average_is_integrated_and_gpus_and_temps_are_ignored(tmp_path):
    build_coretemp(tmp_path)
    build_amdgpu(tmp_path)
    power = build_acpi_power_meter(tmp_path)
    meter = HwmonMeter(tmp_path, **FAST)
    assert meter.domains == ["power_meter:power1"]
    r, injected = integrate(meter, hwmon_power_writer(power))
    assert r.source == "measured:hwmon/power_meter:power1"
    assert injected.covers(r.joules)


def test_power_input_in_microwatts(tmp_path):
    power = build_ina226(tmp_path)
    meter = HwmonMeter(tmp_path, **FAST)
    r, injected = integrate(meter, hwmon_power_writer(power))
    assert r.source == "measured:hwmon/ina226:power1" and injected.covers(r.joules)


def test_a_gpu_alone_is_not_taken_for_the_machine_unless_asked_for(tmp_path):
    build_coretemp(tmp_path)
    build_amdgpu(tmp_path)
    meter = HwmonMeter(tmp_path)
    assert meter.reason == f"hwmon: no power or energy sensor in {tmp_path}/sys/class/hwmon (skipped: amdgpu (GPU))"
    assert HwmonMeter(tmp_path, device="amdgpu").domains == ["amdgpu:power1"]


def test_amd_energy_counters_sum_the_sockets_not_the_cores(tmp_path):
    files = build_amd_energy(tmp_path, cores=4, sockets=2)
    meter = HwmonMeter(tmp_path)
    assert meter.domains == ["amd_energy:Esocket0", "amd_energy:Esocket1"] and len(meter.parts) == 4
    meter.start()
    for label, uj in (("Esocket0", 3_000_000), ("Esocket1", 2_000_000), ("Ecore000", 700_000)):
        write_atomic(files[label], f"{int(files[label].read_text()) + uj}\n")
    r = meter.stop()
    assert r.source == "measured:hwmon/amd_energy:Esocket0+amd_energy:Esocket1"
    assert r.joules == pytest.approx(5.0) and r.parts["amd_energy:Ecore000"] == pytest.approx(0.7)


def test_an_energy_counter_that_goes_backwards_gives_unavailable(tmp_path):
    files = build_amd_energy(tmp_path, cores=1)
    meter = HwmonMeter(tmp_path)
    meter.start()
    write_atomic(files["Esocket0"], "12\n")
    r = meter.stop()
    assert r.source.startswith("unavailable:hwmon: the amd_energy:Esocket0 counter went backwards")


def test_power_meter_wins_over_other_sensors(tmp_path):
    build_ina226(tmp_path, number=1)
    build_acpi_power_meter(tmp_path, number=7)
    assert HwmonMeter(tmp_path).domains == ["power_meter:power1"]


# ---------------------------------------------------------------- Raspberry Pi 5

def test_pmic_output_pairs_currents_with_volts_and_skips_unpaired_channels():
    rails = parse_pmic_read_adc((FIXTURES / "vcgencmd_pmic_read_adc_pi5.txt").read_text())
    assert len(rails) == 12 and "EXT5V" not in rails and "BATT" not in rails
    pairs = {"3V7_WL_SW": (0.00390372, 3.714285), "3V3_SYS": (0.0527, 3.312087), "1V8_SYS": (0.1654, 1.804395),
             "DDR_VDD2": (0.02147046, 1.112381), "DDR_VDDQ": (0.0, 0.6058608), "1V1_SYS": (0.1864026, 1.105128),
             "0V8_SYS": (0.2911598, 0.8021978), "VDD_CORE": (0.4192511, 0.72), "3V3_DAC": (0.00042735, 3.30989),
             "3V3_ADC": (0.00042735, 3.306227), "0V8_AON": (0.0051282, 0.7985348), "HDMI": (0.0172161, 5.14652)}
    assert rails == pytest.approx({rail: a * v for rail, (a, v) in pairs.items()})
    assert parse_pmic_read_adc((FIXTURES / "vcgencmd_pmic_read_adc_pi4.txt").read_text()) == {}


def test_pi5_meter_on_captured_output(tmp_path):
    build_pi_model(tmp_path)
    text = (FIXTURES / "vcgencmd_pmic_read_adc_pi5.txt").read_text()
    meter = Pi5Meter(tmp_path, runner=lambda: text, **FAST)
    assert meter.interval_s == 0.01 and Pi5Meter(tmp_path, runner=lambda: text).interval_s == 0.5
    meter.start()
    time.sleep(0.1)
    r = meter.stop()
    assert r.source == "measured:vcgencmd/pmic-rails"
    assert r.joules == pytest.approx(sum(parse_pmic_read_adc(text).values()) * r.window_s, rel=1e-6)
    assert "not the board's 5 V input" in r.note and "VDD_CORE" in r.parts


def test_pi5_power_stepping_is_integrated(tmp_path):
    build_pi_model(tmp_path)
    state = {"VDD_CORE": (0.72, 0.0), "3V3_SYS": (3.3, 0.0)}
    lock = threading.Lock()

    def runner():
        with lock:
            return pmic_text(state)

    def write(watts):
        with lock:
            state["VDD_CORE"] = (0.72, watts / 0.72)

    r, injected = integrate(Pi5Meter(tmp_path, runner=runner, interval_s=0.01, min_interval_s=0.005), write)
    assert injected.covers(r.joules)


def test_pi5_is_unavailable_with_its_reason(tmp_path):
    model = tmp_path / "proc/device-tree/model"
    assert Pi5Meter(tmp_path).reason == f"pi5: not a Raspberry Pi (no 'Raspberry Pi' in {model})"
    build_pi_model(tmp_path, "Raspberry Pi 4 Model B Rev 1.5")
    pi4 = (FIXTURES / "vcgencmd_pmic_read_adc_pi4.txt").read_text()
    assert "only the Raspberry Pi 5 has this PMIC" in Pi5Meter(tmp_path, runner=lambda: pi4).reason
    if shutil.which("vcgencmd") is None:
        missing = Pi5Meter(tmp_path)  # the real command, which this machine lacks
        assert missing.reason.startswith("pi5: vcgencmd not found") and missing.found


def test_a_command_that_starts_failing_gives_unavailable(tmp_path):
    build_pi_model(tmp_path)
    text = (FIXTURES / "vcgencmd_pmic_read_adc_pi5.txt").read_text()
    calls = {"n": 0}

    def runner():
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(5, "Input/output error", "/dev/vcio")
        return text

    meter = Pi5Meter(tmp_path, runner=runner, **FAST)
    meter.start()
    time.sleep(0.1)
    assert meter.stop().source == "unavailable:pi5: cannot read /dev/vcio: Input/output error"


# ---------------------------------------------------------------- macOS powermetrics

def test_powermetrics_text_is_parsed_in_watts():
    apple = parse_powermetrics((FIXTURES / "powermetrics_cpu_power_apple.txt").read_text())
    assert apple == pytest.approx({"cpu": 6.84, "gpu": 0.027, "ane": 0.0, "combined": 6.867})
    intel = parse_powermetrics((FIXTURES / "powermetrics_cpu_power_intel.txt").read_text())
    assert intel == pytest.approx({"package": 3.51})


def test_powermetrics_meter_on_a_streamed_constant_power(tmp_path):
    text = (FIXTURES / "powermetrics_cpu_power_apple.txt").read_text()
    asked = []

    def runner(ms):
        asked.append(ms)
        return text

    fake = FakePowermetrics(tmp_path)
    fake.set_watts(6.867)
    meter = PowermetricsMeter(runner=runner, stream=fake, platform="darwin", interval_s=0.05, min_interval_s=0.01)
    assert asked == [100] and fake.launches == []  # probed once with -n 1; nothing runs until a window
    try:
        meter.start()
        time.sleep(0.2)
        r = meter.stop()
    finally:
        meter.close()
    assert r.source == "measured:powermetrics/cpu+gpu+ane"
    assert r.joules == pytest.approx(6.867 * r.window_s, rel=1e-6)
    assert r.domains["gpu"] == 0.0 and r.samples >= 4
    assert [argv[3] for argv in fake.launches] == ["50"]  # the stream samples every interval
    intel = (FIXTURES / "powermetrics_cpu_power_intel.txt").read_text()
    assert PowermetricsMeter(runner=lambda ms: intel, platform="darwin").domains == ["package"]


def test_powermetrics_power_stepping_is_integrated(tmp_path):
    fake = FakePowermetrics(tmp_path)
    meter = fake_powermetrics_meter(fake, interval_s=0.02)
    try:
        r, injected = integrate(meter, fake.set_watts)
    finally:
        meter.close()
    assert r.available, r.source
    assert injected.covers(r.joules), (r.joules, injected.injected_range_j)


def test_powermetrics_is_macos_only():
    meter = PowermetricsMeter(platform="linux")
    assert meter.reason == "powermetrics: macOS only (this is linux)"
    assert meter.stop().source == "unavailable:powermetrics: macOS only (this is linux)"


# ---------------------------------------------------------------- idle baseline

def test_idle_baseline_and_net_energy(tmp_path):
    power = build_acpi_power_meter(tmp_path, watts=50.0)
    meter = HwmonMeter(tmp_path, **FAST)
    idle = measure_idle(meter, 0.2)
    assert idle.watts == pytest.approx(50.0) and idle.window_s == pytest.approx(0.2, abs=0.05)
    write_atomic(power, "80000000\n")
    meter.start()
    time.sleep(0.3)
    gross = meter.stop()
    assert net_energy(gross, idle.watts) == pytest.approx(30.0 * gross.window_s, rel=1e-6)
