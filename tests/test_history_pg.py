"""The results history in PostgreSQL (tritbench.results.postgres, `--store postgresql://...`), against a real
server these tests start on a loopback port: Alembic migrations, idempotent ingest, the same rows as the Parquet
store, query, push, compare and gate --baseline from the store, and bad input as one line with exit code 2.

The server is Debian's PostgreSQL (initdb and pg_ctl, run as the `postgres` user when we are root, since the
server refuses to run as root), installed with apt-get when missing and we are root; stopped by its pid at the
end. Where it cannot start the tests skip with the install line, except under CI=true, where they fail."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tritbench.results.history import Filters, ParquetStore, canonical, ingest_paths, open_store
from tritbench.results.postgres import PostgresStore, head_revision, push
from tritbench.results.records import SCHEMA, read_records

from .conftest import bench_in_process as bench_
from .conftest import import_or_skip, one_line_error, skip_or_fail
from .sshd import free_port
from .test_compare import a_and_b
from .test_history import golden_file, rec, two_runs, write

psycopg = import_or_skip("psycopg")

INSTALL = "apt-get install -y postgresql"
USER, PASSWORD = "tritbench", "pg-Secret-7f3a"  # the password must never show in any output


# ---- a real server on loopback -----------------------------------------------------------------------------

def pg_bindir() -> Path | None:
    """Debian's server binaries (the newest version), else those on PATH; None when initdb or pg_ctl is missing."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    initdb = found[-1] if found else shutil.which("initdb")
    folder = Path(initdb).parent if initdb else None
    return folder if folder and (folder / "pg_ctl").exists() else None


