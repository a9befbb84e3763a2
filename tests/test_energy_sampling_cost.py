"""What sampling costs inside a window, and that readings say it: the Pi 5 runs `vcgencmd` once per sample
and records those processes with their CPU and wall time; powermetrics starts one streaming process before
the first window and none in any window, and that process goes away with the meter (or its parent)."""

import gc
import json
import os
import signal
import stat
import subprocess
import sys
import time

import psutil
import pytest

from tritbench.measure.energy import HwmonMeter, Pi5Meter, energy_metrics, select_meter

from .energy_tree import FIXTURES, build_acpi_power_meter, build_pi_model, powermetrics_text
from .test_energy_polled import REPO, FakePowermetrics, fake_powermetrics_meter

PI5_TEXT = FIXTURES / "vcgencmd_pmic_read_adc_pi5.txt"


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # dead, its parent not yet told
    except psutil.NoSuchProcess:
        return True


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def burn(seconds: float) -> None:
    c = time.thread_time()
    while time.thread_time() - c < seconds:
        pass


# ---------------------------------------------------------------- Raspberry Pi 5: one process per sample

def fake_vcgencmd(tmp_path, monkeypatch, burn_ms: float):
    """A `vcgencmd` on PATH that burns `burn_ms` of CPU, logs its run, and prints a Pi 5's PMIC readout."""
    folder = tmp_path / "bin"
    folder.mkdir()
    log = tmp_path / "vcgencmd.log"
    script = folder / "vcgencmd"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys, time\n"
        "c = time.process_time()\n"
        f"while time.process_time() - c < {burn_ms / 1e3}:\n"
        "    pass\n"
        f"open({str(log)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        f"sys.stdout.write(open({str(PI5_TEXT)!r}).read())\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return lambda: log.read_text().splitlines() if log.exists() else []


def test_pi5_records_every_vcgencmd_it_runs_with_their_cpu_and_wall_time(tmp_path, monkeypatch):
    build_pi_model(tmp_path)
    runs = fake_vcgencmd(tmp_path, monkeypatch, burn_ms=20)
    meter = Pi5Meter(tmp_path, interval_s=0.1, min_interval_s=0.01)  # the real runner: `vcgencmd` on PATH
    assert meter.available, meter.reason
    assert runs() == ["pmic_read_adc"]  # the probe, when the meter was built
    meter.start()
    time.sleep(0.6)
    r = meter.stop()
    cost = r.sampling_cost
    assert r.available and cost is not None, r.source
    spawned = len(runs()) - 1
    assert cost["processes"] == r.samples == spawned  # every process the window ran, and only those
    assert cost["background"] == spawned - 2 >= 2  # the first and last ran in start() and stop()
    assert cost["cpu_s"] >= 0.02 * spawned  # each burnt 20 ms of its own CPU, seen through RUSAGE_CHILDREN
    assert cost["cpu_s"] <= 2 * cost["wall_s"] and cost["wall_s"] >= 0.02 * spawned
    assert cost["wall_s"] <= r.window_s + 1.0  # the edge runs straddle the window's ends
    assert "`vcgencmd pmic_read_adc` process per sample" in cost["note"]
    assert r.to_dict()["sampling_cost"] == cost
    m = energy_metrics([r, r], tokens=10)
    assert m["sampling_cost"]["processes"] == 2 * spawned
    assert m["sampling_cost"]["cpu_s"] == pytest.approx(2 * cost["cpu_s"])


def test_pi5_with_an_injected_runner_counts_its_calls_and_the_cpu_they_take(tmp_path):
    build_pi_model(tmp_path)
    text = PI5_TEXT.read_text()
    calls = []

    def runner():
        calls.append(1)
        burn(0.005)
        return text

    meter = Pi5Meter(tmp_path, runner=runner, interval_s=0.02, min_interval_s=0.01)
    calls.clear()
    meter.start()
    time.sleep(0.2)
    r = meter.stop()
    cost = r.sampling_cost
    assert cost["processes"] == r.samples == len(calls) and cost["background"] == len(calls) - 2
    assert cost["cpu_s"] >= 0.005 * len(calls)  # the polling thread's own time counts too


def test_a_failed_window_still_says_what_its_sampling_cost(tmp_path):
    build_pi_model(tmp_path)
    text = PI5_TEXT.read_text()
    calls = {"n": 0}

    def runner():
        calls["n"] += 1
        if calls["n"] > 3:  # the probe, start(), one background poll; then the firmware stops answering
            raise OSError(5, "Input/output error", "/dev/vcio")
        return text

    meter = Pi5Meter(tmp_path, runner=runner, interval_s=0.01, min_interval_s=0.005)
    meter.start()
    time.sleep(0.1)
    r = meter.stop()
    assert r.source == "unavailable:pi5: cannot read /dev/vcio: Input/output error" and r.joules is None
    assert r.sampling_cost["processes"] == 3 and r.sampling_cost["background"] == 2  # the failed run too
    assert energy_metrics([r], tokens=1)["sampling_cost"]["processes"] == 3


