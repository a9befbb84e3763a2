"""RAPL through powercap, against fake trees with the real layout: each domain counted once, every
wraparound corrected (several in one window, injected by a separate process), EACCES and a vanishing
counter reported as unavailable with their reason."""

import errno
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tritbench.measure.energy import RaplMeter, select_meter
from tritbench.measure.energy.rapl import PERMISSION_HINT, find_zones, plan_domains

from .energy_tree import (
    INTEL_RANGE_UJ,
    advancing_counters,
    build_amd_powercap,
    build_intel_powercap,
    write_atomic,
)


def add_uj(path: Path, uj: int) -> None:
    """Advance a counter as the kernel would, wrapping at its zone's range."""
    rng = int((path.parent / "max_energy_range_uj").read_text())
    write_atomic(path, f"{(int(path.read_text()) + uj) % rng}\n")


def test_intel_domains_are_counted_once(tmp_path):
    build_intel_powercap(tmp_path)
    summed, parts = plan_domains(find_zones(tmp_path))
    assert list(summed) == ["package-0", "dram"]  # package holds core and uncore; dram is outside it
    assert sorted(parts) == ["core", "psys", "uncore"]
    assert all(z.control == "intel-rapl" for z in [*summed.values(), *parts.values()])  # the mmio twin is out


def test_two_reads_give_the_delta_of_package_and_dram_only(tmp_path):
    files = build_intel_powercap(tmp_path)
    meter = RaplMeter(tmp_path)
    assert meter.available and meter.domains == ["package-0", "dram"]
    meter.start()
    add_uj(files["intel-rapl:0"], 2_500_000)
    add_uj(files["intel-rapl:0:0"], 1_000_000)  # core: inside the package already
    add_uj(files["intel-rapl:0:2"], 500_000)  # dram
    add_uj(files["intel-rapl:1"], 9_000_000)  # psys: the whole platform, a parent of both
    add_uj(files["intel-rapl-mmio:0"], 2_500_000)  # the same package through MMIO
    r = meter.stop()
    assert r.source == "measured:rapl/package-0+dram"
    assert r.joules == pytest.approx(3.0) and r.domains == pytest.approx({"package-0": 2.5, "dram": 0.5})
    assert r.parts == pytest.approx({"core": 1.0, "uncore": 0.0, "psys": 9.0})
    assert r.wraps == 0 and r.samples >= 2 and r.window_s > 0


def test_the_mmio_zone_counts_when_it_is_the_only_view_of_the_package(tmp_path):
    files = build_intel_powercap(tmp_path, subzones=(), psys=False)
    shutil.rmtree(tmp_path / "sys/devices/virtual/powercap/intel-rapl/intel-rapl:0")
    (tmp_path / "sys/class/powercap/intel-rapl:0").unlink()
    meter = RaplMeter(tmp_path)
    meter.start()
    add_uj(files["intel-rapl-mmio:0"], 1_200_000)
    assert meter.stop().domains == pytest.approx({"package-0": 1.2})


def test_amd_packages_are_summed_and_core_is_only_a_part(tmp_path):
    files = build_amd_powercap(tmp_path, packages=2, core=True)
    meter = RaplMeter(tmp_path)
    meter.start()
    add_uj(files["intel-rapl:0"], 4_000_000)
    add_uj(files["intel-rapl:1"], 3_000_000)
    add_uj(files["intel-rapl:0:0"], 100_000)
    r = meter.stop()
    assert r.source == "measured:rapl/package-0+package-1"
    assert r.joules == pytest.approx(7.0) and set(r.parts) == {"core-0", "core-1"}


def test_psys_level_sums_the_platform_zone_alone(tmp_path):
    files = build_intel_powercap(tmp_path)
    meter = RaplMeter(tmp_path, level="psys")
    meter.start()
    add_uj(files["intel-rapl:1"], 6_000_000)
    add_uj(files["intel-rapl:0"], 4_000_000)
    r = meter.stop()
    assert r.source == "measured:rapl/psys" and r.joules == pytest.approx(6.0)


