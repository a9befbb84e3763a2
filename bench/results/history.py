"""The results history: records ingested from result JSONL files, kept as Parquet files and queried with DuckDB.

The JSONL files stay the truth. The history names the files it was ingested from, and `rebuild` makes it again
from them with the same rows and the same checksum. A history folder holds:

    history.json         the manifest: the Parquet segments that hold the rows, and the JSONL files ingested
                         (path, sha256, records); replaced atomically, last, by every change
    seg-000001.parquet   the rows one ingest added; a (run_id, case_id) is in exactly one segment, so the
                         segments together are the history, for DuckDB or any Parquet reader
    .lock                held by the one writer (ingest, rebuild) while it writes

Which record of a (run_id, case_id) is kept: within a file its last line (as `read_records` reads it, a case
measured again after --resume); across files and ingests the newer `timestamp`, and of two stamped the same
second the one whose canonical JSON has the larger md5 (arbitrary, but fixed). So the history depends on the
files' contents only, never on the order they were ingested in. A file ingested before and unchanged since (the
same sha256) is not read again: the same file ingested twice adds nothing.

Stores sit behind the `HistoryStore` protocol: `open_store` gives this embedded one for a folder, and the
PostgreSQL one (tritbench.results.postgres, for a team) for a postgresql:// URL, which keeps the same rule."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tritbench.errors import BenchError
from tritbench.results.records import read_records
from tritbench.results.upgrade import CURRENT, upgrade

if TYPE_CHECKING:
    import duckdb

FORMAT = "tritbench.history/1"
MANIFEST = "history.json"
_SEGMENT = re.compile(r"seg-\d{6,}\.parquet")

# The flattened columns of a row, the ones a query needs; `record` keeps the whole record as canonical JSON
# (sorted keys, ASCII) so that nothing is lost, and `digest` is its md5, to tell a changed record from the same.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("run_id", "VARCHAR"), ("case_id", "VARCHAR"), ("schema", "VARCHAR"),
    ("timestamp", "VARCHAR"),  # as recorded
    ("utc", "TIMESTAMP"),  # the timestamp in UTC, NULL when it cannot be read
    ("status", "VARCHAR"),
    ("machine_id", "VARCHAR"), ("machine_cpu", "VARCHAR"), ("machine_arch", "VARCHAR"),
    ("backend_name", "VARCHAR"), ("backend_version", "VARCHAR"),
    ("model_name", "VARCHAR"), ("model_format", "VARCHAR"), ("model_sha256", "VARCHAR"),
    ("workload_name", "VARCHAR"), ("workload_kind", "VARCHAR"),
    ("n_threads", "BIGINT"),
    ("tokens_per_s", "DOUBLE"),  # metrics.tokens_per_s.median
    ("record", "VARCHAR"),
    ("digest", "VARCHAR"),
)
NAMES = [name for name, _ in COLUMNS]
# the columns Python fills (`utc` as text, cast by DuckDB, which computes `digest`)
_INPUT = [n for n in NAMES if n not in ("digest",)]
_BATCH = 50_000  # rows per hand-over from Python to DuckDB
# what `summary` groups by: a row of `bench db query`
SUMMARY_KEYS = ("machine_id", "machine_cpu", "machine_arch", "model_name", "model_format", "backend_name", "n_threads",
                "workload_name")


def default_dir() -> Path:
    """$TRITBENCH_HOME/history, else ~/.cache/tritbench/history."""
    home = os.environ.get("TRITBENCH_HOME")
    return (Path(home) if home else Path.home() / ".cache" / "tritbench") / "history"


# ---- records to rows: pure ---------------------------------------------------------------------------------

def _text(v: object) -> str | None:
    return v if isinstance(v, str) else None


def _int(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and -(2**63) <= v < 2**63 else None


def _float(v: object) -> float | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        f = float(v)
        return f if f == f and f not in (float("inf"), float("-inf")) else None
    return None


def utc_text(timestamp: object) -> str | None:
    """An ISO timestamp as naive UTC ISO text ('2026-12-02T12:33:45'), or None; one without a zone is UTC."""
    return _utc_text(timestamp) if isinstance(timestamp, str) else None


@functools.lru_cache(maxsize=4096)  # the cases of a run share few seconds: parsing is a third of flatten()
def _utc_text(timestamp: str) -> str | None:
    text = timestamp.strip()
    text = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if t.tzinfo is not None:
        t = t.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return t.isoformat()


def canonical(rec: dict) -> str:
    """The record as one deterministic JSON text: sorted keys, ASCII (a lone surrogate stays an escape)."""
    return json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def flatten(rec: dict) -> dict[str, Any]:
    """The history's columns of one record (without `digest`); `utc` as text. Values of the wrong type are None."""

    def part(key: str) -> dict:
        v = rec.get(key)
        return v if isinstance(v, dict) else {}

    machine, backend, model, workload = part("machine"), part("backend"), part("model"), part("workload")
    tps = part("metrics").get("tokens_per_s")
    return {
        "run_id": _text(rec.get("run_id")), "case_id": _text(rec.get("case_id")), "schema": _text(rec.get("schema")),
        "timestamp": _text(rec.get("timestamp")), "utc": utc_text(rec.get("timestamp")),
        "status": _text(rec.get("status")),
        "machine_id": _text(machine.get("id")), "machine_cpu": _text(machine.get("cpu_model")),
        "machine_arch": _text(machine.get("arch")),
        "backend_name": _text(backend.get("name")), "backend_version": _text(backend.get("version")),
        "model_name": _text(model.get("name")), "model_format": _text(model.get("format")),
        "model_sha256": _text(model.get("sha256")),
        "workload_name": _text(workload.get("name")), "workload_kind": _text(workload.get("kind")),
        "n_threads": _int(part("settings").get("n_threads")),
        "tokens_per_s": _float(tps.get("median")) if isinstance(tps, dict) else None,
        "record": canonical(rec),
    }


