"""The fleet's targets, measured (a benchmark script, not a test): `python -m tests.fleet_targets [--hosts 8]`.

Real sshd instances on loopback (tests/sshd.py), the stub backend `slow` (fixed per-token sleeps). Prints a
markdown table: hosts in parallel vs the slowest host, the second bootstrap, dead-peer detection, and what the
orchestration costs on a device while it measures (its sshd session: CPU, wake-ups, memory)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from tests.conftest import PLUGINS, REPO
from tests.sshd import Lab, ensure_sshd

DEVICE_ENV = {"PYTHONPATH": str(REPO), "TRITBENCH_PLUGINS": PLUGINS}


def _env(tmp: Path, **extra: str) -> dict:
    return {**os.environ, "TRITBENCH_HOME": str(tmp / "home"), "PYTHONPATH": str(REPO), "TRITBENCH_PLUGINS": PLUGINS,
            **extra}


def _run(args: list, tmp: Path, **env: str) -> tuple[float, subprocess.CompletedProcess]:
    t = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "tritbench.cli", *map(str, args)], capture_output=True, text=True,
                          env=_env(tmp, **env))
    return time.monotonic() - t, proc


def _device_seconds(work_dir: Path) -> float:
    """The device's own run time of its newest run: agent start to done marker."""
    run = max(work_dir.glob("runs/*"), key=lambda p: p.stat().st_mtime)
    started = json.loads((run / "agent.json").read_text())["started"]
    return (run / "done").stat().st_mtime - started


