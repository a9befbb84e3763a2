"""Result records: one JSON object per case, appended to a JSONL file per run, and read back with pandas."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tritbench.errors import BenchError
from tritbench.results.upgrade import upgrade

if TYPE_CHECKING:
    import pandas as pd

SCHEMA = "tritbench.result/1"


@dataclass
class Record:
    """One measured (or failed) case. Nested parts stay dicts: later tools add keys without a schema bump."""

    run_id: str
    case_id: str
    status: str  # "ok" | "failed"
    error: str | None
    backend: dict
    model: dict
    workload: dict
    settings: dict
    metrics: dict
    machine: dict
    state: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    timestamp: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    schema: str = SCHEMA

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Record:
        if d.get("schema") != SCHEMA:
            raise ValueError(f"unknown record schema {d.get('schema')!r} (expected {SCHEMA})")
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def new_run_id() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


class ResultsStore:
    """A run's JSONL file. Each record is written, flushed and fsynced as its case ends, so a
    crash or Ctrl-C keeps every finished case."""

    def __init__(self, path: Path, run_id: str):
        self.path = path
        self.run_id = run_id

    @classmethod
    def create(cls, out_dir: Path) -> ResultsStore:
        run_id = new_run_id()
        return cls(Path(out_dir) / f"run-{run_id}.jsonl", run_id)

    @classmethod
    def latest(cls, out_dir: Path) -> ResultsStore:
        """The most recent run in `out_dir`, to resume it."""
        # a run killed before its first record has only its journal (tritbench.results.journal)
        found = [*Path(out_dir).glob("run-*.jsonl"), *Path(out_dir).glob("run-*.journal")]
        runs = sorted((p for p in found if p.is_file()), key=lambda p: p.stat().st_mtime)
        if not runs:
            raise BenchError(f"--resume: no run to resume in {out_dir}")
        path = runs[-1].with_suffix(".jsonl")
        return cls(path, path.stem.removeprefix("run-"))

    @staticmethod
    def check_writable(out_dir: Path) -> None:
        """Create `out_dir` and write, sync and remove a probe file in it: a results folder that cannot take
        records is refused (BenchError, one line) before anything is measured, not after."""
        probe = Path(out_dir) / f".tritbench-probe-{os.getpid()}"
        try:
            probe.parent.mkdir(parents=True, exist_ok=True)
            with open(probe, "w", encoding="utf-8") as fh:
                fh.write("probe\n")
                fh.flush()
                os.fsync(fh.fileno())
            probe.unlink()
        except OSError as exc:
            raise BenchError(f"cannot write results to {out_dir}: {exc.strerror or exc}") from None

    def append(self, record: Record) -> None:
        """Append one record on a line of its own; flushed and synced before returning."""
        line = json.dumps(record.to_dict(), allow_nan=False) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._set_aside_torn_tail()
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise BenchError(f"cannot append a record to {self.path}: {exc.strerror or exc}") from None

    def _set_aside_torn_tail(self) -> None:
        """A last line cut short by a crash or a full disk is moved to `<run>.torn` (kept, never parsed) and
        cut from the run file, so the next record starts on a fresh line instead of being glued to it."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb+") as fh:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) == b"\n":
                return
            fh.seek(0)
            data = fh.read()
            cut = data.rfind(b"\n") + 1
            with open(self.path.with_suffix(".torn"), "ab") as side:
                side.write(data[cut:] + b"\n")
            fh.truncate(cut)
            fh.flush()
            os.fsync(fh.fileno())

    def records(self, problems: list[str] | None = None) -> list[Record]:
        """The run's current records (a case's newest), skipping unreadable lines (named in `problems`)."""
        return [Record.from_dict(d) for d in read_records([self.path], problems)] if self.path.exists() else []

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run's lock while measuring into it, so that a second `bench run --resume` of the same run
        is refused instead of measuring its cases twice. The kernel releases it however the process ends."""
        import fcntl

        lock_path = self.path.with_suffix(".lock")
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(lock_path, "a+")
        except OSError as exc:
            raise BenchError(f"cannot lock {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise BenchError(f"{self.path} is being measured by another bench run (it holds {lock_path})") from None
        try:
            yield
        finally:
            fh.close()

    def finished_case_ids(self) -> set[str]:
        return {r.case_id for r in self.records() if r.status == "ok"}


def _jsonl_files(paths: Iterable[str | os.PathLike], problems: list[str]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(p.glob("*.jsonl")):
                if f.is_file():
                    files.append(f)
                else:
                    problems.append(f"{f}: not a file")
        elif p.is_file():
            files.append(p)
        else:
            raise BenchError(f"no such results file or folder: {p}")
    return files


# Keys every record has, with their types: a line without them is skipped with its file and line named.
_SHAPE = {"run_id": str, "case_id": str, "status": str, "backend": dict, "model": dict, "workload": dict,
          "settings": dict, "metrics": dict, "machine": dict}


def _problem(rec: object) -> str | None:
    """Why a parsed line is not a usable record, or None."""
    if not isinstance(rec, dict) or rec.get("schema") != SCHEMA:
        return f"not a {SCHEMA} record"
    for key, kind in _SHAPE.items():
        if not isinstance(rec.get(key), kind):
            return f"'{key}' is missing or not a {kind.__name__}"
    if rec["status"] not in ("ok", "failed"):
        return f"unknown status {rec['status']!r}"
    if not isinstance(rec["workload"].get("name"), str) or not isinstance(rec["backend"].get("name"), str):
        return "'workload.name' or 'backend.name' is missing"
    return None


def read_records(paths: Iterable[str | os.PathLike], problems: list[str] | None = None) -> list[dict]:
    """Every record in the given JSONL files or folders, one per case and run (a case measured again, after
    an interrupt and --resume, keeps its newest record). A line that is not a whole, well-formed record (a
    crash mid-write, a corrupted file) is skipped and named, as `file:line: why`, in `problems`."""
    problems = problems if problems is not None else []
    current: dict[tuple[str, str], dict] = {}
    for path in _jsonl_files(paths, problems):
        try:
            data = path.read_bytes()
        except OSError as exc:
            problems.append(f"{path}: cannot read: {exc.strerror or exc}")
            continue
        for i, raw in enumerate(data.splitlines(), 1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                problems.append(f"{path}:{i}: not UTF-8 text")
                continue
            except (ValueError, RecursionError):  # bad JSON, an integer too long to convert, deep nesting
                problems.append(f"{path}:{i}: not a JSON record (cut short or corrupted)")
                continue
            rec = upgrade(rec)  # an older schema's record, in the current one
            why = _problem(rec)
            if why:
                problems.append(f"{path}:{i}: {why}")
                continue
            key = (rec["run_id"], rec["case_id"])
            current.pop(key, None)  # the newest record of a case takes the place of older ones ...
            current[key] = rec  # ... at the end, in the order the cases were last written
    return list(current.values())


def load_results(paths: Iterable[str | os.PathLike] | str | os.PathLike, problems: list[str] | None = None
                 ) -> pd.DataFrame:
    """Flatten result records into a DataFrame, one row per case, nested keys joined by dots
    (`metrics.tokens_per_s.median`, `model.format`, ...); lines skipped as unreadable are named in `problems`."""
    import pandas as pd  # here, not at the top: the measuring child imports this package and must not load it

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    records = read_records(paths, problems)
    if not records:
        return pd.DataFrame()
    return pd.json_normalize(records, sep=".")
