"""`bench run --hosts lab.toml`: one suite on every host of an inventory, in parallel, over SSH.

Per host: preflight (connect with a pinned key, probe the device), bootstrap (push and install the wheelhouse
unless the device already has that digest), launch the agent detached (`setsid nohup`, tritbench.fleet.agent), then
supervise quietly: every `poll_s` the controller asks the size of the device's spool and reads only bytes that
a finished case appended, into `<out>/<host>-run-<id>.jsonl`. That local file holds whole lines only and is the
byte offset into the spool, so a record can neither be lost nor copied twice, however the link or the controller
dies. A dropped link is reconnected with backoff; the run on the device never notices. A host that stays
unreachable for `lost_after_s` is given up (its finished cases are kept; the run exits 1).

`<out>/fleet-<id>.json` holds the run's state: `bench run --hosts lab.toml --resume` re-attaches to it, reads
what the devices finished meanwhile, and restarts an agent that died, which then runs exactly the missing cases.

Every host is checked (and bootstrapped) before any runs: an unreachable host, a refused key, a device without
python3 or with an unwritable work dir is one line naming the host, exit 2, nothing started."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from tritbench.errors import BenchError
from tritbench.fleet import agent, probe
from tritbench.fleet.bundle import Layer, Target, Wheelhouse, wheelhouse
from tritbench.fleet.inventory import Host
from tritbench.fleet.remote import Device, HostError, quote
from tritbench.plan.suite import RunConfig
from tritbench.results.journal import Journal
from tritbench.results.records import new_run_id, read_records

# While the device measures, a poll is one SFTP stat of the spool; the heartbeat and the done marker are read
# every CHECK_EVERY polls. Each request wakes the device's sshd and its sftp child three to four times (measured
# by tests/fleet_targets: poll 5 s with a check after every record was 1.1-1.3 wake-ups/s), so requests are what
# to save. Only while the run starts (no plan copied yet) or ends (every planned case has a record) does the
# controller look every SOON_S, so neither end of a run waits for a poll.
POLL_S = 10.0
CHECK_EVERY = 3
SOON_S = 1.0
STARTING_S = 30.0  # an agent plans within seconds unless its models are made on the device
STALE_S = 4 * agent.HEARTBEAT_S  # an agent whose heartbeat has not changed for this long is dead
LOST_AFTER_S = 600.0
MAX_RELAUNCHES = 2
STATE_PREFIX = "fleet-"


def _env_float(name: str, default: float) -> float:
    """Timings a test (or a lab with slow links) may change; not user-facing settings."""
    try:
        return float(os.environ[name])
    except (KeyError, ValueError):
        return default


@dataclass
class HostRun:
    """One host's part of a fleet run, as kept in the state file."""

    name: str
    work_dir: str = ""
    run_dir: str = ""
    site: str = ""
    python: str = ""
    status: str = "pending"  # pending, running, done, lost, failed
    exit_code: int | None = None
    message: str = ""
    relaunches: int = 0
    probe: dict = field(default_factory=dict)


@dataclass
class FleetOutcome:
    state_path: Path
    hosts: list[HostRun]
    files: list[Path]  # the local results files, one per host and device run

    @property
    def failed(self) -> bool:
        return any(h.status != "done" or h.exit_code != 0 for h in self.hosts)


class FleetEvents:
    """What the controller reports as it goes; the CLI prints it."""

    def host(self, name: str, message: str) -> None:
        """A step of one host (connected, installed, started, a record arrived, done)."""

    def warning(self, name: str, message: str) -> None:
        """Something about one host that does not stop the run (a dropped link, a relaunched agent)."""


# ---- preflight and bootstrap -------------------------------------------------------------------------------------

