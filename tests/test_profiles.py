"""Edge profiles: pinned CPUs, a memory cap and a thread count, applied to real child processes."""

import pytest

from tritbench.errors import ConfigError
from tritbench.plan.profiles import BUILTIN, Profile, parse_profiles, parse_size

from .conftest import PLUGINS, bench_in_process, read_jsonl, run_bench


@pytest.mark.parametrize("text,expected", [("4GiB", 4 << 30), ("512 MiB", 512 << 20), ("1G", 1 << 30),
                                           ("2GB", 2_000_000_000), ("1.5GiB", 3 << 29), (1024, 1024)])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


def test_parse_size_rejects():
    with pytest.raises(ConfigError, match="cannot parse memory size"):
        parse_size("lots")


def test_board_profiles_cap_at_this_machine_and_custom_ones_do_not():
    pi = BUILTIN["pi5-like"].resolve([0, 1])
    assert pi["cpus"] == [0, 1] and pi["threads"] == 2 and pi["memory_bytes"] == 4 << 30
    assert BUILTIN["edge-1c-1g"].resolve([0, 1])["cpus"] == [0]
    with pytest.raises(ConfigError, match="asks for 8 CPUs but this machine has 2"):
        Profile("big", cpus=8).resolve([0, 1])


def test_custom_profiles_from_a_suite():
    p = parse_profiles({"board": {"cpus": 1, "memory": "700MiB", "threads": 1}})["board"]
    assert (p.cpus, p.memory_bytes, p.threads) == (1, 700 << 20, 1)
    for bad, msg in (({"b": {"cores": 1}}, "unknown key 'cores'"), ({"b": {"cpus": 0}}, "must be an integer >= 1"),
                     ({"b": 3}, "must be a table")):
        with pytest.raises(ConfigError, match=msg):
            parse_profiles(bad)


def test_a_profile_is_applied_to_the_child_and_recorded(tb_home, tiny_models, tmp_path):
    out = tmp_path / "out"
    proc = run_bench(["run", "-b", "memhog,llamacpp", "-m", "tiny", "-f", "tq2_0", "-p", "8", "-n", "2", "-r", "1",
                      "--warmups", "0", "--profile", "edge-1c-1g", "--out", str(out)], tb_home,
                     TRITBENCH_PLUGINS=PLUGINS)
    assert proc.returncode == 0, proc.stderr
    recs = read_jsonl(out)
    assert len(recs) == 4
    for r in recs:
        prof = r["settings"]["profile"]
        assert prof["name"] == "edge-1c-1g" and prof["cpus"] == [0] and prof["memory_bytes"] == 1 << 30
        assert any("big.LITTLE" in c for c in prof["cannot_imitate"])  # what the numbers do not stand for
        assert r["settings"]["n_threads"] == 1
        if r["backend"]["name"] == "memhog":  # it reports what it sees from inside the child
            assert r["settings"]["affinity"] == [0] and r["settings"]["rlimit_as"] == 1 << 30


def test_a_model_that_does_not_fit_fails_with_the_reason(tb_home, tiny_models, tmp_path):
    suite = tmp_path / "suite.toml"
    suite.write_text('[profiles.tiny-board]\ncpus = 1\nmemory = "600MiB"\n')
    out = tmp_path / "out"
    proc = run_bench(["run", str(suite), "-b", "memhog", "-m", "tiny", "-f", "f16", "-p", "8", "-n", "0", "-r", "1",
                      "--warmups", "0", "--opt", "load_mb=800", "--profile", "tiny-board", "--out", str(out)],
                     tb_home, TRITBENCH_PLUGINS=PLUGINS)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (rec,) = read_jsonl(out)
    assert rec["status"] == "failed"
    assert "MemoryError: out of memory" in rec["error"] and "memory cap 0.59 GiB" in rec["error"]


@pytest.mark.parametrize("args,message", [(["--profile", "nope"], "unknown profile 'nope'"),
                                          (["--profile", "edge-1c-1g", "-t", "2"], "2 threads exceed the 1 CPUs")])
def test_profile_errors(args, message, tb_home, tmp_path):
    proc = run_bench(["run", "-m", "tiny", *args, "--out", str(tmp_path / "o")], tb_home)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_board_profiles_name_their_board_and_what_they_cannot_imitate(monkeypatch, capsys):
    for name, board, limit in (("pi5-like", "Raspberry Pi 5", "LPDDR4X"), ("orin-nano-like", "Jetson Orin Nano",
                                                                             "LPDDR5")):
        resolved = BUILTIN[name].resolve([0, 1])
        assert board in resolved["imitates"]
        assert any(limit in c for c in resolved["cannot_imitate"]) and any("thermal" in c
                                                                           for c in resolved["cannot_imitate"])
    assert all(p.cannot_imitate for p in BUILTIN.values())
    assert parse_profiles({"b": {"cpus": 1}})["b"].cannot_imitate  # a custom profile is no board either
    code, out, _ = bench_in_process(["list", "profiles"], monkeypatch, capsys)
    assert code == 0 and "Raspberry Pi 5" in out and "Jetson Orin Nano" in out and "thermal" in out