# ---- filters ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Filters:
    """Which records a query takes: each given list matches any of its items; None takes all."""

    machine: Sequence[str] | None = None  # a machine id, or a part of the CPU model (any case)
    model: Sequence[str] | None = None  # a model name or format
    backend: Sequence[str] | None = None
    since: dt.datetime | None = None  # naive UTC, or aware

    @property
    def given(self) -> bool:
        """Whether any filter is set (an empty list is one: it takes nothing)."""
        return any(v is not None for v in (self.machine, self.model, self.backend, self.since))

    def where(self) -> tuple[str, dict[str, Any]]:
        """An SQL condition over the history's columns and its named parameters."""
        terms, params = ["TRUE"], {}
        if self.machine is not None:
            either = []
            for i, m in enumerate(self.machine):
                params[f"machine{i}"], params[f"cpu{i}"] = m, m.lower()
                either.append(f"machine_id = $machine{i} OR contains(lower(machine_cpu), $cpu{i})")
            terms.append("(" + " OR ".join(either or ["FALSE"]) + ")")
        if self.model is not None:
            params["models"] = list(self.model)
            terms.append("(list_contains($models, model_name) OR list_contains($models, model_format))")
        if self.backend is not None:
            params["backends"] = list(self.backend)
            terms.append("list_contains($backends, backend_name)")
        if self.since is not None:
            params["since"] = self.since_utc()
            terms.append("utc >= $since")
        return " AND ".join(terms), params

    def since_utc(self) -> dt.datetime | None:
        """`since` as naive UTC, as the history's `utc` column holds times."""
        if self.since is None or self.since.tzinfo is None:
            return self.since
        return self.since.astimezone(dt.timezone.utc).replace(tzinfo=None)


def parse_since(text: str) -> dt.datetime:
    """'2026-12-01' or '2026-12-01T12:00' (UTC unless a zone is given) -> a datetime; ValueError otherwise."""
    t = utc_text(text)
    if t is None:
        raise ValueError(f"not a date: {text!r}")
    return dt.datetime.fromisoformat(t)


# ---- the store -----------------------------------------------------------------------------------------

