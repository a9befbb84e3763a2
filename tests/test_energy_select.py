"""Choosing a meter: explicit kinds, the `auto` order, unknown kinds, missing roots, and the probe that
says for every kind why it cannot measure. On this machine (a VM) auto is unavailable, not zero."""

import importlib.util
import sys
import time
import types
from pathlib import Path

import pytest

from tritbench.errors import ConfigError
from tritbench.measure.energy import METER_KINDS, EnergyReading, Meter, PyRaplMeter, probe_meters, select_meter

from .energy_tree import (
    FIXTURES,
    build_acpi_power_meter,
    build_ina226,
    build_intel_powercap,
    build_jetson_hwmon,
    build_pi_model,
)

PI5_TEXT = (FIXTURES / "vcgencmd_pmic_read_adc_pi5.txt").read_text()
MAC_TEXT = (FIXTURES / "powermetrics_cpu_power_apple.txt").read_text()
RUNNERS = {"pi5": lambda: PI5_TEXT, "powermetrics": lambda ms: MAC_TEXT}


def test_unknown_kind_is_a_config_error_listing_the_known_ones():
    with pytest.raises(ConfigError) as err:
        select_meter("nvml")
    msg = str(err.value)
    assert "\n" not in msg and "'nvml'" in msg and all(k in msg for k in METER_KINDS)


def test_none_turns_energy_off():
    r = select_meter("none").stop()
    assert r.source == "unavailable:energy measurement turned off (--energy none)" and r.joules is None


def test_auto_takes_the_first_available_in_order(tmp_path):
    build_acpi_power_meter(tmp_path)
    assert select_meter("auto", tmp_path).kind == "hwmon"
    build_pi_model(tmp_path)
    assert select_meter("auto", tmp_path, runners=RUNNERS).kind == "pi5"
    build_jetson_hwmon(tmp_path)
    assert select_meter("auto", tmp_path, runners=RUNNERS).kind == "jetson"
    build_intel_powercap(tmp_path)
    meter = select_meter("auto", tmp_path, runners=RUNNERS)
    assert meter.kind == "rapl" and meter.domains == ["package-0", "dram"]


def test_auto_reaches_powermetrics_on_macos(tmp_path):
    meter = select_meter("auto", tmp_path, runners=RUNNERS, platform="darwin")
    assert meter.kind == "powermetrics" and meter.available


def test_auto_with_nothing_says_what_was_tried(tmp_path):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 hypervisor\n")
    r = select_meter("auto", tmp_path).stop()
    assert r.source == ("unavailable:no powercap RAPL, INA3221, Raspberry Pi PMIC, hwmon power sensor or powermetrics "
                        "found (virtual machine: cpuinfo has the hypervisor flag)")


def test_auto_surfaces_hardware_that_is_present_but_unusable(tmp_path):
    build_pi_model(tmp_path, "Raspberry Pi 4 Model B Rev 1.5")
    r = select_meter("auto", tmp_path, runners={"pi5": lambda: 'error=1 error_msg="Command not registered"\n'}).stop()
    assert r.source.startswith("unavailable:pi5: vcgencmd pmic_read_adc gave no rail currents and voltages")


def test_an_explicit_kind_without_its_hardware_says_why(tmp_path):
    assert select_meter("rapl", tmp_path).stop().source == f"unavailable:rapl: {tmp_path}/sys/class/powercap not found"
    assert select_meter("powermetrics", tmp_path).reason == f"powermetrics: macOS only (this is {sys.platform})"
    assert select_meter("jetson", tmp_path).reason.startswith("jetson: no INA3221 rails under ")


def test_a_root_that_does_not_exist_is_named(tmp_path):
    missing = tmp_path / "nope"
    assert select_meter("auto", missing).stop().source == (
        f"unavailable:sysfs root {missing} does not exist (is TRITBENCH_SYSFS_ROOT right?)")
    assert select_meter("hwmon", missing).reason == f"hwmon: sysfs root {missing} does not exist"
    by_kind = {p.kind: p for p in probe_meters(missing)}
    for kind in ("rapl", "jetson", "pi5", "hwmon"):
        assert by_kind[kind].reason == f"{kind}: sysfs root {missing} does not exist"
    assert str(missing) in by_kind["pyrapl"].reason