def test_meters_that_read_files_spawn_nothing_and_record_no_cost(tmp_path):
    build_acpi_power_meter(tmp_path)
    meter = HwmonMeter(tmp_path, interval_s=0.01, min_interval_s=0.005)
    meter.start()
    time.sleep(0.05)
    r = meter.stop()
    assert r.available and r.sampling_cost is None and r.to_dict()["sampling_cost"] is None
    assert energy_metrics([r], tokens=1)["sampling_cost"] is None


# ---------------------------------------------------------------- powermetrics: one streaming process

def children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def test_powermetrics_starts_one_process_for_all_windows_and_none_inside_them(tmp_path):
    fake = FakePowermetrics(tmp_path, burn_ms=10)
    fake.set_watts(5.0)
    before = children()
    meter = fake_powermetrics_meter(fake, interval_s=0.05)
    assert fake.launches == [] and children() == before  # building the meter only probes (-n 1)
    readings, seen = [], set()
    try:
        for _ in range(3):
            meter.start()
            for _ in range(5):
                time.sleep(0.1)
                seen |= children() - before
            readings.append(meter.stop())
        proc = meter._stream.proc
    finally:
        meter.close()
    assert len(fake.launches) == 1 and seen == {proc.pid}  # one process, launched once, for every window
    assert proc.returncode is not None and gone(proc.pid)  # close() terminated it and waited for it
    for r in readings:
        assert r.available and r.joules == pytest.approx(5.0 * r.window_s, rel=1e-6), r.source
        cost = r.sampling_cost
        assert cost["processes"] == 0 and cost["background"] == 0 and cost["wall_s"] == r.window_s
        # it burnt 10 ms per 50 ms sample: its CPU during the window is recorded (psutil counts in ticks)
        assert 0.5 * 0.01 * (r.samples - 2) - 0.02 <= cost["cpu_s"] <= r.window_s + 0.05
        assert cost["cpu_s"] > 0 and "no process started in the window" in cost["note"]
    m = energy_metrics(readings, tokens=3)
    assert m["sampling_cost"]["processes"] == 0
    assert m["sampling_cost"]["cpu_s"] == pytest.approx(sum(r.sampling_cost["cpu_s"] for r in readings))


def test_the_stream_stops_when_the_meter_is_dropped(tmp_path):
    meter = fake_powermetrics_meter(FakePowermetrics(tmp_path))
    meter.start()
    meter.stop()
    proc = meter._stream.proc
    assert proc.poll() is None
    del meter
    gc.collect()
    assert proc.returncode is not None and gone(proc.pid)


def test_the_stream_exits_when_its_parent_is_killed(tmp_path):
    fake = FakePowermetrics(tmp_path)
    code = (
        "import json, sys, time\n"
        "from tritbench.measure.energy import PowermetricsMeter\n"
        f"text, argv = json.loads({json.dumps(json.dumps([powermetrics_text(0.0), fake(50)]))})\n"
        "m = PowermetricsMeter(runner=lambda ms: text, stream=lambda ms: argv, platform='darwin', interval_s=0.05)\n"
        "m.start()\n"
        "print(m._stream.proc.pid, flush=True)\n"
        "time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        pid = int(parent.stdout.readline())
        assert not gone(pid)
    finally:
        parent.send_signal(signal.SIGKILL)  # no atexit, no finalizer: only the broken pipe is left
        parent.wait()
        parent.stdout.close()
    assert wait_gone(pid), "the streaming process outlived its parent"


def test_a_stream_that_dies_voids_its_window_and_is_restarted_at_the_next_one(tmp_path):
    fake = FakePowermetrics(tmp_path, count=3)  # exits with an error after 3 samples
    fake.set_watts(2.0)
    meter = fake_powermetrics_meter(fake, interval_s=0.05)
    try:
        meter.start()
        first = meter._stream.proc
        time.sleep(0.4)
        r = meter.stop()
        assert r.joules is None
        assert r.source.startswith("unavailable:powermetrics: ") and r.source.endswith(
            "exited with 1: powermetrics: lost contact with the SMC")
        assert r.sampling_cost["processes"] == 0  # a voided window still says what sampling cost
        assert first.returncode is not None and len(fake.launches) == 1
        meter.start()
        time.sleep(0.02)
        again = meter.stop()
        assert again.available and again.joules == pytest.approx(2.0 * again.window_s, rel=1e-6)
        assert len(fake.launches) == 2 and meter._stream.proc is not first
    finally:
        meter.close()


def test_select_meter_passes_the_stream_command(tmp_path):
    fake = FakePowermetrics(tmp_path)
    fake.set_watts(1.5)
    text = powermetrics_text(0.0)
    meter = select_meter("powermetrics", tmp_path, runners={"powermetrics": lambda ms: text,
                                                             "powermetrics-stream": fake},
                         platform="darwin", interval_s=0.2)
    try:
        meter.start()
        time.sleep(0.1)
        r = meter.stop()
    finally:
        meter.close()
    assert r.available and r.joules == pytest.approx(1.5 * r.window_s, rel=1e-6)
    assert [argv[3] for argv in fake.launches] == ["200"]
    assert "window shorter than one 0.2 s powermetrics sample" in r.note