@dataclass
class Source:
    """A result file the history was ingested from: its content's sha256 and the records read from it."""

    path: str
    sha256: str
    records: int = 0


@dataclass
class IngestCounts:
    """What one ingest (or rebuild) did: records read, and per (run_id, case_id) what became of it."""

    read: int = 0
    added: int = 0
    replaced: int = 0  # a newer record of a case the history held
    unchanged: int = 0  # the history holds this very record already
    older: int = 0  # the history holds a newer record of the case (or one as new: see the module's rule)
    rows: int = 0  # the history's records afterwards
    sources: int = 0  # the history's source files afterwards
    skipped_files: int = 0  # given files unchanged since their last ingest, not read again
    changed_files: list[str] = field(default_factory=list)  # rebuild: sources whose content changed since ingest


class HistoryStore(Protocol):
    """A results history. The embedded one is ParquetStore; a PostgreSQL store would implement the same."""

    location: str

    def sources(self) -> dict[str, Source]:
        """The files the history was ingested from, by path (empty for no history)."""

    def ingest(self, records: Iterable[dict], sources: Sequence[Source] = ()) -> IngestCounts:
        """Add records (read from the JSONL `sources`, whose `records` counts are final once `records` is
        consumed); idempotent on (run_id, case_id)."""

    def records(self, filters: Filters | None = None) -> list[dict]:
        """The records that match, each as the current schema's dict."""

    def summary(self, filters: Filters | None = None, keys: Sequence[str] = SUMMARY_KEYS) -> list[dict]:
        """Median tokens/s (and runs, records, first and last time) of the ok records by `keys` (by default
        machine x model x format x backend x threads x workload)."""

    def rebuild(self, problems: list[str] | None = None) -> IngestCounts:
        """The history made again from its JSONL sources."""

    def checksum(self) -> str:
        """A digest of the history's rows, sorted: equal for equal contents however they were ingested."""

    def info(self) -> dict:
        """location, records, segments (storage units), storage (what they are, in words), sources (paths) and
        bytes on disk."""

    def rows(self, batch: int = 50_000) -> Iterator[tuple]:
        """Every row, as a tuple of NAMES (`utc` a datetime), in (run_id, case_id) order."""


def is_postgres(location: str | os.PathLike | None) -> bool:
    """Whether `location` names a PostgreSQL history (a postgresql:// URL), rather than a folder."""
    return location is not None and re.match(r"(?i)postgres(ql)?(\+\w+)?:", os.fspath(location)) is not None


def is_history(location: str | os.PathLike) -> bool:
    """Whether `location` is a results history (a PostgreSQL URL, or a folder with a history manifest) rather
    than result files."""
    return is_postgres(location) or (Path(location) / MANIFEST).is_file()


def open_store(location: str | os.PathLike | None = None) -> HistoryStore:
    """The store at `location`: a postgresql:// URL names a PostgreSQL history (tritbench.results.postgres); a
    folder (default: default_dir()) holds the embedded Parquet history."""
    text = os.fspath(location) if location is not None else ""
    if is_postgres(text):
        from tritbench.results.postgres import PostgresStore

        return PostgresStore(text)
    return ParquetStore(Path(text) if text else default_dir())


def _one_line(text: object) -> str:
    """An error text on one line, without control characters (file names and DuckDB messages are foreign)."""
    first = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return re.sub(r"[\x00-\x1f\x7f-\x9f]", " ", first)


