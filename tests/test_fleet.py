"""`bench run --hosts` and `bench hosts check` against real OpenSSH servers on loopback (tests/sshd.py): every
host has its own port, host key, work dir and machine id. The stub backend `slow` (tests/plugins.py) has fixed
per-token sleeps, so cases take known times; one test runs the real llama.cpp backend.

Faults, each checked for "every case the device finished is in the results exactly once" and the exit code:
a frozen session (SIGSTOP of its sshd), a killed session, a killed controller (then --resume), a killed agent,
a full spool disk (a small tmpfs), a hung case."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import PLUGINS, REPO, skip_or_fail
from tests.sshd import Lab, ensure_sshd
from tritbench.results.records import read_records

SLOW = ["-b", "slow", "-m", "tiny", "-f", "f16,tq2_0", "-w", "pp,tg", "-p", "8", "-n", "4", "-r", "2",
        "--warmups", "0", "--energy", "none"]
CASES = 4  # 2 formats x (pp8, tg4)
DEVICE_ENV = {"PYTHONPATH": str(REPO), "TRITBENCH_PLUGINS": PLUGINS, "TRITBENCH_FLEET_HEARTBEAT_S": "1"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    why = ensure_sshd()
    if why:
        skip_or_fail(why)
    lab = Lab(tmp_path_factory.mktemp("lab"))
    try:
        for i in range(4):
            lab.add(f"h{i}")
        yield lab
    finally:
        lab.stop()


def controller_env(tmp: Path) -> dict:
    return {**os.environ, "TRITBENCH_HOME": str(tmp / "home"), "PYTHONPATH": str(REPO), "TRITBENCH_PLUGINS": PLUGINS,
            "TRITBENCH_FLEET_POLL_S": "0.5", "TRITBENCH_FLEET_STALE_S": "6", "TRITBENCH_FLEET_LOST_AFTER_S": "60"}


def bench(args: list, tmp: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tritbench.cli", *map(str, args)], capture_output=True, text=True,
                          env=controller_env(tmp), timeout=timeout)


def inventory(lab: Lab, tmp: Path, hosts=None, **kw) -> Path:
    path = tmp / "lab.toml"
    path.write_text(lab.inventory(hosts, env={**DEVICE_ENV, **kw.pop("env", {})}, **kw))
    return path


def results(out: Path) -> dict[str, list[dict]]:
    """host name -> every line the device wrote (all lines, to count duplicates; not the controller's .link and
    .lost files)."""
    by_host: dict[str, list[dict]] = {}
    for f in sorted(out.glob("*-run-*.jsonl")):
        if f.name.endswith((".link.jsonl", ".lost.jsonl")):
            continue
        host = f.name.split("-run-")[0]
        by_host.setdefault(host, []).extend(json.loads(line) for line in f.read_text().splitlines() if line)
    return by_host


def exactly_once(lines: list[dict]) -> None:
    counts = Counter((r["run_id"], r["case_id"]) for r in lines)
    assert max(counts.values()) == 1, counts


def test_check_run_and_second_bootstrap_is_a_no_op(lab, tmp_path):
    inv = inventory(lab, tmp_path)
    check = bench(["hosts", "check", inv, "--json"], tmp_path)
    assert check.returncode == 0, check.stderr
    rows = json.loads(check.stdout)
    assert [r["name"] for r in rows] == ["h0", "h1", "h2", "h3"]
    assert all(r["ok"] and r["probe"]["arch"] and r["probe"]["page_size"] > 0 for r in rows)

    out = tmp_path / "results"
    proc = bench(["run", "--hosts", inv, *SLOW, "--out", out], tmp_path)
    assert proc.returncode == 0, proc.stderr
    got = results(out)
    assert sorted(got) == ["h0", "h1", "h2", "h3"]
    ids = set()
    for name, lines in got.items():
        assert len(lines) == CASES and all(r["status"] == "ok" for r in lines)
        exactly_once(lines)
        assert {r["machine"]["host"]["name"] for r in lines} == {name}
        assert lines[0]["machine"]["host"]["labels"]["board"] == f"loopback-{name}"
        ids.add(lines[0]["machine"]["id"])
    assert len(ids) == 4  # each host its own machine id, though they are one machine
    # bench report puts the hosts side by side from the one results folder
    report = bench(["report", out, "--format", "md"], tmp_path)
    assert report.returncode == 0, report.stderr
    assert all(f"h{i}: " in report.stdout for i in range(4)), report.stdout

    again = bench(["hosts", "check", inv, "--json"], tmp_path)
    assert all(r["bootstrap"].startswith("installed") for r in json.loads(again.stdout)), again.stdout


@pytest.mark.parametrize("case", ["unknown host key", "wrong key", "no python", "unreachable", "bad inventory"])
def test_bad_hosts_are_one_line_and_exit_2_before_anything_runs(lab, tmp_path, case):
    h = lab.hosts[0]
    if case == "unknown host key":
        inv = tmp_path / "lab.toml"
        inv.write_text(lab.inventory([h], env=DEVICE_ENV).replace(str(lab.known_hosts), str(tmp_path / "empty")))
        (tmp_path / "empty").touch()
        fragment = "host key is not in known_hosts"
    elif case == "wrong key":
        other = tmp_path / "other"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
        inv = tmp_path / "lab.toml"
        inv.write_text(lab.inventory([h], env=DEVICE_ENV).replace(str(lab.key), str(other)))
        fragment = "authentication failed"
    elif case == "no python":
        inv = inventory(lab, tmp_path, [h], python="/nonexistent/python3")
        fragment = "no Python at `/nonexistent/python3`"
    elif case == "unreachable":
        inv = tmp_path / "lab.toml"
        inv.write_text(lab.inventory([h], env=DEVICE_ENV).replace(f"port = {h.port}", "port = 1"))
        fragment = "connection refused"
    else:
        inv = tmp_path / "lab.toml"
        inv.write_text('[[hosts]]\nname = "x; touch /tmp/pwned"\nhost = "127.0.0.1"\n')
        fragment = "may hold only letters"
    out = tmp_path / "results"
    proc = bench(["run", "--hosts", inv, *SLOW, "--out", out], tmp_path)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("bench: error:") and fragment in lines[0], proc.stderr
    if case != "bad inventory":
        assert "host h0 (" in lines[0]
    assert not list(out.glob("*-run-*.jsonl"))
    check = bench(["hosts", "check", inv], tmp_path)
    assert check.returncode == 2 and fragment in check.stderr and "Traceback" not in check.stderr


def test_no_shell_injection_through_paths_labels_and_env(lab, tmp_path):
    h = lab.hosts[1]
    canary = tmp_path / "pwned"
    evil = f"$(touch {canary}); touch {canary}; `touch {canary}`"
    inv = tmp_path / "lab.toml"
    text = lab.inventory([h], env={**DEVICE_ENV, "EVIL": evil})
    text = text.replace('board = "loopback-h1"', f'board = "{evil}"')
    inv.write_text(text)
    proc = bench(["run", "--hosts", inv, *SLOW, "--out", tmp_path / "results"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not canary.exists()
    lines = results(tmp_path / "results")["h1"]
    assert lines[0]["machine"]["host"]["labels"]["board"] == evil  # carried as text, never run


def run_dirs(lab_host) -> set[Path]:
    return set(lab_host.work_dir.glob("runs/*"))


def journal(lab_host, old: set[Path] = frozenset()) -> list[dict]:
    """The journal of the device's runs but `old` ones: one entry per finished child (variant, round)."""
    out = []
    for f in sorted(f for d in run_dirs(lab_host) - old for f in d.glob("spool/run-*.journal")):
        out += [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
    return out


def _wait_for_children(lab_host, n: int, proc: subprocess.Popen, old: set[Path], limit: float = 300) -> None:
    """Until the device has finished `n` children of its run (records land when a case's last round ends, so
    the journal is what shows a run part-way through)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if len(journal(lab_host, old)) >= n:
            return
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.2)
    raise AssertionError(f"{lab_host.name}: fewer than {n} children finished after {limit} s")


def _popen(args: list, tmp: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tritbench.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=controller_env(tmp))


# Cases long enough (0.3 s a token) that a fault lands while the device is measuring; one round, so that the
# first format's records arrive while the second format is still measured.
LONG = [*SLOW, "--opt", "step_s=0.3", "--rounds", "1"]


def _start_long_run(lab, h, tmp_path, *more: str, env: dict | None = None):
    """A long run on one host, returned once the device has finished its first child: (inventory, results
    folder, the host's run folders from before, the controller process)."""
    inv = inventory(lab, tmp_path, [h], env=env or {})
    out = tmp_path / "results"
    old = run_dirs(h)
    proc = _popen(["run", "--hosts", inv, *LONG, *more, "--out", out], tmp_path)
    _wait_for_children(h, 1, proc, old)
    return inv, out, old, proc


@pytest.mark.parametrize("fault", ["frozen session", "killed session"])
def test_a_dropped_link_loses_nothing_and_copies_nothing_twice(lab, tmp_path, fault):
    h = lab.hosts[2]
    inv, out, old, proc = _start_long_run(lab, h, tmp_path)
    sessions = h.session_pids()
    assert sessions
    for pid in sessions:
        os.kill(pid, signal.SIGSTOP if fault == "frozen session" else signal.SIGKILL)
    try:
        _, err = proc.communicate(timeout=600)
    finally:
        for pid in sessions:
            try:
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert proc.returncode == 0, err
    assert "link lost" in err and "reconnected" in err
    lines = results(out)["h2"]
    exactly_once(lines)
    assert len(lines) == CASES and all(r["status"] == "ok" for r in lines)


def test_a_killed_controller_resumes_and_a_killed_agent_reruns_only_missing_cases(lab, tmp_path):
    h = lab.hosts[3]
    inv, out, old, proc = _start_long_run(lab, h, tmp_path)
    proc.kill()
    proc.wait()
    # The agent runs on without its controller; kill it too, and its measuring child, part-way through the run.
    state = json.loads(next(out.glob("fleet-*.json")).read_text())
    run_dir = Path(state["hosts"][0]["run_dir"])
    pid = json.loads((run_dir / "agent.json").read_text())["pid"]
    os.killpg(os.getpgid(pid), signal.SIGKILL)
    done_before = {(e["variant"], e["round"]) for e in journal(h, old) if e.get("error") is None}
    assert done_before
    resumed = bench(["run", "--hosts", inv, *LONG, "--out", out, "--resume"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "restarted" in resumed.stderr
    lines = results(out)["h3"]
    exactly_once(lines)
    assert len(lines) == CASES and all(r["status"] == "ok" for r in lines)
    assert len({r["run_id"] for r in lines}) == 1  # the device resumed its run, it did not start another
    # every child that had finished before the kill ran exactly once: the resume ran only the missing ones
    children = Counter((e["variant"], e["round"]) for e in journal(h, old) if e.get("error") is None)
    assert all(children[k] == 1 for k in done_before), children
    assert len(children) == 2  # two formats, one round each


def test_a_hung_case_times_out_on_the_device_and_the_rest_run(lab, tmp_path):
    h = lab.hosts[0]
    inv = inventory(lab, tmp_path, [h])
    out = tmp_path / "results"
    proc = bench(["run", "--hosts", inv, "-b", "slow", "-m", "tiny", "-f", "f16", "-w", "pp,tg", "-p", "4",
                  "-n", "400", "-r", "1", "--warmups", "0", "--energy", "none", "--opt", "step_s=0.05",
                  "--timeout", "8", "--out", out], tmp_path)
    assert proc.returncode == 1, proc.stderr
    lines = results(out)["h0"]
    exactly_once(lines)
    status = {r["workload"]["name"]: r["status"] for r in lines}
    assert status["pp4"] == "ok" and status["tg400"] != "ok", status
    assert "timed out" in json.dumps([r for r in lines if r["status"] != "ok"])


def test_a_full_spool_disk_fails_the_host_and_keeps_what_was_finished(lab, tmp_path):
    h = lab.hosts[1]
    inv = inventory(lab, tmp_path, [h])
    runs = h.work_dir / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(runs)], check=True)
    try:
        out = tmp_path / "results"
        proc = bench(["run", "--hosts", inv, *SLOW, "-n", "4,8,16,32", "--out", out], tmp_path)
    finally:
        subprocess.run(["umount", "-l", str(runs)], check=False)
    assert proc.returncode == 1, proc.stderr
    assert "h1: failed" in proc.stderr or "h1: done, exit 2" in proc.stderr, proc.stderr
    lines = results(out).get("h1", [])
    exactly_once(lines)
    assert len(lines) < 2 * 5  # not all cases could be written
    # the rest are named: a failed record each, from the plan the agent wrote (compressed) before measuring
    current = read_records([out])
    assert len(current) == 2 * 5 and {r["case_id"] for r in lines} <= {r["case_id"] for r in current}
    assert all(r["error"].startswith("not measured: ") for r in current if r["case_id"] not in
               {x["case_id"] for x in lines})


ARM_TOOLS = ("aarch64-linux-gnu-gcc", "qemu-aarch64-static", "debootstrap")


@pytest.fixture(scope="module")
def arm_python(tmp_path_factory):
    """An aarch64 "device" Python: the sysroot's python3 under qemu-user (.ci/arm-sysroot.sh), as a script."""
    if not all(shutil.which(t) for t in ARM_TOOLS) and not (os.geteuid() == 0 and shutil.which("apt-get")):
        skip_or_fail(f"the aarch64 host needs {', '.join(ARM_TOOLS)} (or root to install them)")
    home = Path(os.environ.get("TRITBENCH_ARM_SYSROOT", Path.home() / ".cache/tritbench/arm64"))
    subprocess.run([str(REPO / ".ci/arm-sysroot.sh"), str(home)], check=True, capture_output=True, timeout=900)
    sysroot = home / "sysroot"
    python = next(p for p in sorted((sysroot / "usr/bin").glob("python3.*")) if p.name[8:].isdigit())
    script = tmp_path_factory.mktemp("arm-python") / "python3"
    script.write_text(f'#!/bin/sh\nexec qemu-aarch64-static -L "{sysroot}" "{python}" "$@"\n')
    script.chmod(0o755)
    return script, f"qemu-aarch64-static -cpu cortex-a76 -L {sysroot}"


def test_an_x86_and_an_aarch64_host_in_one_run_and_one_report(lab, arm_python, tmp_path):
    """The aarch64 host is the emulated Python behind h0's sshd (its own name and work dir): one run gives an
    x86 + aarch64 report, the aarch64 timings labelled as emulated."""
    script, emulator = arm_python
    h0 = lab.hosts[0]
    x86 = lab.inventory([h0], env=DEVICE_ENV)
    arm = lab.inventory([h0], python=str(script), env={**DEVICE_ENV, "TRITBENCH_EMULATOR": emulator})
    arm = arm.replace('name = "h0"', 'name = "arm"').replace(str(h0.work_dir), str(h0.work_dir) + "-arm")
    inv = tmp_path / "lab.toml"
    inv.write_text(x86 + "\n" + arm.replace('arch = "x86_64"', 'arch = "aarch64"'))
    out = tmp_path / "results"
    proc = bench(["run", "--hosts", inv, "-b", "onnx", "-f", "tern2", "-w", "gemv", "-s", "256x512", "-t", "1",
                  "-r", "2", "--warmups", "0", "--energy", "none", "--out", out], tmp_path, timeout=1800)
    assert proc.returncode == 0, proc.stderr
    got = results(out)
    assert got["h0"][0]["machine"]["arch"] == "x86_64" and "emulation" not in got["h0"][0]["machine"]
    rec = got["arm"][0]
    assert rec["status"] == "ok" and rec["machine"]["arch"] == "aarch64"
    assert rec["machine"]["emulation"]["cpu"] == "cortex-a76"
    report = bench(["report", out, "--format", "md"], tmp_path)
    assert report.returncode == 0 and "h0: " in report.stdout and "arm: " in report.stdout
    assert "EMULATED" in report.stdout


def test_the_real_llamacpp_backend_through_one_host(lab, tmp_path):
    inv = inventory(lab, tmp_path, [lab.hosts[1]])
    out = tmp_path / "results"
    proc = bench(["run", "--hosts", inv, "-b", "llamacpp", "-m", "tiny", "-f", "tq2_0", "-w", "tg", "-n", "8",
                  "-t", "1", "-r", "2", "--warmups", "0", "--energy", "none", "--out", out], tmp_path)
    assert proc.returncode == 0, proc.stderr
    (rec,) = results(out)["h1"]
    assert rec["status"] == "ok" and rec["backend"]["name"] == "llamacpp"
    assert rec["metrics"]["tokens_per_s"]["median"] > 0


def test_a_dropped_link_marks_energy_cases_invalid(lab, tmp_path):
    """Counters from a fake powercap tree that a helper advances; the session is killed mid-run: the cases whose
    records arrive after the reconnection measured energy across it, and are superseded by failed copies."""
    from tests.energy_tree import advancing_counters, build_intel_powercap

    h = lab.hosts[2]
    root = tmp_path / "sysfs"
    files = build_intel_powercap(root, subzones=(), psys=False, mmio=False, range_uj=2**40, dram_range_uj=2**40)
    with advancing_counters({files["intel-rapl:0"]: 20.0}):
        _, out, _, proc = _start_long_run(lab, h, tmp_path, "--energy", "rapl",
                                          env={"TRITBENCH_SYSFS_ROOT": str(root)})
        for pid in h.session_pids():
            os.kill(pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, err  # invalid cases are failed cases
    assert "marked invalid" in err
    lines = results(out)["h2"]
    exactly_once(lines)
    assert all(r["metrics"]["energy"]["source"].startswith("measured") for r in lines)
    current = read_records([out])
    invalid = [r for r in current if r["status"] == "failed"]
    assert invalid and all(r["error"].startswith("invalid: the SSH link dropped") for r in invalid)
    assert len(current) == CASES  # one current record per case: the invalid copy replaced the measured one


def test_a_host_lost_mid_run_fails_alone_and_the_others_go_on(lab, tmp_path):
    """h1's sshd (listener and sessions) is stopped for good once its device is measuring: after the give-up time
    it is reported lost with the reason; h0 finishes; exit 1; what h0 measured is all there."""
    h0, h1 = lab.hosts[0], lab.hosts[1]
    inv = inventory(lab, tmp_path, [h0, h1])
    out = tmp_path / "results"
    old = run_dirs(h1)
    env = controller_env(tmp_path) | {"TRITBENCH_FLEET_LOST_AFTER_S": "15"}
    proc = subprocess.Popen([sys.executable, "-m", "tritbench.cli", "run", "--hosts", str(inv), *LONG, "--out",
                             str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        _wait_for_children(h1, 1, proc, old)
        h1.stop()
        _, err = proc.communicate(timeout=600)
    finally:
        lab.restart(h1)
    assert proc.returncode == 1, err
    assert "h1: lost" in err and "unreachable for 15 s" in err and "h0: done, exit 0" in err
    lines = results(out)["h0"]
    exactly_once(lines)
    assert len(lines) == CASES and all(r["status"] == "ok" for r in lines)
    # every case of h1 has one current record: what it finished, and a failed one naming the loss for the rest
    h1_current = [r for r in read_records([out]) if r["machine"]["host"]["name"] == "h1"]
    assert len(h1_current) == CASES and len({r["case_id"] for r in h1_current}) == CASES
    never = [r for r in h1_current if r["status"] == "failed"]
    assert never and all(r["error"].startswith("not measured: host h1 was lost (unreachable for 15 s") for r in never)
    assert "never measured" in err