def _attached_vs_detached(lab: Lab, tmp: Path) -> tuple[str, str, str]:
    """The same llama.cpp case with the controller attached throughout, then with the controller gone while the
    device measures (killed once the agent started; --resume collects afterwards): `bench compare` judges."""
    h = lab.hosts[1]
    inv = tmp / "h1.toml"
    inv.write_text(lab.inventory([h], env=DEVICE_ENV))
    case = ["-b", "llamacpp", "-m", "tiny", "-f", "tq2_0", "-w", "tg", "-n", "64", "-t", "1", "-r", "12",
            "--warmups", "1", "--energy", "none"]
    _, att = _run(["run", "--hosts", inv, *case, "--out", tmp / "attached"], tmp)
    assert att.returncode == 0, att.stderr
    before = set(h.work_dir.glob("runs/*"))
    ctl = subprocess.Popen([sys.executable, "-m", "tritbench.cli", "run", "--hosts", str(inv), *case, "--out",
                            str(tmp / "detached")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env=_env(tmp))
    while not [d for d in set(h.work_dir.glob("runs/*")) - before if (d / "agent.json").exists()]:
        time.sleep(0.2)
    ctl.kill()
    ctl.wait()
    run = next(iter(set(h.work_dir.glob("runs/*")) - before))
    while not (run / "done").exists():
        time.sleep(1)
    _, det = _run(["run", "--hosts", inv, *case, "--out", tmp / "detached", "--resume"], tmp)
    assert det.returncode == 0, det.stderr
    _, cmp = _run(["compare", tmp / "attached", tmp / "detached", "-o", "md"], tmp)
    row = [c.strip() for c in next(ln for ln in cmp.stdout.splitlines() if ln.startswith("| llamacpp")).split("|")]
    ratio, interval, verdict = row[9], row[10], row[12]
    return ("tokens/s detached / attached (llama.cpp tiny tq2_0 tg64, 1 thread, 12 reps; bench compare)",
            f"{ratio} {interval}", "met (no significant difference)" if verdict != "regression" else "NOT met")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=8)
    args = ap.parse_args()
    why = ensure_sshd()
    if why:
        sys.exit(why)
    tmp = Path(tempfile.mkdtemp(prefix="fleet-targets-"))
    lab = Lab(tmp / "lab")
    rows = []
    try:
        for i in range(args.hosts):
            lab.add(f"h{i}")
        inv = tmp / "lab.toml"
        inv.write_text(lab.inventory(env=DEVICE_ENV))
        case = ["-b", "slow", "-m", "tiny", "-f", "f16", "-w", "tg", "-n", "32", "-r", "3", "--warmups", "0",
                "--energy", "none", "--opt", "step_s=0.1"]
        first, proc = _run(["run", "--hosts", inv, *case, "--out", tmp / "r1"], tmp)
        assert proc.returncode == 0, proc.stderr
        rows.append(("first run on all hosts (bootstrap included)", f"{first:.1f} s", "-"))
        wall, proc = _run(["run", "--hosts", inv, *case, "--out", tmp / "r2"], tmp)
        assert proc.returncode == 0, proc.stderr
        slowest = max(_device_seconds(h.work_dir) for h in lab.hosts)
        rows.append((f"{args.hosts} hosts in parallel: controller wall time vs slowest host",
                     f"{wall:.1f} s vs {slowest:.1f} s (bound {1.1 * slowest + 15:.1f} s)",
                     "met" if wall <= 1.1 * slowest + 15 else "NOT met"))

        from tritbench.fleet.controller import POLL_S, FleetEvents, _prepare
        from tritbench.fleet.inventory import load_inventory

        host = load_inventory(inv)[0]
        async def prepare_again() -> float:
            t = time.monotonic()
            prepared = await _prepare([host], FleetEvents())
            took = time.monotonic() - t
            await prepared[host.name][0].close()
            return took

        again = asyncio.run(prepare_again())
        rows.append(("second bootstrap of the same host (preflight + check)", f"{again:.2f} s",
                     "met" if again < 5 else "NOT met"))

        # Dead peer: freeze the session's sshd mid-run; the controller's "link lost" line says when it noticed.
        one = tmp / "one.toml"
        one.write_text(lab.inventory([lab.hosts[0]], env=DEVICE_ENV))
        long = [*case, "-n", "200", "-r", "2"]
        ctl = subprocess.Popen([sys.executable, "-m", "tritbench.cli", "run", "--hosts", str(one), *long,
                                "--out", str(tmp / "r3")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=_env(tmp))
        while not list(lab.hosts[0].work_dir.glob("runs/*/heartbeat")) or not lab.hosts[0].session_pids():
            time.sleep(0.2)
        time.sleep(5)
        # What a measured case costs the device in orchestration: its sshd session over 30 s of measuring.
        procs = [psutil.Process(p) for p in lab.hosts[0].session_pids()]
        procs += [c for p in procs for c in p.children(recursive=True) if "sshd" in c.name()]
        before = [(p.cpu_times(), p.num_ctx_switches()) for p in procs]
        t0 = time.monotonic()
        time.sleep(30)
        dt = time.monotonic() - t0
        cpu = sum((p.cpu_times().user + p.cpu_times().system) - (b[0].user + b[0].system)
                  for p, b in zip(procs, before, strict=True))
        # Wake-ups are voluntary switches (the process blocked and was woken); involuntary ones are preemption by
        # other load, shown apart.
        wakeups = sum(p.num_ctx_switches().voluntary - b[1].voluntary for p, b in zip(procs, before, strict=True))
        preempted = sum(p.num_ctx_switches().involuntary - b[1].involuntary
                        for p, b in zip(procs, before, strict=True))
        rss = sum(p.memory_info().rss for p in procs)
        poll = os.environ.get("TRITBENCH_FLEET_POLL_S", POLL_S)
        rows.append((f"orchestration on the device while measuring (sshd session, poll {poll} s, keepalive 10 s x 2)",
                     f"{100 * cpu / dt:.3f} % of a core, {wakeups / dt:.2f} wake-ups/s "
                     f"({preempted / dt:.2f}/s preempted), {rss / 2**20:.1f} MiB",
                     "met" if cpu / dt <= 0.001 and wakeups / dt <= 1 and rss <= 16 * 2**20 else "NOT met"))
        frozen = time.monotonic()
        for p in lab.hosts[0].session_pids():
            os.kill(p, signal.SIGSTOP)
        os.set_blocking(ctl.stderr.fileno(), True)
        detected = None
        for line in ctl.stderr:
            if "link lost" in line:
                detected = time.monotonic() - frozen
                break
        for p in lab.hosts[0].session_pids():
            os.kill(p, signal.SIGKILL)
        ctl.wait(timeout=900)
        rows.append(("dead peer detected (session frozen with SIGSTOP)",
                     f"{detected:.1f} s" if detected is not None else "never",
                     "met" if detected is not None and detected <= 30 else "NOT met"))
        rows.append(_attached_vs_detached(lab, tmp))
    finally:
        lab.stop()
    print("| target | measured | |\n|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")


if __name__ == "__main__":
    main()
