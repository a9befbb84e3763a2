"""Nothing is left running or lying around: a measuring child dies with its runner, SIGTERM ends a run as
Ctrl-C does, and job folders of killed runners are removed. Real processes, as a user's shell has them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tritbench.execute.runner import JOB_DIR_PREFIX, remove_orphaned_job_folders

from .conftest import PLUGINS, REPO, read_jsonl


def slow(n_gen: int) -> list[str]:
    """A run of two variants, each child decoding n_gen tokens at 0.1 s a token, two repetitions."""
    return ["run", "-b", "slow", "-m", "tiny", "-f", "f16,tq2_0", "-p", "0", "-n", str(n_gen), "-r", "2",
            "--rounds", "1", "--warmups", "0", "--opt", "step_s=0.1", "--idle-s", "0", "--energy", "none"]


def start_bench(args: list[str], tb_home: Path, tmp: Path) -> subprocess.Popen:
    env = {**os.environ, "TRITBENCH_HOME": str(tb_home), "PYTHONPATH": str(REPO), "TRITBENCH_PLUGINS": PLUGINS,
           "TMPDIR": str(tmp)}
    tmp.mkdir(exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "tritbench.cli", *args], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, timeout: float = 120.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return None


def measuring_children(pid: int) -> list[psutil.Process]:
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [k for k in kids if "tritbench.execute.child" in " ".join(_cmdline(k))]


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return []


def gone(p: psutil.Process) -> bool:
    try:
        return p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_killed_runner_takes_its_child_along_and_its_job_folder_is_removed_later(tb_home, tiny_models, tmp_path):
    tmp = tmp_path / "tmp"
    proc = start_bench(slow(300) + ["--out", str(tmp_path / "out")], tb_home, tmp)  # a child would live 60 s
    children = wait_for(lambda: measuring_children(proc.pid))
    assert children, proc.stderr.read() if proc.poll() is not None else "no measuring child started"
    proc.kill()  # SIGKILL: the runner can clean up nothing
    proc.communicate(timeout=30)
    assert wait_for(lambda: all(gone(c) for c in children), timeout=10), "the child outlived its runner"
    leftovers = list(tmp.glob(f"{JOB_DIR_PREFIX}{proc.pid}-*"))
    assert leftovers  # what SIGKILL leaves behind ...
    assert remove_orphaned_job_folders(tmp) == leftovers  # ... the next run removes
    assert not list(tmp.glob(f"{JOB_DIR_PREFIX}*"))


def test_sigterm_ends_the_run_as_ctrl_c_does(tb_home, tiny_models, tmp_path):
    tmp, out = tmp_path / "tmp", tmp_path / "out"
    proc = start_bench(slow(40) + ["--out", str(out)], tb_home, tmp)
    assert wait_for(lambda: any(r["status"] == "ok" for r in read_jsonl(out)) if out.exists() else None)
    children = measuring_children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "--resume" in stderr
    records = read_jsonl(out)
    assert [r["status"] for r in records] == ["ok", "failed"]
    assert records[1]["error"].startswith("interrupted after 0 of 2")
    assert all(gone(c) for c in children)
    assert not list(tmp.glob(f"{JOB_DIR_PREFIX}*"))  # job folders removed on the way out


def test_only_folders_of_dead_runners_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    mine = tmp_path / f"{JOB_DIR_PREFIX}{os.getpid()}-abc"
    theirs = tmp_path / f"{JOB_DIR_PREFIX}{dead.pid}-def"
    other = tmp_path / "tritbench-home0"
    for folder in (mine, theirs, other):
        folder.mkdir()
    assert remove_orphaned_job_folders(tmp_path) == [theirs]
    assert mine.exists() and other.exists() and not theirs.exists()


def test_resume_after_sigkill_continues_from_the_journal(tb_home, tiny_models, tmp_path):
    tmp, out = tmp_path / "tmp", tmp_path / "out"
    args = ["run", "-b", "slow", "-m", "tiny", "-f", "f16,tq2_0", "-p", "0", "-n", "8", "-r", "3", "--warmups", "0",
            "--opt", "step_s=0.05", "--idle-s", "0", "--energy", "none", "--out", str(out)]
    proc = start_bench(args, tb_home, tmp)
    journal = lambda: next(out.glob("*.journal"), None) if out.exists() else None  # noqa: E731
    assert wait_for(lambda: journal() and len(journal().read_bytes().splitlines()) >= 2)
    proc.kill()  # after two children: round 0 of both variants is in the journal, no record is written
    proc.communicate(timeout=30)
    resumed = subprocess.run([sys.executable, "-m", "tritbench.cli", *args, "--resume"], capture_output=True,
                             text=True, timeout=300, cwd=REPO,
                             env={**os.environ, "TRITBENCH_HOME": str(tb_home), "PYTHONPATH": str(REPO),
                                  "TRITBENCH_PLUGINS": PLUGINS, "TMPDIR": str(tmp)})
    assert resumed.returncode == 0, resumed.stderr
    assert "taken from the journal of the interrupted run" in resumed.stderr
    records = read_jsonl(out)
    assert [r["status"] for r in records] == ["ok", "ok"]
    assert all(len(r["metrics"]["tokens_per_s"]["samples"]) == 3 for r in records)
    assert all(r["state"]["rounds"][0]["round"] == 0 for r in records)