async def preflight(dev: Device) -> dict:
    """Connect and probe: the device's platform, CPU, memory, governor, temperatures and work dir."""
    await dev.connect()
    source = Path(probe.__file__).read_text(encoding="utf-8")
    proc = await dev.run([dev.host.python, "-", dev.host.work_dir], input=source, timeout=60, check=False)
    if proc.exit_status == 127 or (proc.exit_status != 0 and "not found" in (proc.stderr or "")):
        raise HostError(dev.host, f"no Python at `{dev.host.python}` on the device (set `python` in the inventory)")
    if proc.exit_status != 0:
        last = (proc.stderr or "").strip().splitlines()
        raise HostError(dev.host, f"the probe failed with `{dev.host.python}`: {last[-1] if last else 'no output'}")
    try:
        info = json.loads((proc.stdout or "").strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise HostError(dev.host, f"`{dev.host.python}` did not run the probe (no JSON back)") from None
    if info.get("implementation") != "cpython" or tuple(map(int, info["python"].split(".")[:2])) < (3, 10):
        raise HostError(dev.host, f"tritbench needs CPython 3.10 or newer; the device has "
                                  f"{info.get('implementation')} {info.get('python')}")
    if not info.get("work_dir_writable"):
        raise HostError(dev.host, f"work_dir {info.get('work_dir')} is not writable")
    return info


async def installed(dev: Device, env_dir: str) -> bool:
    sftp = await dev.sftp()
    try:
        return await sftp.exists(f"{env_dir}/.installed")
    except (OSError, asyncssh.Error) as exc:
        raise HostError(dev.host, f"SFTP: {exc}") from None


def layer_dir(info: dict, layer: Layer) -> str:
    return f"{info['work_dir']}/env/{layer.name}-{layer.digest}"


async def bootstrap(dev: Device, info: dict, house: Wheelhouse) -> str:
    """Install each layer of the wheelhouse into `<work_dir>/env/<layer>-<digest>/site` unless it is there;
    the PYTHONPATH of the sites, tritbench's first."""
    sites = []
    for layer in house.layers:
        env_dir = layer_dir(info, layer)
        sites.append(f"{env_dir}/site")
        if await installed(dev, env_dir):
            continue
        wheels = f"{env_dir}/wheels"
        await dev.run(["rm", "-rf", env_dir])  # a half-done earlier attempt
        await dev.run(["mkdir", "-p", wheels])
        sftp = await dev.sftp()
        try:
            await sftp.put([str(w) for w in [house.pip, *layer.wheels]], wheels)
        except (OSError, asyncssh.Error) as exc:
            raise HostError(dev.host, f"cannot copy the wheelhouse to {wheels}: {exc}") from None
        pip = f"{wheels}/{house.pip.name}/pip"
        names = [f"{wheels}/{w.name}" for w in layer.wheels]
        await dev.run([dev.host.python, pip, "install", "--quiet", "--no-index", "--no-deps",
                       "--disable-pip-version-check", "--no-warn-script-location", "--no-compile",
                       "--target", f"{env_dir}/site", *names], timeout=1800)
        await dev.run(["rm", "-rf", wheels])
        await dev.run(["touch", f"{env_dir}/.installed"])
    return ":".join(reversed(sites))


# ---- the agent on the device -------------------------------------------------------------------------------------

def _device_config(cfg: RunConfig, host: Host, info: dict) -> dict:
    data = dataclasses.asdict(cfg)
    data.pop("out")
    if host.max_threads:
        cap = min(host.max_threads, info.get("logical_cores") or host.max_threads)
        data["threads"] = [t for t in data["threads"] if t <= cap] if data["threads"] else [cap]
        if not data["threads"]:
            raise HostError(host, f"every thread count of the run is above its max_threads ({host.max_threads})")
    return data


async def launch(dev: Device, hr: HostRun) -> None:
    """Start the agent detached from this session: it runs on if the link drops or the controller dies."""
    h = dev.host
    env = {**h.env, "PYTHONPATH": ":".join(filter(None, [hr.site, h.env.get("PYTHONPATH")])),
           "TRITBENCH_HOME": f"{hr.work_dir}/home", "PYTHONUNBUFFERED": "1"}
    words = ["env", *(f"{k}={v}" for k, v in env.items()), hr.python, "-s", "-m", "tritbench.fleet.agent", hr.run_dir]
    # In a subshell: a job backgrounded by the session's own shell keeps the SSH channel open until it ends.
    await dev.shell(f"cd {quote([hr.run_dir])} && (setsid nohup {quote(words)} >>agent.log 2>&1 </dev/null &)",
                    timeout=30)
    hr.status = "running"


async def start(dev: Device, hr: HostRun, cfg: RunConfig, fleet_id: str) -> None:
    hr.run_dir = f"{hr.work_dir}/runs/{fleet_id}"
    await dev.run(["mkdir", "-p", f"{hr.run_dir}/{agent.SPOOL}"])
    pushed = {"config": _device_config(cfg, dev.host, hr.probe),
              "host": {"name": dev.host.name, "labels": dev.host.labels}}
    sftp = await dev.sftp()
    async with sftp.open(f"{hr.run_dir}/{agent.CONFIG_FILE}", "w") as fh:
        await fh.write(json.dumps(pushed, indent=1) + "\n")
    await launch(dev, hr)


# ---- supervision -------------------------------------------------------------------------------------------------

class Mirror:
    """The device's spool files, copied whole line by whole line: the local file's size is the offset."""

    def __init__(self, out: Path, host: str, run_dir: str, plan: Path):
        self.out, self.host, self.run_dir, self.spool = out, host, run_dir, f"{run_dir}/{agent.SPOOL}"
        self.files: dict[str, Path] = {}
        self.plan = plan  # the agent's planned file, copied once: what to fail if the host is lost
        self.planned: set[str] | None = None  # its case ids, once read
        self.seen: set[str] = set()  # case ids with a record in the mirror

    def all_measured(self) -> bool:
        """Every planned case has a record here: the agent is finishing (its done marker is due any moment)."""
        if self.planned is None:
            if not self.plan.exists():
                return False
            planned = [json.loads(line) for line in self.plan.read_text(encoding="utf-8").splitlines() if line]
            self.planned = {r["case_id"] for r in planned}
            for rid in {r["run_id"] for r in planned}:
                name = f"run-{rid}.jsonl"  # the spool file the agent appends to: no listing needed to find it
                path = self.files.setdefault(name, self.local(name))
                self._see(path.read_bytes().splitlines() if path.exists() else [])  # mirrored before (a resume)
        return self.planned <= self.seen

    def _see(self, lines: list[bytes]) -> None:
        for line in lines:
            try:
                self.seen.add(json.loads(line)["case_id"])
            except (ValueError, KeyError, TypeError):
                pass  # not a record: the run's file is checked where it is read

    def local(self, name: str) -> Path:
        return self.out / f"{self.host}-{name}"

    def lost_files(self) -> list[Path]:
        if not self.plan.exists():
            return []
        ids = {json.loads(line)["run_id"] for line in self.plan.read_text(encoding="utf-8").splitlines() if line}
        return [self.local(f"run-{i}.jsonl").with_suffix(".lost.jsonl") for i in sorted(ids)]

    async def fetch_plan(self, sftp: asyncssh.SFTPClient) -> None:
        if self.plan.exists():
            return
        try:
            async with sftp.open(f"{self.run_dir}/{agent.PLAN_FILE}", "rb") as fh:
                data = await fh.read()
            agent.write_atomic(self.plan, gzip.decompress(data))
        except (asyncssh.SFTPNoSuchFile, asyncssh.SFTPFailure, EOFError, gzip.BadGzipFile):
            pass  # not written yet (written atomically: never half a file)

    def fail_missing(self, reason: str) -> int:
        """Every planned case without a record from the device gets a failed one saying why, in
        `<host>-run-<id>.lost.jsonl`; without the plan (the host was lost before the agent planned) none can be."""
        if not self.plan.exists():
            return 0
        planned = [json.loads(line) for line in self.plan.read_text(encoding="utf-8").splitlines() if line]
        seen = set()
        for rid in {r["run_id"] for r in planned}:
            for path in (self.local(f"run-{rid}.jsonl"), self.local(f"run-{rid}.link.jsonl")):
                if path.exists():
                    seen |= {rec["case_id"] for rec in read_records([path])}
        missing = [r for r in planned if r["case_id"] not in seen]
        for rec in missing:
            rec["error"] = f"not measured: {reason}"
            Journal(self.local(f"run-{rec['run_id']}.lost.jsonl")).append(rec)
        return len(missing)

    def clear_lost(self) -> None:
        """Re-attaching: the host's cases are judged again (a resumed agent may finish them)."""
        for path in self.lost_files():
            path.unlink(missing_ok=True)

    async def pull(self, sftp: asyncssh.SFTPClient, listing: bool = True) -> list[tuple[str, bytes]]:
        """Copy what the device appended since the last pull; the new lines, with the spool file of each.
        Without `listing`, only the spool files already known are looked at (one request each)."""
        new: list[tuple[str, bytes]] = []
        if listing:  # not at every poll: before a run's first record there is no spool file to stat
            for name in sorted(await sftp.listdir(self.spool)):
                if name.startswith("run-") and name.endswith(".jsonl"):
                    self.files.setdefault(name, self.local(name))
        for name, local in sorted(self.files.items()):
            offset = local.stat().st_size if local.exists() else 0
            try:
                size = (await sftp.stat(f"{self.spool}/{name}")).size or 0
            except asyncssh.SFTPNoSuchFile:  # named by the plan, not written yet
                continue
            if size <= offset:
                continue
            async with sftp.open(f"{self.spool}/{name}", "rb") as fh:
                await fh.seek(offset)
                data = await fh.read(size - offset)
            whole = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next pull
            if whole:
                with open(local, "ab") as out:
                    out.write(whole)
                    out.flush()
                    os.fsync(out.fileno())
                new += [(name, line) for line in whole.splitlines() if line.strip()]
        self._see([line for _, line in new])
        return new

    def invalidate(self, lines: list[tuple[str, bytes]], reason: str) -> int:
        """Records among `lines` that measured energy, superseded by a failed copy in `<host>-run-<id>.link.jsonl`
        (read after the mirror, it wins): the reconnection's own work on the device (key exchange, a new session)
        may be in their energy window. Speed is unaffected (the run is detached) but the case is measured again
        only if the user says so: never silently."""
        marked = 0
        for name, raw in lines:
            try:
                rec = json.loads(raw)
                energy = rec["metrics"].get("energy") or {}
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
            if rec.get("status") != "ok" or not str(energy.get("source", "")).startswith("measured"):
                continue
            rec["status"] = "failed"
            rec["error"] = f"invalid: {reason}; its energy window may hold the reconnection's work: measure it again"
            Journal(self.local(name).with_suffix(".link.jsonl")).append(rec)  # one synced line, torn tails kept apart
            marked += 1
        return marked


async def _mtime(sftp: asyncssh.SFTPClient, path: str) -> int | None:
    """A file's modification time (one request), None when it does not exist."""
    try:
        return (await sftp.stat(path)).mtime
    except (asyncssh.SFTPNoSuchFile, asyncssh.SFTPFailure):
        return None


async def _read_text(sftp: asyncssh.SFTPClient, path: str) -> str | None:
    try:
        async with sftp.open(path, "r") as fh:
            return await fh.read()
    except (asyncssh.SFTPNoSuchFile, asyncssh.SFTPFailure):
        return None


def _invalidate(mirror: Mirror, lines: list[tuple[str, bytes]], disturbed: str | None, host: str,
                events: FleetEvents) -> None:
    if disturbed and lines:
        marked = mirror.invalidate(lines, disturbed)
        if marked:
            events.warning(host, f"{marked} case(s) measured energy across a reconnection: marked invalid")


async def _disk_full(sftp: asyncssh.SFTPClient, path: str) -> str | None:
    """Why an agent cannot go on when its disk is full (it cannot even write its exit code), else None."""
    try:
        vfs = await sftp.statvfs(path)
    except (OSError, asyncssh.Error):
        return None  # the server does not say: the relaunch limit decides
    free = vfs.bavail * vfs.frsize
    if free < 256 * 1024:
        return f"the device's disk is full at {path} ({free} bytes free): finished cases are kept"
    return None


async def supervise(dev: Device, hr: HostRun, mirror: Mirror, events: FleetEvents, save: Callable[[], None],
                    disturbed: str | None = None) -> None:
    """Follow one host's run to its done marker, reconnecting after drops; relaunch a dead agent. After a drop
    (or with `disturbed`, after re-attaching), energy readings that arrive are marked invalid."""
    poll = _env_float("TRITBENCH_FLEET_POLL_S", POLL_S)
    stale = _env_float("TRITBENCH_FLEET_STALE_S", STALE_S)
    lost_after = _env_float("TRITBENCH_FLEET_LOST_AFTER_S", LOST_AFTER_S)
    last_hb, hb_seen, lost_since, backoff = None, time.monotonic(), None, 1.0
    cycle, began = 0, time.monotonic()
    while True:
        try:
            if dev.conn is None:
                await dev.connect()
                events.warning(dev.host.name, "reconnected")
                lost_since, backoff, cycle = None, 1.0, 0
            sftp = await dev.sftp()
            # Until the plan is copied every poll is a check (the spool file is found through the plan or a
            # listing), at SOON_S for the agent's first STARTING_S; once every planned case has a record, likewise.
            await mirror.fetch_plan(sftp)  # no request once copied
            starting = not mirror.plan.exists()
            soon = (starting and time.monotonic() - began < STARTING_S) or mirror.all_measured()
            check = starting or soon or cycle % CHECK_EVERY == 0
            cycle += 1
            # A check's three requests go out together: the device's sshd and sftp server then wake about once
            # for all of them. The spool directory is listed only until its file is known.
            pull = mirror.pull(sftp, listing=check and not mirror.files)
            if check:
                got, done, hb = await asyncio.wait_for(asyncio.gather(
                    pull, _mtime(sftp, f"{hr.run_dir}/{agent.DONE_FILE}"),
                    _mtime(sftp, f"{hr.run_dir}/{agent.HEARTBEAT_FILE}")), 60)
            else:
                got = await asyncio.wait_for(pull, 60)
            if got:
                events.host(dev.host.name, f"{len(got)} record(s)")
                _invalidate(mirror, got, disturbed, dev.host.name, events)
            if not check:
                await asyncio.sleep(min(poll, SOON_S) if mirror.all_measured() else poll)
                continue
            if done is not None:
                _invalidate(mirror, await mirror.pull(sftp), disturbed, dev.host.name, events)
                result = json.loads(await _read_text(sftp, f"{hr.run_dir}/{agent.EXIT_FILE}") or "{}")
                hr.exit_code, hr.message = result.get("code", 3), result.get("message", "no exit code written")
                hr.status = "done"
                save()
                return
            if hb != last_hb:
                last_hb, hb_seen = hb, time.monotonic()
            elif time.monotonic() - hb_seen > stale:
                full = await _disk_full(sftp, hr.run_dir)
                if full:
                    await mirror.pull(sftp)
                    hr.status, hr.message = "failed", full
                    save()
                    return
                if hr.relaunches >= MAX_RELAUNCHES:
                    hr.status, hr.message = "failed", f"the agent died {hr.relaunches + 1} times (see agent.log)"
                    save()
                    return
                hr.relaunches += 1
                events.warning(dev.host.name, f"the agent stopped beating for {stale:g} s: restarted, it resumes")
                await launch(dev, hr)
                hb_seen = time.monotonic()
                save()
        except (HostError, OSError, asyncssh.Error, asyncio.TimeoutError) as exc:
            reason = exc.reason if isinstance(exc, HostError) else (str(exc) or type(exc).__name__)
            if lost_since is None:
                events.warning(dev.host.name, f"link lost ({reason}); the device runs on, reconnecting")
                lost_since = time.monotonic()
                disturbed = f"the SSH link dropped at {time.strftime('%H:%M:%S')} during the run"
            dev.abort()
            if time.monotonic() - lost_since > lost_after:
                hr.status, hr.message = "lost", f"unreachable for {lost_after:g} s: {reason}"
                save()
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)
            continue
        await asyncio.sleep(min(poll, SOON_S) if soon or mirror.all_measured() else poll)


