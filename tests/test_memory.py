"""Memory per phase, measured in real child processes that allocate known amounts."""

from tritbench.measure.memory import merge_peaks, parse_status

from .conftest import PLUGINS, read_jsonl, run_bench

STATUS = """Name:\tpython3
VmPeak:\t  500000 kB
VmHWM:\t  123456 kB
VmRSS:\t  120000 kB
RssAnon:\t   80000 kB
RssFile:\t   40000 kB
RssShmem:\t       0 kB
Threads:\t4
"""


def test_parse_status():
    s = parse_status(STATUS)
    assert s == {"peak_rss_bytes": 123456 * 1024, "rss_bytes": 120000 * 1024, "rss_anon_bytes": 80000 * 1024,
                 "rss_file_bytes": 40000 * 1024, "rss_shmem_bytes": 0}
    assert merge_peaks({"a": 5, "b": 1}, {"a": 3, "b": 2}) == {"a": 5, "b": 2}


def test_phase_peaks_see_what_the_backend_allocates(tb_home, tiny_models, tmp_path):
    out = tmp_path / "out"
    proc = run_bench(["run", "-b", "memhog", "-m", "tiny", "-f", "f16", "-p", "4", "-n", "2", "-r", "1",
                      "--warmups", "0", "--opt", "load_mb=0,300", "--opt", "prefill_mb=200", "--out", str(out)],
                     tb_home, TRITBENCH_PLUGINS=PLUGINS)
    assert proc.returncode == 0, proc.stderr
    recs = {(r["settings"]["requested"]["load_mb"], r["workload"]["kind"]): r["metrics"]["memory"]
            for r in read_jsonl(out)}
    small, big = recs[(0, "pp")], recs[(300, "pp")]
    assert small["per_phase_peaks"] is True
    mib = 1 << 20
    # 300 MiB more anonymous memory after load, and not file-backed
    assert big["load"]["rss_anon_bytes"] - small["load"]["rss_anon_bytes"] >= 290 * mib
    assert abs(big["load"]["rss_file_bytes"] - small["load"]["rss_file_bytes"]) < 50 * mib
    # the prefill phase peaks 200 MiB above what stays resident after load
    for mem in (small, big):
        assert mem["prefill"]["peak_rss_bytes"] - mem["load"]["rss_bytes"] >= 190 * mib
    # decode allocates nothing extra: its own peak stays well below the prefill peak
    tg = recs[(300, "tg")]
    assert tg["decode"]["peak_rss_bytes"] < tg["load"]["rss_bytes"] + 50 * mib


def test_lifetime_peak_is_the_childs_own_not_the_bandwidth_probes(tb_home, tiny_models, tmp_path):
    """The run probes read bandwidth with a buffer >= 256 MiB before any case; a child's ru_maxrss starts
    from its parent's high-water mark, so the probe must not run in the harness process itself."""
    out = tmp_path / "out"
    proc = run_bench(["run", "-b", "memhog", "-m", "tiny", "-f", "f16", "-p", "4", "-n", "0", "-r", "1",
                      "--warmups", "0", "--opt", "load_mb=0", "--opt", "prefill_mb=0", "--out", str(out)],
                     tb_home, TRITBENCH_PLUGINS=PLUGINS)
    assert proc.returncode == 0, proc.stderr
    (rec,) = read_jsonl(out)
    probe = rec["metrics"]["read_bandwidth"]
    assert probe["gbps"] > 0 and "in the harness" not in probe["method"]
    assert rec["metrics"]["peak_rss_bytes"] < probe["buffer_bytes"]
    assert rec["metrics"]["peak_rss_bytes"] < rec["metrics"]["memory"]["load"]["rss_bytes"] + (100 << 20)


def test_a_large_harness_does_not_inflate_a_childs_peak(tb_home, tiny_models, tmp_path):
    """The harness at 400 MiB (as after synthesizing a large model in process) spawns the child: getrusage's
    peak would start at 400 MiB (Linux keeps it across execve); the record's peak is the child's own VmHWM."""
    import os
    import subprocess
    import sys

    from .conftest import REPO

    out = tmp_path / "out"
    script = ("import runpy, sys\nheld = bytearray(400 << 20)\nheld[::4096] = b'x' * len(held[::4096])\n"
              "sys.argv = ['bench', *sys.argv[1:]]\nrunpy.run_module('tritbench.cli', run_name='__main__')\n")
    args = ["run", "-b", "memhog", "-m", "tiny", "-f", "f16", "-p", "4", "-n", "0", "-r", "1", "--warmups", "0",
            "--opt", "load_mb=0", "--opt", "prefill_mb=0", "--energy", "none", "--out", str(out)]
    env = {**os.environ, "TRITBENCH_HOME": str(tb_home), "PYTHONPATH": str(REPO), "TRITBENCH_PLUGINS": PLUGINS}
    proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    (rec,) = read_jsonl(out)
    m = rec["metrics"]
    assert m["peak_rss_bytes"] < 300 << 20, m["peak_rss_bytes"]
    assert m["peak_rss_bytes"] >= m["memory"]["load"]["rss_bytes"]