def test_a_single_wrap_at_the_real_range_is_corrected(tmp_path):
    files = build_intel_powercap(tmp_path, start_uj=INTEL_RANGE_UJ - 500_000, subzones=())
    meter = RaplMeter(tmp_path)
    meter.start()
    add_uj(files["intel-rapl:0"], 1_500_000)
    r = meter.stop()
    assert int(files["intel-rapl:0"].read_text()) < 1_500_000  # it did wrap
    assert r.joules == pytest.approx(1.5) and r.wraps == 1


def test_the_poll_interval_follows_the_counter_range(tmp_path):
    build_intel_powercap(tmp_path / "real")
    # 262 kJ at 1000 W wraps in 262 s: poll at the 10 s ceiling
    assert RaplMeter(tmp_path / "real").interval_s == 10.0
    build_intel_powercap(tmp_path / "small", range_uj=20_000_000, dram_range_uj=20_000_000)
    assert RaplMeter(tmp_path / "small", max_power_w=50).interval_s == pytest.approx(0.1)  # 0.4 s / 4
    assert RaplMeter(tmp_path / "small").interval_s == 0.05  # the floor


def test_several_wraps_in_one_window_are_all_counted(tmp_path):
    # 20 J counters at 40 W wrap every 0.5 s: about five wraps of the package in 2.5 s (margin for a slow
    # advancer process on a loaded machine: at least three are needed)
    files = build_intel_powercap(tmp_path, range_uj=20_000_000, dram_range_uj=20_000_000, psys=False)
    meter = RaplMeter(tmp_path, max_power_w=50)
    rates = {files["intel-rapl:0"]: 40.0, files["intel-rapl:0:2"]: 8.0}
    meter.start()
    with advancing_counters(rates) as adv:
        time.sleep(2.5)
    r = meter.stop()
    assert r.source == "measured:rapl/package-0+dram", r.source
    injected = {"package-0": adv.injected_j[files["intel-rapl:0"]], "dram": adv.injected_j[files["intel-rapl:0:2"]]}
    assert injected["package-0"] > 3 * 20  # the test really crossed the range several times
    assert r.domains == pytest.approx(injected, rel=0.02)
    assert r.joules == pytest.approx(sum(injected.values()), rel=0.02)
    assert r.wraps >= 3 and r.samples >= 8


def test_a_counter_that_disappears_mid_window_gives_unavailable(tmp_path):
    files = build_intel_powercap(tmp_path, range_uj=20_000_000, dram_range_uj=20_000_000)
    meter = RaplMeter(tmp_path, max_power_w=50)  # polls every 0.1 s
    meter.start()
    files["intel-rapl:0:2"].unlink()
    time.sleep(0.3)
    r = meter.stop()
    assert r.joules is None
    path = tmp_path / "sys/class/powercap/intel-rapl:0:2/energy_uj"
    assert r.source == f"unavailable:rapl: {path} disappeared during the measurement"


def denying(path: Path) -> str:
    if path.name == "energy_uj":
        raise PermissionError(errno.EACCES, "Permission denied", str(path))
    return path.read_text()


def test_eacces_on_energy_uj_says_how_to_grant_access_and_the_run_goes_on(tmp_path):
    build_intel_powercap(tmp_path)
    meter = RaplMeter(tmp_path, read=denying)
    path = tmp_path / "sys/class/powercap/intel-rapl:0/energy_uj"
    expected = (f"rapl: permission denied reading {path} (grant read access: sudo chmod o+r "
                "/sys/class/powercap/intel-rapl:*/energy_uj, or run as root)")
    assert not meter.available and meter.reason == expected
    meter.start()  # no exception: the benchmark carries on without energy
    r = meter.stop()
    assert r.source == f"unavailable:{expected}" and r.joules is None


