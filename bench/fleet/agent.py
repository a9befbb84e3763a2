"""The device side of a remote run: `python -m tritbench.fleet.agent RUN_DIR`, started detached by the controller.

It runs the config the controller pushed (`RUN_DIR/config.json`) with the ordinary run session, so each record is
appended and fsynced to `RUN_DIR/spool/run-<id>.jsonl` the moment its case ends, whether or not anyone is
connected. Around the session it keeps the files the controller reads:

    agent.json   pid and start time, written once the device lock is held
    heartbeat    the device's clock, rewritten every HEARTBEAT_S seconds while the agent lives
    planned.jsonl.gz  the failed record each case would get if it never ran (written before measuring): the controller
                 keeps it, to give every case of a host it loses a record that says why
    exit.json    {"code": N, "message": "..."}: 0 all cases ok, 1 some failed, 2 bad input, 75 device busy,
                 130 stopped by a signal, 3 the agent itself failed (its log holds the traceback)
    done         written last: nothing more will be appended

One suite per device at a time: the agent holds `WORK_DIR/device.lock` (flock) for its whole life. Started again
on a run directory whose spool already holds a run (the controller re-attaching after the agent died), it
resumes that run: the journal and the records say which cases are missing, and only those run."""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

HEARTBEAT_S = 10.0  # a wake-up every 10 s: far below the "<= 1 wake-up/s while measuring" budget
HEARTBEAT_ENV = "TRITBENCH_FLEET_HEARTBEAT_S"  # tests beat faster
BUSY = 75  # EX_TEMPFAIL: another run holds the device
EXIT_FILE, DONE_FILE, AGENT_FILE, HEARTBEAT_FILE, CONFIG_FILE, PLAN_FILE = "exit.json", "done", "agent.json", \
    "heartbeat", "config.json", "planned.jsonl.gz"
SPOOL = "spool"


def write_atomic(path: Path, text: str | bytes) -> None:
    """Replace `path` with `text` so that a reader sees the old or the new content, never half of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    data = text.encode("utf-8") if isinstance(text, str) else text
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # a full disk: leave no half file taking the space
        raise


def _finish(run_dir: Path, code: int, message: str) -> int:
    write_atomic(run_dir / EXIT_FILE, json.dumps({"code": code, "message": message}) + "\n")
    write_atomic(run_dir / DONE_FILE, "")
    return code


def _heartbeat(run_dir: Path, stop: threading.Event) -> None:
    try:
        period = float(os.environ.get(HEARTBEAT_ENV) or HEARTBEAT_S)
    except ValueError:
        period = HEARTBEAT_S
    while not stop.is_set():
        try:
            write_atomic(run_dir / HEARTBEAT_FILE, f"{time.time():.3f}\n")
        except OSError:
            pass  # a full disk: the controller sees the heartbeat stop and says so
        stop.wait(period)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run(run_dir: Path) -> int:
    """Lock the device, run the pushed config into the spool, and write the exit code and the done marker."""
    pushed = json.loads((run_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    lock = open(run_dir.parent.parent / "device.lock", "a+")  # noqa: SIM115 - held until the process ends
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return _finish(run_dir, BUSY, "the device is busy: another tritbench run holds its lock")
    write_atomic(run_dir / AGENT_FILE, json.dumps({"pid": os.getpid(), "started": time.time()}) + "\n")
    stop = threading.Event()
    threading.Thread(target=_heartbeat, args=(run_dir, stop), daemon=True).start()
    # Imported after the first heartbeat: on a slow board (or under emulation) these take seconds.
    from tritbench.errors import BenchError
    from tritbench.execute.session import RunEvents, RunInterrupted, run_session
    from tritbench.models import ModelError
    from tritbench.plan.suite import RunConfig

    class Planned(RunEvents):
        def planned(self, unmeasured: list) -> None:  # a resumed agent plans only the missing cases
            try:
                # compressed: every record repeats the machine's fingerprint, and the spool's disk may be small
                lines = "".join(json.dumps(r.to_dict()) + "\n" for r in unmeasured)
                write_atomic(run_dir / PLAN_FILE, gzip.compress(lines.encode("utf-8"), mtime=0))
            except OSError as exc:  # a full disk: the run goes on; only a lost host's cases go unnamed
                print(f"cannot write the plan: {exc}", file=sys.stderr)

    # Records carry the inventory's name and labels for this host (tritbench.machine.fingerprint).
    os.environ["TRITBENCH_HOST"] = json.dumps(pushed["host"])
    spool = run_dir / SPOOL
    resume = any(spool.glob("run-*.jsonl")) or any(spool.glob("run-*.journal"))
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        cfg = RunConfig(**{**pushed["config"], "out": str(spool)})
        cfg.validate()
        outcome = run_session(cfg, resume=resume, events=Planned())
        code = 1 if outcome.failed else 0
        message = f"{len(outcome.records)} cases, {outcome.failed} failed"
    except (RunInterrupted, KeyboardInterrupt):
        code, message = 130, "stopped by a signal: finished cases are in the spool"
    except (BenchError, ModelError) as exc:
        code, message = 2, str(exc)
    except Exception as exc:  # noqa: BLE001 - the controller must get an exit code whatever happened
        traceback.print_exc()
        code, message = 3, f"the agent failed: {type(exc).__name__}: {exc}"
    finally:
        stop.set()
    return _finish(run_dir, code, message)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tritbench.fleet.agent RUN_DIR", file=sys.stderr)
        return 2
    return run(Path(argv[0]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
