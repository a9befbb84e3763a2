"""The results history in PostgreSQL, for a team: the same rows, by the same rule, as the embedded history
(tritbench.results.history), through SQLAlchemy 2 and psycopg 3, its tables made and upgraded by Alembic.

    postgresql://user@host:port/db    (postgres:// and postgresql+psycopg:// too; a password is better kept in
                                       PGPASSWORD or ~/.pgpass than in the URL)

Tables (migrations/versions/): `tritbench_records`, one row per (run_id, case_id) with the embedded history's
columns but the record, which `tritbench_record_json` holds beside it (so that queries scan narrow rows);
`tritbench_sources`, the result files ingested (path on the ingesting machine, sha256, records); and Alembic's
`tritbench_history_version`.

Only the writers (ingest, rebuild, push) change anything, and they first bring the tables to this tritbench's
revision; readers run in read-only transactions and refuse a database of another revision. A write is one
transaction: the records are copied into a temporary table as they are read (several writers may do so at
once), then, holding the history's advisory lock (one merge at a time, so that the counts are exact), merged by
INSERT ... ON CONFLICT DO UPDATE ... WHERE the incoming record wins by the embedded history's rule (the newer
`timestamp`, then the larger md5 of the canonical JSON). Nothing is kept of a write that fails.

A password in the URL is never printed: `location` and every message show it as ***."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from tritbench.errors import BenchError
from tritbench.results.history import (
    COLUMNS,
    NAMES,
    SUMMARY_KEYS,
    Filters,
    HistoryStore,
    IngestCounts,
    Source,
    _one_line,
    _summary_keys,
    file_sha256,
    history_rows,
    read_sources,
)
from tritbench.results.upgrade import upgrade

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "tritbench_history_version"  # not alembic_version: a team's database may hold other migrations
SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
_SECRET_KEYS = ("password", "sslpassword")  # connection options that are secrets when given in the URL's query
# the one advisory lock of the history: writers merge, and migrate, one at a time
_LOCK = int.from_bytes(hashlib.sha256(b"tritbench.history").digest()[:8], "big", signed=True)
_KEYS = ("run_id", "case_id")
_FACTS = [n for n in NAMES if n != "record"]  # the columns of tritbench_records

# Text in the "C" collation (byte order, as DuckDB compares), so that the rule and the order match the Parquet store.
_TYPES = {"VARCHAR": sa.Text(collation="C"), "TIMESTAMP": sa.DateTime(), "BIGINT": sa.BigInteger(),
          "DOUBLE": sa.Double()}
_SQL_TYPES = {"VARCHAR": 'text COLLATE "C"', "TIMESTAMP": "timestamp", "BIGINT": "bigint", "DOUBLE": "double precision"}
_META = sa.MetaData()
RECORDS = sa.Table("tritbench_records", _META, *(sa.Column(n, _TYPES[t]) for n, t in COLUMNS if n != "record"))
RECORD_JSON = sa.Table("tritbench_record_json", _META, *(sa.Column(n, _TYPES["VARCHAR"]) for n in (*_KEYS, "record")))
SOURCES = sa.Table("tritbench_sources", _META, sa.Column("path", _TYPES["VARCHAR"]),
                   sa.Column("sha256", _TYPES["VARCHAR"]), sa.Column("records", sa.BigInteger()))
_BATCH = sa.table("batch", *(sa.column(n) for n in NAMES))  # the incoming records, one per case
_same_case = sa.and_(RECORD_JSON.c.run_id == RECORDS.c.run_id, RECORD_JSON.c.case_id == RECORDS.c.case_id)


def mask(text: str) -> str:
    """A URL-like text with any password in it shown as *** (for messages about text that is not a valid URL)."""
    text = re.sub(r"(://[^/@:?#]*:)[^@/?#]*@", r"\1***@", text)
    return re.sub(r"(?i)\b((?:ssl)?password=)[^&\s]*", r"\1***", text)


def parse_url(text: str) -> tuple[URL, str]:
    """A postgresql:// URL as SQLAlchemy's URL (psycopg driver) and as shown to the user (password as ***, secret
    query options left out); a BenchError in one line for anything else."""
    m = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", text)
    usage = "(postgresql://user@host:port/db)"
    if m is None or m.group(1).lower() not in SCHEMES:
        raise BenchError(f"not a PostgreSQL URL: {mask(text)!r} {usage}")
    try:
        url = make_url(text)
        port = url.port
    except (ValueError, sa.exc.ArgumentError):  # a port that is not a number, a broken [IPv6] host
        raise BenchError(f"not a PostgreSQL URL: {mask(text)!r} {usage}") from None
    if port is not None and not 0 < port < 65536:
        raise BenchError(f"not a PostgreSQL URL: {mask(text)!r}: port {port} is out of range")
    query = {k: v for k, v in url.query.items() if k.lower() not in _SECRET_KEYS}
    shown = url.set(drivername=m.group(1).lower(), query=query).render_as_string(hide_password=True)
    return url.set(drivername="postgresql+psycopg"), shown


@functools.lru_cache(maxsize=1)
def _script():
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS))


def head_revision() -> str:
    """The schema revision this tritbench writes and reads."""
    return _script().get_current_head()


def _known_revisions() -> set[str]:
    return {s.revision for s in _script().walk_revisions()}


def _wins(new: Any, old: Any) -> sa.ColumnElement[bool]:
    """Whether the record `new` replaces `old` of the same case (columns of each): the embedded history's rule,
    newer utc (a time beats none), then, at the same time, the larger digest."""
    return sa.or_(new.utc > old.utc, sa.and_(new.utc.is_not(None), old.utc.is_(None)),
                  sa.and_(new.utc.is_not_distinct_from(old.utc), new.digest > old.digest))


def _clean(value: object) -> object:
    """A text as PostgreSQL can store it: no NUL, no lone surrogate (each made U+FFFD); anything else as it is."""
    if not isinstance(value, str) or (value.isascii() and "\x00" not in value):  # the common case, without copies
        return value
    return re.sub("[\x00\ud800-\udfff]", "\ufffd", value)


def _row(values: Sequence) -> tuple:
    """A row (NAMES order) ready for COPY, its text cleaned but the ids: an id PostgreSQL cannot hold is an
    error, since cleaned it would name another case (the record's JSON escapes both, and is kept whole)."""
    row = tuple(values)
    for i in (0, 1):
        if _clean(row[i]) != row[i]:
            raise BenchError(f"cannot store the case {row[0]!r}/{row[1]!r} in PostgreSQL: its ids hold a NUL "
                             "character or a lone surrogate")
    return row[:2] + tuple(_clean(v) for v in row[2:])


def record_rows(records: Iterable[dict]) -> Iterator[tuple]:
    """Records as history rows (NAMES order), `digest` computed as DuckDB does: md5 of the canonical JSON."""
    for flat in history_rows(records):
        text = flat["record"]
        yield _row([*(flat[n] for n in NAMES[:-1]), hashlib.md5(text.encode()).hexdigest()])


class PostgresStore:
    """The results history in a PostgreSQL database (module docstring)."""

    def __init__(self, url: str):
        self.url, self.location = parse_url(url)
        self._secrets = [s for s in (self.url.password, *(v for k, v in self.url.query.items()
                                                           if k.lower() in _SECRET_KEYS)) if isinstance(s, str) and s]
        self._engine: sa.Engine | None = None

    # -- connections and errors --

    def _why(self, exc: BaseException) -> str:
        """A database error as one line, without the password."""
        text = _one_line(getattr(exc, "orig", None) or exc)
        text = re.sub(r"^connection failed: ", "", text).replace("FATAL:  ", "")
        if "no password supplied" in text:
            text += " (give it in PGPASSWORD or ~/.pgpass)"
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    @contextlib.contextmanager
    def _connect(self, doing: str, write: bool = False) -> Iterator[sa.Connection]:
        """A connection (read-only unless `write`); database and connection errors as one-line BenchErrors."""
        import psycopg

        if self._engine is None:
            args: dict[str, Any] = {"application_name": "tritbench"}
            if "connect_timeout" not in self.url.query:
                args["connect_timeout"] = 10  # an unreachable host fails in seconds, not minutes
            self._engine = sa.create_engine(self.url, poolclass=NullPool, connect_args=args)
        errors = (sa.exc.SQLAlchemyError, psycopg.Error)
        try:
            conn = self._engine.connect()
        except errors as exc:
            raise BenchError(f"cannot connect to the results history in {self.location}: {self._why(exc)}") from None
        try:
            with conn:
                if not write:
                    conn.execution_options(postgresql_readonly=True)
                yield conn
        except errors as exc:
            raise BenchError(f"cannot {doing} the results history in {self.location}: {self._why(exc)}") from None

    # -- the schema: Alembic --

    def _revision(self, conn: sa.Connection) -> str | None:
        from alembic.runtime.migration import MigrationContext

        return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()

    def _newer(self, rev: str) -> BenchError:
        return BenchError(f"the results history in {self.location} was made by a newer tritbench (schema revision "
                          f"{rev}; this one knows up to {head_revision()}): upgrade tritbench")

    def _require(self, conn: sa.Connection) -> str:
        """Readers: the history exists and is at this tritbench's revision."""
        rev = self._revision(conn)
        if rev is None:
            raise BenchError(f"no results history in {self.location} (`bench db ingest RESULTS... --store URL` or "
                             "`bench db push --store URL` makes one)")
        if rev != head_revision():
            if rev not in _known_revisions():
                raise self._newer(rev)
            raise BenchError(f"the results history in {self.location} is at schema revision {rev}, this tritbench "
                             f"reads {head_revision()}: `bench db ingest` or `bench db push` with it upgrades the "
                             "history")
        return rev

    def _lock(self, conn: sa.Connection) -> None:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK})

    def _migrate(self, conn: sa.Connection) -> None:
        """Writers: make or upgrade the tables to this tritbench's revision, in the caller's transaction."""
        self._lock(conn)
        rev = self._revision(conn)
        if rev == head_revision():
            return
        if rev is not None and rev not in _known_revisions():
            raise self._newer(rev)
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
        cfg.attributes.update(connection=conn, version_table=VERSION_TABLE)
        command.upgrade(cfg, "head")

    # -- writing --

    def ingest(self, records: Iterable[dict], sources: Sequence[Source] = ()) -> IngestCounts:
        return self.ingest_rows(record_rows(records), sources)

    def ingest_rows(self, rows: Iterable[Sequence], sources: Sequence[Source] = ()) -> IngestCounts:
        """Add history rows (NAMES order, `digest` included), read from `sources`; idempotent on (run_id, case_id)."""
        with self._connect("write", write=True) as conn:
            with conn.begin():
                self._migrate(conn)
            with conn.begin():
                read = self._stage(conn, rows)
                self._lock(conn)  # after the copy: writers read their files at once, and merge in turn
                return self._merge(conn, read, sources)

    def rebuild(self, problems: list[str] | None = None) -> IngestCounts:
        problems = problems if problems is not None else []
        with self._connect("rebuild", write=True) as conn, conn.begin():
            self._lock(conn)  # for the whole rebuild: no ingest may slip in between the reading and the truncation
            if self._revision(conn) is None:
                self._require(conn)  # raises: there is no history to rebuild
            self._migrate(conn)
            old = {p: sha for p, sha in conn.execute(sa.select(SOURCES.c.path, SOURCES.c.sha256)
                                                     .order_by(SOURCES.c.path))}
            gone = [p for p in old if not Path(p).is_file()]
            if gone:
                raise BenchError(f"cannot rebuild the results history in {self.location}: its source {gone[0]} is "
                                 "gone" + (f" (and {len(gone) - 1} more)" if len(gone) > 1 else ""))
            sources = [Source(p, file_sha256(p)) for p in old]
            conn.execute(sa.text("TRUNCATE tritbench_records, tritbench_record_json, tritbench_sources"))
            read = self._stage(conn, record_rows(read_sources(sources, problems)))
            counts = self._merge(conn, read, sources)
            counts.changed_files = [s.path for s in sources if s.sha256 != old[s.path]]
            return counts

    def _stage(self, conn: sa.Connection, rows: Iterable[Sequence]) -> int:
        """Rows into the temporary table `incoming` by COPY, as they come; the number of rows."""
        cols = ", ".join(f'"{n}" {_SQL_TYPES[t]}' for n, t in COLUMNS)
        conn.execute(sa.text(f"CREATE TEMP TABLE incoming ({cols}) ON COMMIT DROP"))
        n = 0
        names = ", ".join(f'"{n}"' for n in NAMES)
        with conn.connection.driver_connection.cursor() as cur:
            with cur.copy(f"COPY incoming ({names}) FROM STDIN") as cp:
                for row in rows:
                    cp.write_row(row)
                    n += 1
        return n

    def _merge(self, conn: sa.Connection, read: int, sources: Sequence[Source]) -> IngestCounts:
        """`incoming` into the history (the lock held): one record per case of those read, by the rule, then the
        INSERT ... ON CONFLICT that keeps, of it and the history's, the one the rule picks, and the record of each
        row it wrote."""
        counts = IngestCounts(read=read)
        conn.execute(sa.text("CREATE TEMP TABLE batch ON COMMIT DROP AS SELECT DISTINCT ON (run_id, case_id) * "
                             "FROM incoming ORDER BY run_id, case_id, utc DESC NULLS LAST, digest DESC"))
        b, e = _BATCH.alias("b"), RECORDS.alias("e")
        action = sa.case((e.c.run_id.is_(None), "added"), (e.c.digest == b.c.digest, "unchanged"),
                         (_wins(b.c, e.c), "replaced"), else_="older")
        found = sa.and_(e.c.run_id == b.c.run_id, e.c.case_id == b.c.case_id)
        for what, n in conn.execute(sa.select(action, sa.func.count()).select_from(b.outerjoin(e, found))
                                    .group_by(action)):
            setattr(counts, what, n)
        ins = pg_insert(RECORDS).from_select(_FACTS, sa.select(*(_BATCH.c[n] for n in _FACTS)))
        won = ins.on_conflict_do_update(index_elements=list(_KEYS), set_={n: ins.excluded[n] for n in _FACTS[2:]},
                                        where=_wins(ins.excluded, RECORDS.c)).returning(*RECORDS.c[_KEYS]).cte("won")
        written = sa.select(b.c.run_id, b.c.case_id, b.c.record).join(
            won, sa.and_(won.c.run_id == b.c.run_id, won.c.case_id == b.c.case_id))
        ins = pg_insert(RECORD_JSON).from_select(list(RECORD_JSON.c.keys()), written)
        conn.execute(ins.on_conflict_do_update(index_elements=list(_KEYS), set_={"record": ins.excluded.record}))
        known = {s.path: s for s in sources}  # a file given twice: once
        if known:
            ins = pg_insert(SOURCES).values([{"path": _clean(s.path), "sha256": s.sha256, "records": s.records}
                                             for s in known.values()])
            conn.execute(ins.on_conflict_do_update(index_elements=["path"], set_={
                "sha256": ins.excluded.sha256, "records": ins.excluded.records}))
        counts.rows = conn.execute(sa.select(sa.func.count()).select_from(RECORDS)).scalar_one()
        counts.sources = conn.execute(sa.select(sa.func.count()).select_from(SOURCES)).scalar_one()
        return counts

    # -- reading --

    def sources(self) -> dict[str, Source]:
        with self._connect("read") as conn:
            rev = self._revision(conn)
            if rev is None:
                return {}
            if rev not in _known_revisions():
                raise self._newer(rev)
            rows = conn.execute(sa.select(SOURCES.c.path, SOURCES.c.sha256, SOURCES.c.records)).all()
        return {p: Source(p, sha, n) for p, sha, n in rows}

    def _where(self, filters: Filters | None) -> list[sa.ColumnElement[bool]]:
        """The conditions of `filters` (as Filters.where says them for DuckDB)."""
        f, c, terms = filters or Filters(), RECORDS.c, []
        if f.machine is not None:
            terms.append(sa.or_(sa.false(), *(sa.or_(c.machine_id == m, sa.func.strpos(sa.func.lower(c.machine_cpu),
                                                                                        m.lower()) > 0)
                                              for m in f.machine)))
        if f.model is not None:
            terms.append(sa.or_(c.model_name.in_(list(f.model)), c.model_format.in_(list(f.model))))
        if f.backend is not None:
            terms.append(c.backend_name.in_(list(f.backend)))
        if f.since is not None:
            terms.append(c.utc >= f.since_utc())
        return terms

    def records(self, filters: Filters | None = None) -> list[dict]:
        c = RECORDS.c
        query = (sa.select(RECORD_JSON.c.record).select_from(RECORDS.join(RECORD_JSON, _same_case))
                 .where(*self._where(filters)).order_by(c.utc.asc().nulls_first(), c.run_id, c.case_id))
        with self._connect("read") as conn:
            self._require(conn)
            return [upgrade(json.loads(text)) for text in conn.execution_options(yield_per=5000).scalars(query)]

    def summary(self, filters: Filters | None = None, keys: Sequence[str] = SUMMARY_KEYS) -> list[dict]:
        c = RECORDS.c
        keys = [c[k] for k in _summary_keys(keys)]
        query = (sa.select(*keys, sa.func.count(sa.distinct(c.run_id)).label("runs"), sa.func.count().label("records"),
                           sa.func.percentile_cont(0.5).within_group(c.tokens_per_s).label("tokens_per_s"),
                           sa.func.min(c.utc).label("first"), sa.func.max(c.utc).label("last"))
                 .where(c.status == "ok", c.tokens_per_s.is_not(None), *self._where(filters))
                 .group_by(*keys).order_by(*(k.asc().nulls_first() for k in keys)))
        with self._connect("read") as conn:
            self._require(conn)
            result = conn.execute(query)
            names, rows = list(result.keys()), result.all()
        return [{k: (v.isoformat() if hasattr(v, "isoformat") else float(v) if k == "tokens_per_s" else v)
                 for k, v in zip(names, row, strict=True)} for row in rows]

    def checksum(self) -> str:
        """As ParquetStore.checksum: sha256 over `run_id US case_id US digest LF` per row, in (run_id, case_id)
        order (byte order: the "C" collation)."""
        c = RECORDS.c
        h = hashlib.sha256()
        with self._connect("read") as conn:
            self._require(conn)
            result = conn.execution_options(yield_per=50_000).execute(
                sa.select(c.run_id, c.case_id, c.digest).order_by(c.run_id, c.case_id))
            for part in result.partitions():
                h.update("".join(f"{r}\x1f{k}\x1f{d}\n" for r, k, d in part).encode())
        return "sha256:" + h.hexdigest()

    def info(self) -> dict:
        with self._connect("read") as conn:
            rev = self._require(conn)
            rows = conn.execute(sa.select(sa.func.count()).select_from(RECORDS)).scalar_one()
            paths = conn.execute(sa.select(SOURCES.c.path).order_by(SOURCES.c.path)).scalars().all()
            size = conn.execute(sa.text("SELECT pg_total_relation_size('tritbench_records') + "
                                        "pg_total_relation_size('tritbench_record_json') + "
                                        "pg_total_relation_size('tritbench_sources')")).scalar_one()
        return {"location": self.location, "records": rows, "segments": 1,
                "storage": f"PostgreSQL (table tritbench_records, schema revision {rev})", "sources": list(paths),
                "bytes": size}

    def rows(self, batch: int = 50_000) -> Iterator[tuple]:
        c = RECORDS.c
        with self._connect("read") as conn:
            self._require(conn)
            result = conn.execution_options(yield_per=batch).execute(
                sa.select(*(RECORD_JSON.c.record if n == "record" else c[n] for n in NAMES))
                .select_from(RECORDS.join(RECORD_JSON, _same_case)).order_by(c.run_id, c.case_id))
            for part in result.partitions():
                yield from (tuple(r) for r in part)


def push(source: HistoryStore, target: PostgresStore) -> IngestCounts:
    """Replay the history `source` (the embedded one) into `target`: its rows as they are (so the checksums agree)
    and its source files; idempotent, and what is newer in `target` stays."""
    rows = source.rows()
    first = next(rows, None)  # a missing history is an error before anything is written to `target`
    rows = (_row(r) for r in chain([first], rows)) if first is not None else iter(())
    return target.ingest_rows(rows, list(source.sources().values()))