# ---- the whole run -----------------------------------------------------------------------------------------------

def latest_state(out: Path) -> Path:
    found = sorted(out.glob(f"{STATE_PREFIX}*.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise BenchError(f"--resume: no fleet run to resume in {out}")
    return found[-1]


class _Wheelhouses:
    """One wheelhouse per (device platform, llama wheel), made one at a time: hosts of a kind share theirs, and
    two makers never write the same cache folder at once."""

    def __init__(self) -> None:
        self.made: dict[tuple, Wheelhouse] = {}
        self.lock = asyncio.Lock()

    async def get(self, host: Host, info: dict) -> Wheelhouse:
        key = (Target.from_probe(info), host.llama_wheel)
        async with self.lock:
            if key not in self.made:
                self.made[key] = await asyncio.to_thread(wheelhouse, *key)
        return self.made[key]


async def _on_every_host(devices: list[Device], steps) -> list:
    """Run one step per host concurrently; if any fails, close every connection and raise: one BenchError
    naming every host that failed (or the first unexpected exception)."""
    results = await asyncio.gather(*steps, return_exceptions=True)
    errors = [e for e in results if isinstance(e, BaseException)]
    if errors:
        await asyncio.gather(*(d.close() for d in devices))
        raise next((e for e in errors if not isinstance(e, BenchError)), BenchError("; ".join(map(str, errors))))
    return results


async def _prepare(hosts: list[Host], events: FleetEvents) -> dict[str, tuple[Device, dict, Wheelhouse]]:
    """Preflight and bootstrap every host; any failure stops everything before a run starts."""
    devices = {h.name: Device(h) for h in hosts}
    infos = await _on_every_host(list(devices.values()), [preflight(d) for d in devices.values()])
    houses = _Wheelhouses()
    out = {}
    for (name, dev), info in zip(devices.items(), infos, strict=True):
        out[name] = (dev, info, await houses.get(dev.host, info))
        for note in out[name][2].notes:
            events.warning(name, note)
    sites = await _on_every_host(list(devices.values()), [bootstrap(d, i, w) for d, i, w in out.values()])
    for (name, (dev, info, house)), site in zip(out.items(), sites, strict=True):
        events.host(name, f"ready: {info['arch']}, Python {info['python']}, env {house.digest[:8]}")
        out[name] = (dev, {**info, "site": site}, house)
    return out


async def _run(hosts: list[Host], cfg: RunConfig, out: Path, resume: bool, events: FleetEvents) -> FleetOutcome:
    out.mkdir(parents=True, exist_ok=True)
    if resume:
        state_path = latest_state(out)
        state = json.loads(state_path.read_text(encoding="utf-8"))
        fleet_id = state["fleet_id"]
        runs = {h["name"]: HostRun(**h) for h in state["hosts"]}
        missing = set(runs) - {h.name for h in hosts}
        if missing:
            raise BenchError(f"--resume: host '{sorted(missing)[0]}' of {state_path.name} is not in the inventory")
        hosts = [h for h in hosts if h.name in runs]
    else:
        fleet_id = new_run_id()
        state_path = out / f"{STATE_PREFIX}{fleet_id}.json"
        runs = {h.name: HostRun(h.name) for h in hosts}
    prepared = await _prepare(hosts, events)

    def save() -> None:
        state = {"format": "tritbench.fleet/1", "fleet_id": fleet_id,
                 "hosts": [dataclasses.asdict(r) for r in runs.values()]}
        agent.write_atomic(state_path, json.dumps(state, indent=1) + "\n")

    for name, (dev, info, _) in prepared.items():
        hr = runs[name]
        hr.probe = {k: v for k, v in info.items() if k != "site"}
        hr.work_dir, hr.site, hr.python = info["work_dir"], info["site"], dev.host.python
    save()
    mirrors: dict[str, Mirror] = {}

    async def one(name: str) -> None:
        dev, info, _ = prepared[name]
        hr = runs[name]
        try:
            if not resume or not hr.run_dir:
                await start(dev, hr, cfg, fleet_id)
                events.host(name, "started")
            elif hr.status == "done":
                pass
            else:
                await _reattach(dev, hr, events)
            save()
            mirrors[name] = Mirror(out, name, hr.run_dir, out / f"{STATE_PREFIX}{fleet_id}-{name}.planned")
            if resume:
                mirrors[name].clear_lost()
            if hr.status != "done" or resume:
                await supervise(dev, hr, mirrors[name], events, save,
                                "the controller re-attached after it died" if resume else None)
        except BenchError as exc:
            hr.status, hr.message = "failed", str(exc)
            save()
        finally:
            await dev.close()
        if name in mirrors and (hr.status != "done" or hr.exit_code != 0):
            why = {"lost": f"host {name} was lost ({hr.message})", "failed": f"host {name} failed ({hr.message})"}
            failed = mirrors[name].fail_missing(
                why.get(hr.status, f"the agent on {name} ended with exit {hr.exit_code} ({hr.message})"))
            if failed:
                events.warning(name, f"{failed} case(s) never measured: each has a failed record saying why")

    await asyncio.gather(*(one(n) for n in prepared))
    files = sorted({q for m in mirrors.values() for p in m.files.values()
                    for q in (p, p.with_suffix(".link.jsonl")) if q.exists()}
                   | {p for m in mirrors.values() for p in m.lost_files() if p.exists()})
    return FleetOutcome(state_path, list(runs.values()), files)


async def _reattach(dev: Device, hr: HostRun, events: FleetEvents) -> None:
    """After the controller died: an agent still beating is followed; one that died is restarted to resume."""
    proc = await dev.shell(f"cat {quote([hr.run_dir + '/' + agent.HEARTBEAT_FILE])} 2>/dev/null; echo; "
                           f"test -e {quote([hr.run_dir + '/' + agent.DONE_FILE])} && echo done; date +%s", check=False)
    lines = [s.strip() for s in (proc.stdout or "").splitlines() if s.strip()]
    if "done" in lines:
        events.host(hr.name, "re-attached: finished while the controller was away")
        return
    try:
        beat, now = float(lines[0]), float(lines[-1])
        alive = len(lines) >= 2 and now - beat < _env_float("TRITBENCH_FLEET_STALE_S", STALE_S)
    except (ValueError, IndexError):
        alive = False
    if alive:
        events.host(hr.name, "re-attached: still running")
    else:
        events.warning(hr.name, "the agent is not running: restarted, it runs the missing cases")
        await launch(dev, hr)


def run_fleet(hosts: list[Host], cfg: RunConfig, out: Path, *, resume: bool = False,
              events: FleetEvents | None = None) -> FleetOutcome:
    return asyncio.run(_run(hosts, cfg, Path(out), resume, events or FleetEvents()))


# ---- bench hosts check -------------------------------------------------------------------------------------------

async def _check_one(host: Host, houses: _Wheelhouses) -> dict:
    dev = Device(host)
    try:
        info = await preflight(dev)
        house = await houses.get(host, info)
        todo = [layer for layer in house.layers if not await installed(dev, layer_dir(info, layer))]
        if not todo:
            plan = f"installed ({house.digest})"
        else:
            wheels = [house.pip, *(w for layer in todo for w in layer.wheels)]
            size = sum(w.stat().st_size for w in wheels)
            plan = (f"would push {', '.join(layer.name for layer in todo)}: {len(wheels)} wheels "
                    f"({size / 2**20:.1f} MiB) and install them")
        return {"host": host, "ok": True, "probe": info, "bootstrap": plan, "notes": house.notes}
    except BenchError as exc:
        return {"host": host, "ok": False, "error": str(exc)}
    finally:
        await dev.close()


def check_hosts(hosts: list[Host]) -> list[dict]:
    """Reachability, the device's fingerprint, and what a bootstrap would do, for every host."""
    async def all_hosts():
        houses = _Wheelhouses()
        return await asyncio.gather(*(_check_one(h, houses) for h in hosts))
    return asyncio.run(all_hosts())
