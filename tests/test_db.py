"""Schema migrations: fresh databases, `reeve db`, and refusing newer schemas."""

import json
import sqlite3
import subprocess
import sys

import pytest

from reeve_cli.db import SCHEMA_HEAD, Database, open_database
from reeve_cli.errors import DatabaseError

NEWER = (
    "Error: Database schema revision '9999' was written by a newer Reeve (this one "
    "knows up to '0001'); upgrade Reeve, or restore a backup. The database was not "
    "changed\n"
)


def db_file(reeve_env):
    return reeve_env / "reeve.db"


def stamp_newer(path):
    raw = sqlite3.connect(path)
    raw.execute("UPDATE alembic_version SET version_num = '9999'")
    raw.commit()
    raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw.close()


def snapshot(path):
    return path.read_bytes(), path.stat().st_mtime_ns


def test_fresh_database_gets_head_revision_and_pragmas(db):
    assert db.current_revision() == SCHEMA_HEAD
    with db.transaction() as conn:
        tables = {
            r["name"]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        mode = conn.execute("PRAGMA journal_mode")[0][0]
        foreign_keys = conn.execute("PRAGMA foreign_keys")[0][0]
    assert {"pulses", "attempts", "schedules", "events", "state"} <= tables
    assert mode == "wal"
    assert foreign_keys == 1
    assert oct(db.path.stat().st_mode & 0o777) == "0o600"


def test_open_database_is_idempotent(db):
    again = open_database(db.url)

    assert again.current_revision() == SCHEMA_HEAD
    again.close()


def test_db_status_before_and_after_upgrade(cli, reeve_env):
    before = cli("db", "status", "--json")
    upgraded = cli("db", "upgrade")
    again = cli("db", "upgrade")
    after = cli("db", "status", "--json")
    human = cli("db", "status")

    url = f"sqlite:///{reeve_env}/reeve.db"
    assert json.loads(before.stdout) == {
        "database_url": url,
        "exists": False,
        "revision": None,
        "head": SCHEMA_HEAD,
        "up_to_date": False,
    }
    assert upgraded.exit_code == 0
    assert upgraded.stdout == f"Schema upgraded from empty to {SCHEMA_HEAD}\n"
    assert again.stdout == f"Schema is current ({SCHEMA_HEAD})\n"
    assert json.loads(after.stdout) == {
        "database_url": url,
        "exists": True,
        "revision": SCHEMA_HEAD,
        "head": SCHEMA_HEAD,
        "up_to_date": True,
    }
    assert human.stdout == f"database: {url}\nschema:   {SCHEMA_HEAD} (current: 0001)\n"


def test_first_command_migrates_automatically(cli, reeve_env):
    result = cli("pulse", "list", "--json")

    assert result.exit_code == 0
    assert result.stdout == "[]\n"
    assert Database(f"sqlite:///{db_file(reeve_env)}").current_revision() == "0001"


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["pulse", "list"], id="pulse-list"),
        pytest.param(["pulse", "add", "x", "--at", "in 1h"], id="pulse-add"),
        pytest.param(["db", "upgrade"], id="db-upgrade"),
        pytest.param(["db", "status"], id="db-status"),
    ],
)
def test_newer_schema_is_refused_and_not_altered(cli, db, reeve_env, args):
    db.close()
    path = db_file(reeve_env)
    stamp_newer(path)
    before = snapshot(path)

    result = cli(*args)

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == NEWER
    assert snapshot(path) == before


def test_newer_schema_is_refused_by_the_entry_point(run_reeve, db, reeve_env):
    db.close()
    path = db_file(reeve_env)
    stamp_newer(path)
    before = snapshot(path)

    result = run_reeve("pulse", "add", "hello", "--at", "in 1h")

    assert result.returncode == 1
    assert result.stderr == NEWER
    assert snapshot(path) == before


def test_not_a_database_gives_a_clear_error(cli, reeve_env):
    reeve_env.mkdir(parents=True)
    db_file(reeve_env).write_bytes(b"this is not sqlite" * 100)

    result = cli("pulse", "list")

    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: Cannot open database {db_file(reeve_env)}: file is not a database\n"
    )


def test_non_file_sqlite_url_is_refused(tmp_path):
    with pytest.raises(DatabaseError) as caught:
        Database("sqlite://")

    assert caught.value.message == (
        "Database URL 'sqlite://' is not a SQLite file; "
        "use sqlite:////absolute/path/reeve.db"
    )


def test_processes_opening_a_fresh_database_at_once_all_succeed(tmp_path):
    url = f"sqlite:///{tmp_path}/race.db"
    code = (
        "import sys; from reeve_cli.db import open_database; open_database(sys.argv[1])"
    )

    procs = [
        subprocess.Popen([sys.executable, "-c", code, url], stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]

    assert [p.returncode for p in procs] == [0, 0, 0], errors
    assert Database(url).current_revision() == SCHEMA_HEAD


def test_busy_database_gives_a_clear_error_and_writes_nothing(cli, db, reeve_env):
    holder = sqlite3.connect(db_file(reeve_env), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        result = cli("--set", "busy_timeout=0.2", "pulse", "add", "x", "--json")
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"Error: Database {db_file(reeve_env)} is busy (locked by another writer); "
        "try again, or raise REEVE_BUSY_TIMEOUT\n"
    )
    assert cli("pulse", "list", "--json").stdout == "[]\n"