def test_probe_lists_every_kind_with_its_reason(tmp_path):
    build_intel_powercap(tmp_path)
    probes = probe_meters(tmp_path, runners=RUNNERS)
    assert [p.kind for p in probes] == ["rapl", "pyrapl", "jetson", "pi5", "hwmon", "powermetrics"]
    by_kind = {p.kind: p for p in probes}
    assert by_kind["rapl"].available and by_kind["rapl"].reason is None
    assert by_kind["rapl"].domains == ["package-0", "dram"] and "core" in by_kind["rapl"].parts
    for p in probes[1:]:
        assert not p.available and p.reason.startswith(f"{p.kind}: ")
    assert by_kind["pi5"].to_dict()["reason"].startswith("pi5: not a Raspberry Pi")


def test_this_machine_reports_unavailable_not_zero(monkeypatch):
    monkeypatch.delenv("TRITBENCH_SYSFS_ROOT", raising=False)
    meter = select_meter()
    if meter.available:
        pytest.skip(f"this machine has a {meter.kind} energy source")
    meter.start()
    r = meter.stop()
    assert r.joules is None and r.source.startswith("unavailable:") and len(r.reason) > 10
    assert all(not p.available and p.reason for p in probe_meters())


def test_every_meter_follows_the_protocol_and_works_as_a_context_manager(tmp_path):
    build_intel_powercap(tmp_path)
    for kind in METER_KINDS:
        meter = select_meter(kind, tmp_path)
        assert isinstance(meter, Meter)
        with meter:
            pass
        assert isinstance(meter.reading, EnergyReading)
        assert meter.reading.available == meter.available


def test_polled_meters_take_the_interval_given(tmp_path):
    build_acpi_power_meter(tmp_path)
    assert select_meter("hwmon", tmp_path, interval_s=0.05).interval_s == 0.05


# ---------------------------------------------------------------- pyRAPL adapter

def fake_pyrapl(pkg, dram, setup_error=None):
    """A stand-in with pyRAPL's API (setup, Measurement.begin/end/result with µJ lists per socket)."""
    mod = types.ModuleType("pyRAPL")

    def setup():
        if setup_error:
            raise setup_error

    class Measurement:
        def __init__(self, label):
            self.result = None

        def begin(self):
            pass

        def end(self):
            self.result = types.SimpleNamespace(pkg=pkg, dram=dram, duration=1.0)

    mod.setup, mod.Measurement = setup, Measurement
    return mod


def test_pyrapl_is_unavailable_when_not_installed_or_on_another_root(tmp_path):
    if importlib.util.find_spec("pyRAPL") is None:
        assert PyRaplMeter(Path("/")).reason == "pyrapl: pyRAPL is not installed (pip install pyRAPL)"
    reason = PyRaplMeter(tmp_path).reason
    assert reason == f"pyrapl: pyRAPL reads the real /sys and cannot use the sysfs root {tmp_path}"


def test_pyrapl_results_are_converted_and_labelled():
    meter = PyRaplMeter(Path("/"), module=fake_pyrapl([2_500_000, 1_000_000], [400_000, 100_000]))
    with meter:
        pass
    r = meter.reading
    assert r.source == "measured:pyrapl/package-0+package-1+dram-0+dram-1"
    assert r.joules == pytest.approx(4.0) and "no wraparound correction" in r.note


def test_pyrapl_wrap_and_setup_failure_are_unavailable():
    wrapped = PyRaplMeter(Path("/"), module=fake_pyrapl([-262_000_000], None))
    wrapped.start()
    assert "wrapped during the window" in wrapped.stop().source

    class PyRAPLCantRecordEnergyConsumption(Exception):
        pass

    broken = PyRaplMeter(Path("/"), module=fake_pyrapl([], None, PyRAPLCantRecordEnergyConsumption("PKG")))
    assert broken.reason == "pyrapl: pyRAPL.setup() failed: PyRAPLCantRecordEnergyConsumption: PKG"


def test_labels_that_are_not_utf8_do_not_break_the_meter(tmp_path):
    power = build_ina226(tmp_path)
    (power.parent / "name").write_bytes(b"ina\xff\xfe226")  # a driver, or a captured tree, with odd bytes
    (power.parent / "power1_label").write_bytes(b"VDD_\xc3(")
    meter = select_meter("hwmon", tmp_path)
    assert meter.available, meter.reason
    meter.start()
    time.sleep(0.1)
    reading = meter.stop()
    assert reading.joules is not None and reading.source.startswith("measured:hwmon")
    assert "\ufffd" in reading.source + " ".join(reading.domains or {})