class ParquetStore:
    """The embedded history: Parquet segments in a folder, read and written with DuckDB (one writer at a time)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.location = str(self.folder)

    # -- the manifest --

    def _manifest(self) -> dict | None:
        path = self.folder / MANIFEST
        try:
            text = path.read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise BenchError(f"cannot read the history manifest {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            text = ""
        try:
            man = json.loads(text)
        except ValueError:
            man = None
        ok = (isinstance(man, dict) and man.get("format") == FORMAT and isinstance(man.get("next_segment"), int)
              and isinstance(man.get("segments"), list) and isinstance(man.get("sources"), list)
              and all(isinstance(s, str) and _SEGMENT.fullmatch(s) for s in man["segments"])
              and all(isinstance(s, dict) and isinstance(s.get("path"), str) and isinstance(s.get("sha256"), str)
                      and isinstance(s.get("records"), int) for s in man["sources"]))
        if not ok:
            raise BenchError(f"{path} is not a {FORMAT} manifest (delete the folder and ingest the results again)")
        return man

    def _existing(self) -> dict:
        man = self._manifest()
        if man is None:
            raise BenchError(f"no results history in {self.folder} (`bench db ingest RESULTS... --db "
                             f"{self.folder}` makes one)")
        return man

    def _write_manifest(self, man: dict) -> None:
        path = self.folder / MANIFEST
        tmp = path.with_name(f".{MANIFEST}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(man, indent=1) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def sources(self) -> dict[str, Source]:
        man = self._manifest()
        return {s["path"]: Source(s["path"], s["sha256"], s["records"]) for s in (man or {}).get("sources", [])}

    def _files(self, man: dict) -> list[str]:
        return [str(self.folder / s) for s in man["segments"]]

    # -- DuckDB --

    @contextlib.contextmanager
    def _duck(self, doing: str) -> Iterator[duckdb.DuckDBPyConnection]:
        """A DuckDB connection; its errors (a corrupt or vanished segment, a full disk) as one-line BenchErrors."""
        import duckdb

        con = duckdb.connect(":memory:")
        try:
            yield con
        except duckdb.Error as exc:
            raise BenchError(f"cannot {doing} the results history in {self.folder}: {_one_line(exc)} "
                             "(`bench db rebuild` makes it again from its JSONL files)") from None
        finally:
            con.close()

    def _source(self, con: duckdb.DuckDBPyConnection, man: dict | None) -> tuple[str, dict]:
        """The FROM clause of the history's rows (with a `filename` column) and its parameters."""
        files = self._files(man) if man else []
        if files:
            return "read_parquet($files, filename = true)", {"files": files}
        cols = ", ".join(f"{n} {t}" for n, t in COLUMNS)
        con.execute(f"CREATE OR REPLACE TEMP TABLE empty_history ({cols}, filename VARCHAR)")
        return "empty_history", {}

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Create the folder and hold its lock: one writer at a time; an unwritable folder is refused."""
        import fcntl

        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fh = open(self.folder / ".lock", "a+")
        except OSError as exc:
            raise BenchError(f"cannot write the results history in {self.folder}: {exc.strerror or exc}") from None
        try:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise BenchError(f"the results history in {self.folder} is being written by another bench db "
                                 "command") from None
            yield
        finally:
            fh.close()

    # -- writing --

    def ingest(self, records: Iterable[dict], sources: Sequence[Source] = ()) -> IngestCounts:
        with self._writing():
            man = self._manifest() or {"format": FORMAT, "record_schema": CURRENT, "next_segment": 1,
                                       "segments": [], "sources": []}
            return self._merge(man, records, sources, fresh=False)

    def rebuild(self, problems: list[str] | None = None) -> IngestCounts:
        problems = problems if problems is not None else []
        with self._writing():
            man = self._existing()
            paths = [s["path"] for s in man["sources"]]
            gone = [p for p in paths if not Path(p).is_file()]
            if gone:
                raise BenchError(f"cannot rebuild the results history in {self.folder}: its source {gone[0]} is gone"
                                 + (f" (and {len(gone) - 1} more)" if len(gone) > 1 else ""))
            sources = [Source(p, file_sha256(p)) for p in paths]
            counts = self._merge(man, read_sources(sources, problems), sources, fresh=True)
            counts.changed_files = [s.path for s, old in zip(sources, man["sources"], strict=True)
                                    if s.sha256 != old["sha256"]]
            return counts

    def _merge(self, man: dict, records: Iterable[dict], sources: Sequence[Source], fresh: bool) -> IngestCounts:
        """Add `records` to the history of `man` (to an empty one if `fresh`), write the changed segments and
        then the manifest. Nothing is written until every record has been read."""
        counts = IngestCounts()
        with self._duck("write") as con:
            src, params = self._source(con, None if fresh else man)
            counts.read = _load(con, records)
            # one record per case of those read: the newest, then the larger digest (the module's rule)
            con.execute("""
                CREATE TEMP TABLE batch AS
                SELECT * FROM (SELECT * REPLACE (TRY_CAST(utc AS TIMESTAMP) AS utc), md5(record) AS digest
                               FROM incoming)
                QUALIFY row_number() OVER (PARTITION BY run_id, case_id
                                           ORDER BY utc DESC NULLS LAST, digest DESC) = 1""")
            con.execute(f"""
                CREATE TEMP TABLE decided AS
                SELECT b.run_id, b.case_id, e.filename AS old_file,
                       CASE WHEN e.run_id IS NULL THEN 'added'
                            WHEN e.digest = b.digest THEN 'unchanged'
                            WHEN b.utc > e.utc OR (b.utc IS NOT NULL AND e.utc IS NULL)
                              OR (b.utc IS NOT DISTINCT FROM e.utc AND b.digest > e.digest) THEN 'replaced'
                            ELSE 'older' END AS action
                FROM batch b LEFT JOIN (SELECT run_id, case_id, utc, digest, filename FROM {src}) e
                  ON b.run_id = e.run_id AND b.case_id = e.case_id""", params)
            for action, n in con.execute("SELECT action, count(*) FROM decided GROUP BY action").fetchall():
                setattr(counts, action, n)
            before = 0 if fresh else con.execute(f"SELECT count(*) FROM {src}", params).fetchone()[0]
            counts.rows = before + counts.added
            nxt = man["next_segment"]
            segments = [] if fresh else list(man["segments"])
            dropped: list[str] = []
            # segments holding a case that a newer record replaces are written again without it
            touched = [] if fresh else [r[0] for r in con.execute(
                "SELECT DISTINCT old_file FROM decided WHERE action = 'replaced' ORDER BY 1").fetchall()]
            for path in touched:
                name = Path(path).name
                con.execute(f"""
                    CREATE OR REPLACE TEMP TABLE kept AS SELECT {', '.join(NAMES)} FROM read_parquet({_quote(path)})
                    ANTI JOIN (SELECT run_id, case_id FROM decided WHERE action = 'replaced') r
                    USING (run_id, case_id)""")
                segments.remove(name)
                dropped.append(name)
                if con.execute("SELECT count(*) FROM kept").fetchone()[0]:
                    new = f"seg-{nxt:06d}.parquet"
                    nxt += 1
                    _copy(con, "SELECT * FROM kept", self.folder / new)
                    segments.append(new)
            if counts.added or counts.replaced:
                new = f"seg-{nxt:06d}.parquet"
                nxt += 1
                _copy(con, f"""SELECT {', '.join(f'b.{n}' for n in NAMES)} FROM batch b JOIN decided d
                               ON b.run_id = d.run_id AND b.case_id = d.case_id
                               WHERE d.action IN ('added', 'replaced')""", self.folder / new)
                segments.append(new)
        known = {} if fresh else {s["path"]: s for s in man["sources"]}
        known.update({s.path: {"path": s.path, "sha256": s.sha256, "records": s.records} for s in sources})
        counts.sources = len(known)
        if fresh:
            dropped = list(man["segments"])
        new_man = {**man, "next_segment": nxt, "segments": segments, "sources": [known[k] for k in sorted(known)]}
        if new_man != man or fresh:
            try:
                self._write_manifest(new_man)
            except OSError as exc:
                raise BenchError(f"cannot write the results history in {self.folder}: {exc.strerror or exc}") from None
            for name in dropped:
                if name not in segments:
                    with contextlib.suppress(OSError):
                        (self.folder / name).unlink()
        return counts

    # -- reading --

    def records(self, filters: Filters | None = None) -> list[dict]:
        man = self._existing()
        where, fparams = (filters or Filters()).where()
        with self._duck("read") as con:
            src, params = self._source(con, man)
            rows = con.execute(f"SELECT record FROM {src} WHERE {where} ORDER BY utc NULLS FIRST, run_id, case_id",
                               {**params, **fparams}).fetchall()
        return [upgrade(json.loads(r[0])) for r in rows]

    def summary(self, filters: Filters | None = None, keys: Sequence[str] = SUMMARY_KEYS) -> list[dict]:
        man = self._existing()
        where, fparams = (filters or Filters()).where()
        keys = _summary_keys(keys)
        with self._duck("read") as con:
            src, params = self._source(con, man)
            cur = con.execute(f"""
                SELECT {', '.join(keys)}, count(DISTINCT run_id) AS runs, count(*) AS records,
                       median(tokens_per_s) AS tokens_per_s, min(utc) AS first, max(utc) AS last
                FROM {src} WHERE status = 'ok' AND tokens_per_s IS NOT NULL AND {where}
                GROUP BY {', '.join(keys)} ORDER BY {', '.join(k + ' NULLS FIRST' for k in keys)}""",
                              {**params, **fparams})
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
        return [{k: (v.isoformat() if isinstance(v, dt.datetime) else float(v) if k == "tokens_per_s" else v)
                 for k, v in zip(names, row, strict=True)} for row in rows]

    def checksum(self) -> str:
        """sha256 over one line per row, `run_id US case_id US digest LF` (US: the unit separator, 0x1f), the rows
        sorted by (run_id, case_id): the record's content through its digest, and the same for the same rows
        whichever files and segments hold them. Computed by DuckDB (the Python of it is in the tests)."""
        man = self._existing()
        with self._duck("read") as con:
            src, params = self._source(con, man)
            (digest,) = con.execute(f"""
                SELECT sha256(coalesce(string_agg(run_id || chr(31) || case_id || chr(31) || digest || chr(10), ''
                                                  ORDER BY run_id, case_id), '')) FROM {src}""", params).fetchone()
        return "sha256:" + digest

    def info(self) -> dict:
        """Where the history is, its records, segments, sources and size on disk."""
        man = self._existing()
        with self._duck("read") as con:
            src, params = self._source(con, man)
            rows = con.execute(f"SELECT count(*) FROM {src}", params).fetchone()[0]
        size = sum((self.folder / s).stat().st_size for s in man["segments"] if (self.folder / s).exists())
        return {"location": self.location, "records": rows, "segments": len(man["segments"]),
                "storage": f"{len(man['segments'])} Parquet file(s)", "sources": [s["path"] for s in man["sources"]],
                "bytes": size}

    def rows(self, batch: int = 50_000) -> Iterator[tuple]:
        man = self._existing()
        with self._duck("read") as con:
            src, params = self._source(con, man)
            con.execute(f"SELECT {', '.join(NAMES)} FROM {src} ORDER BY run_id, case_id", params)
            while chunk := con.fetchmany(batch):
                yield from chunk


def _summary_keys(keys: Sequence[str]) -> list[str]:
    """`keys` checked against the columns (they become SQL): a ValueError for any other name."""
    bad = [k for k in keys if k not in NAMES or k in ("record", "digest")]
    if bad or not keys:
        raise ValueError(f"not summary keys: {bad or 'none'}")
    return list(keys)


def _quote(path: str | os.PathLike) -> str:
    """An SQL string literal (DuckDB COPY takes no parameters for its file name)."""
    return "'" + os.fspath(path).replace("'", "''") + "'"


def _copy(con: duckdb.DuckDBPyConnection, select: str, path: Path) -> None:
    """Rows to a Parquet file, in a fixed order (time, then case) so that time filters skip row groups."""
    con.execute(f"COPY ({select} ORDER BY utc NULLS FIRST, run_id, case_id) TO {_quote(path)} "
                "(FORMAT parquet, COMPRESSION zstd)")


def _load(con: duckdb.DuckDBPyConnection, records: Iterable[dict]) -> int:
    """Records into the temp table `incoming`, in batches; the number of records."""
    import pandas as pd  # here: pandas is heavy, and only the writers need it

    types = {n: t for n, t in COLUMNS}
    cols = ", ".join(f"{n} {'VARCHAR' if n == 'utc' else types[n]}" for n in _INPUT)
    con.execute(f"CREATE TEMP TABLE incoming ({cols})")
    dtypes = {n: ("Int64" if types[n] == "BIGINT" else "Float64" if types[n] == "DOUBLE" else "string")
              for n in _INPUT}
    n = 0
    batch: list[dict] = []

    def flush() -> None:
        frame = pd.DataFrame({c: pd.array([r[c] for r in batch], dtype=dtypes[c]) for c in _INPUT})
        con.register("frame", frame)
        con.execute(f"INSERT INTO incoming SELECT {', '.join(_INPUT)} FROM frame")
        con.unregister("frame")
        batch.clear()

    for row in history_rows(records):
        batch.append(row)
        n += 1
        if len(batch) >= _BATCH:
            flush()
    if batch:
        flush()
    return n


def history_rows(records: Iterable[dict]) -> Iterator[dict[str, Any]]:
    """Each record in the current schema, flattened (without `digest`); a record of no known schema is a
    ValueError (read_records hands over only records of a known schema)."""
    for rec in records:
        rec = upgrade(rec)
        if not isinstance(rec, dict) or rec.get("schema") != CURRENT or not isinstance(rec.get("run_id"), str) \
                or not isinstance(rec.get("case_id"), str):
            raise ValueError("not a result record of a known schema")
        yield flatten(rec)


# ---- JSONL files in ----------------------------------------------------------------------------------------

def jsonl_files(paths: Iterable[str | os.PathLike]) -> list[tuple[Path, list[Path]]]:
    """Each given path with its result files (a folder: its *.jsonl, sorted); a missing path, or a folder
    without any, is a BenchError."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            files = sorted(f for f in p.glob("*.jsonl") if f.is_file())
            if not files:
                raise BenchError(f"no result files (*.jsonl) in {p}")
            out.append((p, files))
        elif p.is_file():
            out.append((p, [p]))
        else:
            raise BenchError(f"no such results file or folder: {p}")
    return out


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    except OSError as exc:
        raise BenchError(f"cannot read {path}: {exc.strerror or exc}") from None
    return h.hexdigest()


