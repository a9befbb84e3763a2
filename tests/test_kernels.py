"""Kernel workloads (gemv/gemm) through the harness, with the numpy FP32 backend, and the bandwidth probe."""

import pytest

from tritbench.errors import ConfigError
from tritbench.measure.bandwidth import last_level_cache_bytes, parse_cache_size, read_bandwidth
from tritbench.plan.suite import make_config
from tritbench.plan.workloads import Workload, kernel_workloads, shapes_of

from .conftest import read_jsonl, run_bench


def test_kernel_names_round_trip():
    for w in (Workload("gemv", M=1, K=4096, N=11008), Workload("gemm", M=64, K=11008, N=4096)):
        assert Workload.parse(w.name) == w
        assert Workload.from_dict(w.to_dict()) == w
    assert Workload.parse("gemm M8 3x5").name == "gemm M8 3x5"


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(kind="gemv", M=2, K=4, N=4), "gemv is M = 1"),
        (dict(kind="gemm", M=1, K=4, N=4), "gemm needs M >= 2"),
        (dict(kind="gemv", M=1, K=0, N=4), "K >= 1"),
        (dict(kind="gemv", M=1, K=4, N=4, n_gen=3), "takes M, K and N only"),
        (dict(kind="tg", n_gen=4, K=3), "takes no M, K or N"),
    ],
)
def test_kernel_workload_validation(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Workload(**kwargs)


def test_shape_sets_from_presets():
    # LLaMA-7B's linear layers are the classic kernel shapes
    assert shapes_of(["7b"]) == [(4096, 4096), (4096, 11008), (11008, 4096)]
    assert shapes_of(["3b", "100x3"])[-1] == (100, 3)
    assert (3072, 8704) in shapes_of(["3b"]) and (8704, 3072) in shapes_of(["3b"])
    with pytest.raises(ConfigError, match="cannot parse shape"):
        shapes_of(["4096by4096"])


def test_kernel_workload_product():
    ws = kernel_workloads(["gemv", "gemm"], [(8, 4), (16, 8)], [1, 8, 64])
    assert [w.name for w in ws] == ["gemv 8x4", "gemv 16x8", "gemm M8 8x4", "gemm M8 16x8",
                                    "gemm M64 8x4", "gemm M64 16x8"]
    with pytest.raises(ConfigError, match="gemm needs an M >= 2"):
        kernel_workloads(["gemm"], [(8, 4)], [1])


def test_config_kernel_keys():
    cfg = make_config({}, {"kinds": ["gemv"], "shapes": ["64x32"], "cache": ["hot", "cold"]})
    assert [w.name for w in cfg.workloads()] == ["gemv 64x32"]
    for bad, msg in (({"kinds": ["gemx"]}, "unknown workload kind 'gemx'"), ({"cache": ["warm"]}, "unknown cache"),
                     ({"M": [0]}, "M must be >= 1")):
        with pytest.raises(ConfigError, match=msg):
            make_config({}, bad)


def test_cache_size_parsing_and_sysfs_tree(tmp_path, monkeypatch):
    assert parse_cache_size("32768K\n") == 32 << 20
    assert parse_cache_size("8M") == 8 << 20
    assert parse_cache_size("junk") is None
    base = tmp_path / "sys/devices/system/cpu/cpu0/cache"
    for idx, (level, kind, size) in enumerate([(1, "Data", "48K"), (1, "Instruction", "32K"),
                                               (2, "Unified", "2048K"), (3, "Unified", "36864K")]):
        d = base / f"index{idx}"
        d.mkdir(parents=True)
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")
    assert last_level_cache_bytes(tmp_path) == 36864 << 10
    monkeypatch.setenv("TRITBENCH_SYSFS_ROOT", str(tmp_path))
    assert last_level_cache_bytes() == 36864 << 10
    assert last_level_cache_bytes(tmp_path / "nothing") is None


def test_bandwidth_probe_reports_a_reading():
    bw = read_bandwidth(n_threads=2, buffer_bytes=16 << 20, passes=2)
    assert bw["gbps"] > 0 and bw["n_threads"] == 2 and bw["buffer_bytes"] == 16 << 20


def test_numpy_kernels_through_bench_run(tb_home, tmp_path):
    out = tmp_path / "out"
    proc = run_bench(["run", "-b", "numpy", "-f", "fp32", "-w", "gemv,gemm", "-s", "256x128", "-M", "1,4",
                      "--cache", "cold,hot", "-t", "1", "-r", "2", "--warmups", "1", "--out", str(out)], tb_home)
    assert proc.returncode == 0, proc.stderr
    recs = read_jsonl(out)
    assert sorted((r["workload"]["name"], r["settings"]["cache"]) for r in recs) == sorted(
        (n, c) for n in ("gemv 256x128", "gemm M4 256x128") for c in ("cold", "hot"))
    for r in recs:
        m = r["metrics"]
        assert r["status"] == "ok"
        assert (r["workload"]["M"], r["workload"]["K"], r["workload"]["N"]) in ((1, 256, 128), (4, 256, 128))
        assert r["model"]["file_bytes"] == 256 * 128 * 4 and r["model"]["bits_per_weight"] == 32.0
        assert len(m["latency_ms"]["samples"]) == 2 and m["latency_ms"]["median"] > 0
        assert m["cpu_ms"]["median"] > 0 and m["weight_gbps"]["median"] > 0
        assert m["ternary_ops_per_s"]["samples"] == pytest.approx(
            [r["workload"]["M"] * 256 * 128 / (x / 1e3) for x in m["latency_ms"]["samples"]], rel=1e-9)
        assert m["read_bandwidth"]["gbps"] > 0 and m["bandwidth_fraction"] > 0
        # cold: enough copies to stream more than the last-level cache; hot: one copy
        copies = r["settings"]["weight_copies"]
        assert copies > 1 if r["settings"]["cache"] == "cold" else copies == 1
    assert "gemv 256x128" in proc.stdout and "% read bw" in proc.stdout


def test_backend_without_the_requested_tests_is_an_error(tb_home):
    proc = run_bench(["run", "-b", "numpy", "-f", "fp32"], tb_home)  # default tests are pp/tg
    assert proc.returncode == 2 and "no selected backend runs pp workloads" in proc.stderr