def install_postgres() -> None:
    """apt-get install postgresql, when we are root with apt-get (apt-get update once first)."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=600, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql"], capture_output=True, timeout=900, env=env)


@dataclass
class PgServer:
    root: Path  # data, socket, log
    port: int
    pid: int

    def url(self, db: str, password: str = PASSWORD, scheme: str = "postgresql") -> str:
        return f"{scheme}://{USER}:{password}@127.0.0.1:{self.port}/{db}"

    def admin(self, db: str = "postgres"):
        return psycopg.connect(host="127.0.0.1", port=self.port, user=USER, password=PASSWORD, dbname=db,
                               autocommit=True)

    def running(self) -> bool:
        try:
            state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state != "Z"  # not our child: nobody may reap it

    def stop(self) -> None:
        """Immediate shutdown by the postmaster's pid (its data is thrown away: no checkpoint needed), then its
        files removed."""
        for sig in (signal.SIGQUIT, signal.SIGKILL):
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + 15
            while self.running() and time.monotonic() < deadline:
                time.sleep(0.05)
            if not self.running():
                break
        shutil.rmtree(self.root, ignore_errors=True)


def _run(args: list[str], cwd: Path, as_user: dict) -> tuple[bool, str]:
    """(whether it succeeded, its last line of output)."""
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=cwd, **as_user)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, str(exc)
    lines = (done.stderr + done.stdout).strip().splitlines()
    return done.returncode == 0, lines[-1] if lines else f"{Path(args[0]).name} failed"


def start_server() -> PgServer:
    """initdb and pg_ctl start on a free loopback port; password (SCRAM) auth over TCP. Skips (or fails under
    CI) with the install line when it cannot."""
    bindir = pg_bindir()
    if bindir is None:
        install_postgres()
        bindir = pg_bindir()
    if bindir is None:
        skip_or_fail(f"PostgreSQL is not installed: {INSTALL}")
    # in /tmp, not pytest's tmp_path: the postgres user cannot enter root's private pytest folders
    root = Path(tempfile.mkdtemp(prefix="tritbench-pg-"))
    (root / "sock").mkdir()
    (root / "pw").write_text(PASSWORD + "\n")
    as_user: dict = {}
    if os.geteuid() == 0:  # the server refuses to run as root
        try:
            ids = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root)
            skip_or_fail(f"PostgreSQL needs the postgres user to run as: {INSTALL}")
        for p in (root, root / "sock", root / "pw"):
            os.chown(p, ids.pw_uid, ids.pw_gid)
        as_user = {"user": ids.pw_uid, "group": ids.pw_gid, "extra_groups": []}
    ok, why = _run([str(bindir / "initdb"), "-D", str(root / "data"), "-U", USER, f"--pwfile={root / 'pw'}",
                    "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync"],
                   root, as_user)
    for _ in range(3 if ok else 0):  # a port taken between free_port() and the start: another one
        port = free_port()
        opts = (f"-p {port} -k {root / 'sock'} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off")
        ok, why = _run([str(bindir / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(root / "data"),
                        "-l", str(root / "log"), "-o", opts], root, as_user)
        pidfile = root / "data" / "postmaster.pid"
        if ok and pidfile.exists():
            return PgServer(root, port, int(pidfile.read_text().split()[0]))
        log = (root / "log").read_text(errors="replace").strip().splitlines() if (root / "log").exists() else []
        why = log[-1] if log else why
    shutil.rmtree(root, ignore_errors=True)
    skip_or_fail(f"PostgreSQL cannot start here ({why}): {INSTALL}")


@pytest.fixture(scope="module")
def server():
    srv = start_server()
    yield srv
    srv.stop()


_names = itertools.count()


@pytest.fixture()
def pg(server) -> str:
    """The URL of a new, empty database."""
    name = f"history_{next(_names)}"
    with server.admin() as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server.url(name)


def bench(args: list, monkeypatch, capsys) -> tuple[int, str, str]:
    """bench_in_process, and the password never in what it printed."""
    code, out, err = bench_(args, monkeypatch, capsys)
    assert PASSWORD not in out and PASSWORD not in err
    return code, out, err


def tables(server: PgServer, url: str) -> dict:
    with server.admin(url.rsplit("/", 1)[1]) as conn:
        names = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        version = (conn.execute("SELECT version_num FROM tritbench_history_version").fetchall()
                   if "tritbench_history_version" in names else None)
    return {"tables": names, "version": version}


@pytest.fixture()
def runs(tmp_path) -> Path:
    return two_runs(tmp_path)


# ---- migrations ----------------------------------------------------------------------------------------------

def test_the_first_write_applies_the_migrations_and_reads_need_them(server, pg, runs, monkeypatch, capsys):
    code, _, err = bench(["db", "info", "--store", pg], monkeypatch, capsys)
    one_line_error(code, err, "no results history in postgresql://tritbench:***@127.0.0.1:")
    assert tables(server, pg)["tables"] == set()  # a reader creates nothing
    code, out, err = bench(["db", "ingest", runs, "--store", pg], monkeypatch, capsys)
    assert code == 0, err
    assert "6 added" in out and f"history {server.url(pg.rsplit('/', 1)[1], '***')}: 6 records" in out
    got = tables(server, pg)
    assert got["tables"] == {"tritbench_records", "tritbench_record_json", "tritbench_sources",
                             "tritbench_history_version"}
    assert got["version"] == [(head_revision(),)] == [("0001",)]
    code, out, _ = bench(["db", "info", "--store", pg], monkeypatch, capsys)
    assert code == 0 and "6 records in PostgreSQL (table tritbench_records, schema revision 0001)" in out
    assert f"  {(runs / 'run-a.jsonl').resolve()}" in out


def test_a_history_of_a_newer_tritbench_is_refused(server, pg, runs, monkeypatch, capsys):
    bench(["db", "ingest", runs, "--store", pg], monkeypatch, capsys)
    with server.admin(pg.rsplit("/", 1)[1]) as conn:
        conn.execute("UPDATE tritbench_history_version SET version_num = '9999'")
    for args in (["db", "query", "--store", pg], ["db", "ingest", runs, "--store", pg]):
        code, _, err = bench(args, monkeypatch, capsys)
        one_line_error(code, err, "was made by a newer tritbench (schema revision 9999; this one knows up to 0001)")


# ---- ingest: idempotent, the same rows and rule as the Parquet store ----------------------------------------

def test_ingest_is_idempotent(pg, runs, tmp_path, monkeypatch, capsys):
    code, out, _ = bench(["db", "ingest", runs, "--store", pg], monkeypatch, capsys)
    assert code == 0 and "ingested 6 records: 6 added" in out
    code, out, _ = bench(["db", "ingest", runs, runs / "run-a.jsonl", "--store", pg], monkeypatch, capsys)
    assert code == 0 and "ingested 0 records (3 file(s) unchanged since ingested, not read): 0 added" in out
    store = open_store(pg)
    before = store.checksum()
    copy_ = write(tmp_path / "elsewhere" / "run-a.jsonl", read_records([runs / "run-a.jsonl"]))
    counts = ingest_paths(store, [copy_], [])
    assert (counts.read, counts.added, counts.unchanged, counts.rows, counts.sources) == (3, 0, 3, 6, 3)
    assert store.checksum() == before


def test_both_stores_hold_the_same_rows_for_the_same_files(pg, runs, tmp_path):
    newer = write(tmp_path / "later" / "run-a.jsonl", [rec("run-a", "a0", 99.0, ts="2026-12-02T10:00:00+00:00")])
    tie = write(tmp_path / "tie" / "run-a.jsonl", [rec("run-a", "a0", 98.0, ts="2026-12-02T10:00:00+00:00")])
    older = write(tmp_path / "older" / "run-b.jsonl", [rec("run-b", "b0", 1.0, machine="m2",
                                                           ts="2026-11-01T00:00:00+00:00")])
    stamped = rec("run-u", "u0", 3.0, ts="sometime")  # no readable time: any stamped record beats it
    unstamped = write(tmp_path / "u" / "run-u.jsonl", [stamped])
    restamped = write(tmp_path / "u2" / "run-u.jsonl", [rec("run-u", "u0", 4.0, ts="2026-01-01T00:00:00Z")])
    files = [runs / "run-a.jsonl", newer, runs / "run-b.jsonl", tie, older, unstamped, restamped,
             golden_file(SCHEMA)]
    parquet, postgres = ParquetStore(tmp_path / "db"), open_store(pg)
    for f in files:  # one file at a time into the one, in the other order into the other
        ingest_paths(parquet, [f], [])
    for f in reversed(files):
        ingest_paths(postgres, [f], [])
    assert list(postgres.rows()) == list(parquet.rows())
    assert postgres.checksum() == parquet.checksum()
    assert postgres.records() == parquet.records()
    got = {r["case_id"]: r["metrics"]["tokens_per_s"]["median"] for r in postgres.records(Filters(machine=["m1"]))}
    tied = {json.loads(f.read_text())["metrics"]["tokens_per_s"]["median"]: hashlib.md5(canonical(json.loads(
        f.read_text())).encode()).hexdigest() for f in (newer, tie)}
    assert got["a0"] == max(tied, key=tied.get)  # the same second: the larger digest
    assert got["u0"] == 4.0  # a readable time beats none
    one, two = parquet.summary(), postgres.summary()
    assert [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in one] == \
           [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in two]
    assert [r["tokens_per_s"] for r in two] == pytest.approx([r["tokens_per_s"] for r in one], rel=1e-12)


def test_the_same_counts_as_the_parquet_store(pg, runs, tmp_path):
    newer = write(tmp_path / "later" / "run-a.jsonl", [rec("run-a", "a0", 99.0, ts="2026-12-02T10:00:00+00:00"),
                                                        rec("run-a", "a9", 9.0)])
    older = write(tmp_path / "earlier" / "run-a.jsonl", [rec("run-a", "a0", 1.0, ts="2026-11-01T10:00:00+00:00")])
    parquet, postgres = ParquetStore(tmp_path / "db"), open_store(pg)
    tie = write(tmp_path / "tie" / "run-a.jsonl", [rec("run-a", "a0", 99.5, ts="2026-12-02T10:00:00+00:00")])
    newest = write(tmp_path / "newest" / "run-a.jsonl", [rec("run-a", "a9", 9.5, ts="2026-12-09T10:00:00+00:00")])
    for paths in ([runs], [newer], [older], [newer, older, runs], [tie, newest, older.parent]):
        a, b = ingest_paths(parquet, paths, []), ingest_paths(postgres, paths, [])
        assert (a.read, a.added, a.replaced, a.unchanged, a.older, a.rows, a.sources, a.skipped_files) == \
               (b.read, b.added, b.replaced, b.unchanged, b.older, b.rows, b.sources, b.skipped_files)
    assert (a.read, a.replaced + a.older, a.rows) == (2, 2, 7)  # a0 by the digest (either way), a9 by time


def test_a_failed_ingest_keeps_nothing(pg, runs, tmp_path, monkeypatch, capsys):
    write(tmp_path / "bad" / "run-x.jsonl", [{"not": "a record"}])
    code, _, err = bench(["db", "ingest", runs, tmp_path / "bad", "--store", pg], monkeypatch, capsys)
    assert code == 2 and f"no result records in {tmp_path / 'bad'}" in err.splitlines()[-1]
    assert "Traceback" not in err
    assert open_store(pg).info()["records"] == 0 and open_store(pg).sources() == {}


def test_writers_at_once(pg, tmp_path):
    """Four writers (threads, each its own connection) on a new database: one migrates, each merges in turn, and
    nothing is lost."""
    folders = []
    for w in range(4):
        folders.append(tmp_path / f"w{w}")
        write(folders[-1] / f"run-{w}.jsonl", [rec(f"run-{w}", f"c{i}", float(i + 1)) for i in range(50)])
        write(folders[-1] / "run-shared.jsonl", [rec("run-s", "s0", 5.0, ts=f"2026-12-0{w + 1}T00:00:00Z")])
    with ThreadPoolExecutor(4) as pool:
        counts = list(pool.map(lambda f: ingest_paths(PostgresStore(pg), [f], []), folders))
    assert sorted(c.added for c in counts) == [50, 50, 50, 51]  # the shared case: added once, then kept or replaced
    store = open_store(pg)
    assert store.info()["records"] == 201 and len(store.sources()) == 8
    (shared,) = [r for r in store.records() if r["run_id"] == "run-s"]
    assert shared["timestamp"] == "2026-12-04T00:00:00Z"  # the newest, whatever order the writers merged in


# ---- reading: query, report --------------------------------------------------------------------------------

def test_query_gives_what_the_embedded_history_gives(pg, runs, tmp_path, monkeypatch, capsys):
    db = tmp_path / "db"
    bench(["db", "ingest", runs, "--db", db], monkeypatch, capsys)
    bench(["db", "ingest", runs, "--store", pg], monkeypatch, capsys)
    for flags in ([], ["--machine", "cortex"], ["--model", "tern2"], ["--backend", "llamacpp"],
                  ["--since", "2026-12-05"], ["-o", "csv"], ["-o", "md", "--machine", "m1"]):
        args = ["db", "query", *flags] + ([] if "-o" in flags else ["-o", "json"])
        code, want, _ = bench([*args, "--db", db], monkeypatch, capsys)
        code2, got, _ = bench([*args, "--store", pg], monkeypatch, capsys)
        assert code == code2 == 0 and got == want, flags
    code, out, err = bench(["db", "query", "--store", pg, "--model", "nothing"], monkeypatch, capsys)
    assert code == 0 and out == "" and "no ok record" in err


def test_report_reads_the_store(pg, monkeypatch, capsys):
    bench(["db", "ingest", golden_file(SCHEMA), "--store", pg], monkeypatch, capsys)
    code, out, err = bench(["report", "--store", pg, "--format", "md"], monkeypatch, capsys)
    assert code == 0, err
    assert "tq2_0" in out and "4 record(s): 3 measured, 1 failed" in out


# ---- push and rebuild ----------------------------------------------------------------------------------------

def test_push_replays_the_embedded_history_idempotently(pg, runs, tmp_path, monkeypatch, capsys):
    db = tmp_path / "db"
    bench(["db", "ingest", runs, "--db", db], monkeypatch, capsys)
    bench(["db", "ingest", write(tmp_path / "n" / "run-a.jsonl", [rec("run-a", "a0", 50.0,
                                                                    ts="2026-12-03T00:00:00Z")]), "--db", db],
          monkeypatch, capsys)
    code, out, err = bench(["db", "push", "--db", db, "--store", pg], monkeypatch, capsys)
    assert code == 0, err
    assert out.splitlines() == [f"pushed 6 records from {db}: 6 added, 0 replaced by newer, 0 already held, 0 not "
                                "newer than the store's",
                                f"history {pg.replace(PASSWORD, '***')}: 6 records from 3 result file(s)"]
    code, out, _ = bench(["db", "push", "--db", db, "--store", pg], monkeypatch, capsys)
    assert code == 0 and "6 already held" in out and "6 records from 3 result file(s)" in out
    assert open_store(pg).checksum() == ParquetStore(db).checksum()
    assert list(open_store(pg).rows()) == list(ParquetStore(db).rows())
    # the files came along: ingesting them into the store reads nothing again
    code, out, _ = bench(["db", "ingest", runs, "--store", pg], monkeypatch, capsys)
    assert code == 0 and "2 file(s) unchanged since ingested, not read" in out
    code, _, err = bench(["db", "push", "--db", tmp_path / "none", "--store", pg], monkeypatch, capsys)
    one_line_error(code, err, f"no results history in {tmp_path / 'none'}")


def test_rebuild_gives_the_same_checksum(pg, runs, monkeypatch, capsys):
    bench(["db", "ingest", runs, "--store", pg], monkeypatch, capsys)
    before = open_store(pg).checksum()
    code, out, _ = bench(["db", "rebuild", "--store", pg], monkeypatch, capsys)
    assert code == 0 and f"checksum {before} (unchanged)" in out and "6 records" in out
    write(runs / "run-a.jsonl", [rec("run-a", "a0", 10.0)])  # two cases gone from the truth
    code, out, err = bench(["db", "rebuild", "--store", pg], monkeypatch, capsys)
    assert code == 0 and "rebuilt from 2 result file(s): 4 records" in out and "changed since it was ingested" in err
    (runs / "run-b.jsonl").unlink()
    code, _, err = bench(["db", "rebuild", "--store", pg], monkeypatch, capsys)
    one_line_error(code, err, f"its source {(runs / 'run-b.jsonl').resolve()} is gone")
    assert open_store(pg).info()["records"] == 4  # left as it was


# ---- the store as input: compare and gate --baseline -------------------------------------------------------

@pytest.fixture()
def ab(tmp_path):
    return a_and_b(tmp_path)


def test_compare_a_run_against_the_store(pg, ab, tmp_path, monkeypatch, capsys):
    a, b = ab
    bench(["db", "ingest", a, "--store", pg], monkeypatch, capsys)
    _, want, _ = bench(["compare", a, b, "-o", "json"], monkeypatch, capsys)
    code, got, err = bench(["compare", pg, b, "-o", "json"], monkeypatch, capsys)
    assert code == 0, err
    want, got = json.loads(want), json.loads(got)
    assert got["a"] == [f"history {pg.replace(PASSWORD, '***')}"]
    assert got["cases"] == want["cases"] and got["counts"] == {"regression": 1, "inconclusive": 0, "pass": 1}
    # B ingested too: the history side leaves B's own run out, so B is still judged against A
    bench(["db", "ingest", b, "--store", pg], monkeypatch, capsys)
    code, out, _ = bench(["compare", pg, b, "--check", "--since", "2025-01-01", "--model", "tiny"], monkeypatch,
                         capsys)
    assert code == 1 and "1 regression, 0 inconclusive, 1 pass of 2 case(s)." in out
    code, _, err = bench(["compare", pg, b, "--backend", "onnx"], monkeypatch, capsys)
    one_line_error(code, err, "nothing to compare: A (history postgresql://tritbench:***@127.0.0.1:")
    assert "holds no result records that match the filters and the machines, models and backends of B" in err


def test_gate_baseline_from_the_store(pg, ab, tmp_path, monkeypatch, capsys):
    a, b = ab
    bench(["db", "ingest", a, b, "--store", pg], monkeypatch, capsys)
    code, out, _ = bench(["gate", "--baseline", pg, b, "--json", tmp_path / "g.json"], monkeypatch, capsys)
    assert code == 1 and out.strip().splitlines()[-1] == "gate: 1 passed, 1 failed, 0 skipped"
    doc = json.loads((tmp_path / "g.json").read_text())
    assert doc["a"] == [f"history {pg.replace(PASSWORD, '***')}"] and PASSWORD not in json.dumps(doc)
    code, out, _ = bench(["gate", "--baseline", pg, b, "--model", "f16"], monkeypatch, capsys)
    assert code == 0 and out.strip().splitlines()[-1] == "gate: 1 passed, 0 failed, 0 skipped"


# ---- bad input: one line, exit 2, no password --------------------------------------------------------------

def test_bad_urls_and_servers_are_one_line(server, pg, runs, ab, tmp_path, monkeypatch, capsys):
    db_name = pg.rsplit("/", 1)[1]
    closed = free_port()
    cases = [
        (["db", "query", "--store", f"postgresql://{USER}:{PASSWORD}@127.0.0.1:notaport/x"],
         f"not a PostgreSQL URL: 'postgresql://{USER}:***@127.0.0.1:notaport/x'"),
        (["db", "query", "--store", f"postgresql://{USER}:{PASSWORD}@127.0.0.1:70000/x"], "port 70000 is out of range"),
        (["db", "ingest", runs, "--store", f"mysql://{USER}:{PASSWORD}@127.0.0.1/x"],
         "--store takes a postgresql://user@host:port/db URL"),
        (["db", "query", "--db", server.url(db_name)], "--db takes a history folder"),
        (["db", "query", "--db", tmp_path, "--store", pg], "--db and --store name two histories"),
        (["db", "ingest", runs, "--store", f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{closed}/x"],
         f'cannot connect to the results history in postgresql://{USER}:***@127.0.0.1:{closed}/x: connection to '
         f'server at "127.0.0.1", port {closed} failed: Connection refused'),
        (["db", "query", "--store", server.url(db_name, "wrong-" + PASSWORD[::-1])],
         f'password authentication failed for user "{USER}"'),
        (["db", "query", "--store", f"postgresql://{USER}@127.0.0.1:{server.port}/{db_name}"],
         "no password supplied (give it in PGPASSWORD or ~/.pgpass)"),
        (["db", "info", "--store", server.url("nosuchdb")], 'database "nosuchdb" does not exist'),
        (["db", "query", "--store", pg + "?password=" + PASSWORD + "&bogus=1"], 'invalid connection option "bogus"'),
        (["compare", server.url(db_name, "nope"), ab[1]], "password authentication failed"),
        (["gate", "--baseline", f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{closed}/x", ab[1]], "Connection refused"),
        (["report", "--store", f"postgres://{USER}:{PASSWORD}@127.0.0.1:{closed}/x", "--format", "md"],
         f"cannot connect to the results history in postgres://{USER}:***@127.0.0.1:{closed}/x"),
    ]
    for args, fragment in cases:
        code, _, err = bench(args, monkeypatch, capsys)
        one_line_error(code, err, fragment)


def test_password_from_the_environment(server, pg, runs, monkeypatch, capsys):
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    url = re.sub(r":[^:@/]*@", "@", pg)  # postgresql://user@host:port/db, as the README shows it
    code, out, err = bench(["db", "ingest", runs, "--store", url], monkeypatch, capsys)
    assert code == 0 and f"history {url}: 6 records" in out, err


def test_text_postgresql_cannot_hold(pg, tmp_path, monkeypatch, capsys):
    """A NUL in a record's text is kept in the record (JSON escapes it) and made U+FFFD in its column; a NUL in
    its ids is a one-line error, as it would be another case."""
    odd = write(tmp_path / "odd" / "run-o.jsonl", [rec("run-o", "o0", 2.0, model="tiny\x00bis")])
    parquet, postgres = ParquetStore(tmp_path / "db"), open_store(pg)
    ingest_paths(parquet, [odd], [])
    assert ingest_paths(postgres, [odd], []).added == 1
    assert postgres.checksum() == parquet.checksum() and postgres.records() == parquet.records()
    assert [r[11] for r in postgres.rows()] == ["tiny\ufffdbis"]
    bad = write(tmp_path / "bad" / "run-x.jsonl", [rec("run\x00x", "c0", 1.0)])
    code, _, err = bench(["db", "ingest", bad, "--store", pg], monkeypatch, capsys)
    one_line_error(code, err, "cannot store the case 'run\\x00x'/'c0' in PostgreSQL: its ids hold a NUL")


def test_the_api(pg, runs, tmp_path):
    """push() and PostgresStore as a library: what the commands call."""
    parquet = ParquetStore(tmp_path / "db")
    ingest_paths(parquet, [runs], [])
    store = PostgresStore(pg)
    assert push(parquet, store).added == 6 and push(parquet, store).unchanged == 6
    assert {r["case_id"] for r in store.records(Filters(machine=["cortex"], backend=["onnx"]))} == {"b1"}
    assert store.sources() == parquet.sources()