def read_sources(sources: Iterable[Source], problems: list[str]) -> Iterator[dict]:
    """The records of each file in turn (read_records: a case's last line in a file, bad lines in `problems`),
    counted into its Source."""
    for src in sources:
        src.records = 0
        for rec in read_records([src.path], problems):
            src.records += 1
            yield rec


def ingest_paths(store: HistoryStore, paths: Iterable[str | os.PathLike], problems: list[str]) -> IngestCounts:
    """Ingest result files and folders into `store`. A file the store holds with the same sha256 is not read
    again; a given path without any record is a BenchError, raised before anything is written."""
    groups = jsonl_files(paths)
    held = store.sources()
    todo: list[tuple[Path, list[Source], int]] = []
    skipped = 0
    for given, files in groups:
        fresh, known = [], 0
        for f in files:
            src = Source(str(f.resolve()), file_sha256(f))
            old = held.get(src.path)
            if old is not None and old.sha256 == src.sha256:
                skipped += 1
                known += old.records
            else:
                fresh.append(src)
        todo.append((given, fresh, known))

    def records() -> Iterator[dict]:
        for given, fresh, known in todo:
            yield from read_sources(fresh, problems)
            if not known and not any(s.records for s in fresh):
                raise BenchError(f"no result records in {given}")

    counts = store.ingest(records(), [s for _, fresh, _ in todo for s in fresh])
    counts.skipped_files = skipped
    return counts


def history_records(db_dir: str | os.PathLike | None = None, filters: Filters | None = None) -> list[dict]:
    """Records from the history in `db_dir` (a folder, default: default_dir(), or a postgresql:// URL) that match
    `filters`, oldest first, in the current schema: input for reports and comparisons, as read_records is for
    JSONL files."""
    return open_store(db_dir).records(filters)
