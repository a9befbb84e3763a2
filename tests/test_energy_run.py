"""Energy through a real `bench run`: a fake powercap tree whose counters a helper process advances
(and wraps) while the cases run; the records must carry what was injected, labelled as measured."""

from .conftest import PLUGINS, read_jsonl, run_bench
from .energy_tree import advancing_counters, build_intel_powercap

RANGE_UJ = 20_000_000  # a 20 J counter: at 30 W it wraps every 0.67 s, several times per repetition


def test_rapl_counters_that_wrap_during_a_run(tb_home, tiny_models, tmp_path):
    root = tmp_path / "sysfs"
    files = build_intel_powercap(root, subzones=("dram",), psys=False, mmio=False, range_uj=RANGE_UJ,
                                 dram_range_uj=RANGE_UJ)
    out = tmp_path / "out"
    with advancing_counters({files["intel-rapl:0"]: 25.0, files["intel-rapl:0:0"]: 5.0}):
        proc = run_bench(["run", "-b", "slow", "-m", "tiny", "-f", "f16", "-p", "0", "-n", "40", "-r", "2",
                          "--warmups", "0", "--opt", "step_s=0.05", "--energy", "rapl", "--idle-s", "0.5",
                          "--out", str(out)], tb_home, TRITBENCH_PLUGINS=PLUGINS, TRITBENCH_SYSFS_ROOT=str(root))
    assert proc.returncode == 0, proc.stderr
    (rec,) = read_jsonl(out)
    e = rec["metrics"]["energy"]
    assert e["source"] == "measured:rapl/package-0+dram"
    assert e["wraps"] >= 4  # two windows of about 2 s each
    assert abs(e["joules"] / e["window_s"] - 30.0) < 1.5
    assert e["joules_per_token"] == e["joules"] / 80
    # the idle baseline ran while the counters advanced too: net energy is close to zero, not None
    assert abs(e["idle_watts"] - 30.0) < 1.5 and abs(e["net_joules"]) < 0.1 * e["joules"]


def test_no_meter_gives_a_reason_not_a_zero(tb_home, tiny_models, tmp_path):
    out = tmp_path / "out"
    proc = run_bench(["run", "-m", "tiny", "-f", "f16", "-p", "8", "-n", "0", "-r", "1", "--warmups", "0",
                      "--energy", "rapl", "--out", str(out)], tb_home, TRITBENCH_SYSFS_ROOT=str(tmp_path / "empty"))
    assert proc.returncode == 0, proc.stderr
    (rec,) = read_jsonl(out)
    e = rec["metrics"]["energy"]
    assert e["source"].startswith("unavailable:") and e["joules"] is None
    assert "energy:" in proc.stderr
    bad = run_bench(["run", "-m", "tiny", "--energy", "watts"], tb_home)
    assert bad.returncode == 2 and "unknown energy meter 'watts'" in bad.stderr