def test_eacces_in_the_middle_of_a_window_gives_unavailable(tmp_path):
    build_intel_powercap(tmp_path)
    deny = {"on": False}

    def read(path: Path) -> str:
        return denying(path) if deny["on"] else path.read_text()

    meter = RaplMeter(tmp_path, read=read)
    meter.start()
    deny["on"] = True
    r = meter.stop()
    assert r.source.startswith("unavailable:rapl: permission denied reading ") and PERMISSION_HINT in r.source


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to drop to another user")
def test_real_eacces_when_energy_uj_is_root_only():
    # Since the PLATYPUS fix (kernel 5.10) energy_uj is mode 0400 root: read it as nobody in a forked child.
    root = Path(tempfile.mkdtemp(prefix="tritbench-eacces-"))
    try:
        root.chmod(0o755)
        for f in build_intel_powercap(root, psys=False, mmio=False).values():
            f.chmod(0o400)
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: become nobody, measure, report, leave without running pytest's cleanup
            try:
                os.close(rfd)
                os.setgid(65534)
                os.setuid(65534)
                meter = RaplMeter(root)
                meter.start()
                auto = select_meter("auto", root).stop()
                os.write(wfd, json.dumps([meter.stop().to_dict(), auto.source]).encode())
            finally:
                os._exit(0)
        os.close(wfd)
        with os.fdopen(rfd) as pipe:
            out = pipe.read()
        os.waitpid(pid, 0)
        reading, auto = json.loads(out)
        expected = (f"unavailable:rapl: permission denied reading {root}/sys/class/powercap/intel-rapl:0/energy_uj "
                    f"({PERMISSION_HINT})")
        assert reading["joules"] is None and reading["source"] == expected
        assert auto == expected  # auto finds nothing else, and says why the counters it found are of no use
    finally:
        shutil.rmtree(root)


def test_reads_too_far_apart_to_rule_out_a_missed_wrap_give_unavailable(tmp_path):
    # 20 J at up to 50 W can wrap in 0.4 s; one read that hangs for a second hides up to 2.5 ranges
    build_intel_powercap(tmp_path, range_uj=20_000_000, dram_range_uj=20_000_000)
    calls = {"n": 0}

    def slow_once(path: Path) -> str:
        if path.name == "energy_uj":
            calls["n"] += 1
            if calls["n"] == 6:  # a read in the background thread, after the start
                time.sleep(1.0)
        return path.read_text()

    meter = RaplMeter(tmp_path, max_power_w=50, read=slow_once)
    meter.start()
    time.sleep(1.3)
    r = meter.stop()
    assert r.source.startswith("unavailable:rapl: ") and "wraps may have been missed" in r.source


def test_a_short_window_carries_a_note(tmp_path):
    build_intel_powercap(tmp_path)
    meter = RaplMeter(tmp_path)
    meter.start()
    assert "0.1 s" in meter.stop().note


def test_tritbench_sysfs_root_points_the_meter_at_another_tree(tmp_path, monkeypatch):
    build_intel_powercap(tmp_path)
    monkeypatch.setenv("TRITBENCH_SYSFS_ROOT", str(tmp_path))
    meter = select_meter("rapl")
    assert meter.available and meter.domains == ["package-0", "dram"]


def test_a_missing_powercap_folder_or_root_is_named(tmp_path):
    assert RaplMeter(tmp_path).reason == f"rapl: {tmp_path}/sys/class/powercap not found"
    assert RaplMeter(tmp_path / "nope").reason == f"rapl: sysfs root {tmp_path / 'nope'} does not exist"
    (tmp_path / "sys/class/powercap").mkdir(parents=True)
    assert RaplMeter(tmp_path).reason == f"rapl: no intel-rapl zones in {tmp_path}/sys/class/powercap"


def test_one_meter_measures_window_after_window_and_leaves_no_thread(tmp_path):
    files = build_intel_powercap(tmp_path)
    meter = RaplMeter(tmp_path)
    readings = []
    for uj in (1_000_000, 2_000_000):
        meter.start()
        add_uj(files["intel-rapl:0"], uj)
        readings.append(meter.stop())
    assert [r.joules for r in readings] == pytest.approx([1.0, 2.0])
    assert not [t for t in threading.enumerate() if t.name.startswith("tritbench-energy-")]
    assert meter.stop().source == "unavailable:rapl: stop() without start()"
    meter.start()
    with pytest.raises(RuntimeError):
        meter.start()
    meter.stop()
