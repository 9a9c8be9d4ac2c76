"""`reeve db backup | restore | prune`: consistent copies, kept N, safe restores."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from datetime import timedelta

import pytest

from reeve_cli import store
from reeve_cli.model import db_time, utcnow

WRITER = textwrap.dedent(
    """
    import sys
    from datetime import timedelta
    from reeve_cli import store
    from reeve_cli.db import open_database
    from reeve_cli.model import utcnow

    db = open_database(sys.argv[1], busy_timeout=30)
    print("ready", flush=True)
    n = 0
    while True:
        n += 1
        store.add_pulse(db, prompt="p" * 2000 + str(n),
                        scheduled_at=utcnow() + timedelta(hours=1))
    """
)

HOLDER = textwrap.dedent(
    """
    import fcntl, json, os, sys
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, json.dumps({"pid": os.getpid()}).encode())
    print("locked", flush=True)
    sys.stdin.read()
    """
)


def add_pulses(db, count, prompt="check the flight"):
    when = utcnow() + timedelta(hours=1)
    return [
        store.add_pulse(db, prompt=f"{prompt} {i}", scheduled_at=when)[0]
        for i in range(count)
    ]


def count_pulses(path):
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT count(*) FROM pulses").fetchone()[0]
    finally:
        conn.close()


def consistency(path):
    """Integrity, contiguous ids, and one 'created' event for every pulse."""
    conn = sqlite3.connect(path)
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        ids = [r[0] for r in conn.execute("SELECT id FROM pulses ORDER BY id")]
        orphans = conn.execute(
            "SELECT count(*) FROM pulses p WHERE NOT EXISTS (SELECT 1 FROM events e "
            "WHERE e.pulse_id = p.id AND e.kind = 'pulse.created')"
        ).fetchone()[0]
    finally:
        conn.close()
    return integrity, ids == list(range(1, len(ids) + 1)), orphans


@pytest.fixture
def writer(db, settings):
    """Another process adding pulses as fast as it can."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, settings.db_url],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline() == "ready\n"
    yield proc
    proc.kill()
    proc.wait()


def test_backup_under_concurrent_writes_restores_consistently(
    db, settings, writer, cli, monkeypatch
):
    from reeve_cli import backup

    add_pulses(db, 300)
    # Small steps, so the copy spans many steps while the writer commits.
    monkeypatch.setattr(backup, "BACKUP_STEP_PAGES", 4)
    steps = []

    def progress(done, total):
        steps.append((done, total))
        # Give the writer time to commit between steps.
        conn = sqlite3.connect(db.path)
        conn.execute("SELECT count(*) FROM pulses").fetchone()
        conn.close()

    before = count_pulses(db.path)
    result = backup.backup_database(settings, progress=progress)
    after = count_pulses(db.path)
    writer.kill()
    writer.wait()

    copied = count_pulses(result.path)
    assert len(steps) > 10
    assert [d for d, _ in steps] == sorted(d for d, _ in steps)  # never restarted
    assert steps[-1][0] == steps[-1][1]
    assert after > before  # the writer really wrote while we copied
    assert before <= copied <= after
    assert consistency(result.path) == ("ok", True, 0)

    restored = cli("db", "restore", str(result.path), "--json")

    assert restored.exit_code == 0, restored.stderr
    assert count_pulses(db.path) == copied
    assert consistency(db.path) == ("ok", True, 0)
    saved = json.loads(restored.stdout)["previous_saved_as"]
    assert count_pulses(saved) >= after


def test_backup_keeps_the_newest_n(cli, db, settings, monkeypatch):
    monkeypatch.setenv("REEVE_BACKUP_KEEP", "2")
    add_pulses(db, 3)

    paths = [json.loads(cli("db", "backup", "--json").stdout)["path"] for _ in range(3)]

    kept = sorted(str(p) for p in settings.backups_path.iterdir())
    assert kept == paths[1:]
    assert oct(settings.backups_path.stat().st_mode & 0o777) == "0o700"
    assert all(os.stat(p).st_mode & 0o777 == 0o600 for p in kept)


def test_backup_prints_the_path_and_checks_the_copy(cli, db, tmp_path):
    add_pulses(db, 2)
    target = tmp_path / "copy.db"

    result = cli("db", "backup", str(target))

    assert result.exit_code == 0
    assert result.stdout == f"{target}\n"
    assert "integrity ok" in result.stderr
    assert count_pulses(target) == 2
    assert not target.with_name("copy.db-wal").exists()


def test_backup_refuses_to_overwrite(cli, db, tmp_path):
    target = tmp_path / "copy.db"
    target.write_text("precious")

    result = cli("db", "backup", str(target))

    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {target} exists; choose another path or remove it\n"
    )
    assert target.read_text() == "precious"


def test_backup_without_a_database_says_so(cli, settings):
    result = cli("db", "backup")

    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: No database at {settings.data_path / 'reeve.db'} yet; "
        "nothing to back up\n"
    )


def test_restore_refuses_while_the_daemon_holds_its_lock(cli, db, settings, tmp_path):
    add_pulses(db, 1)
    backup_path = tmp_path / "b.db"
    cli("db", "backup", str(backup_path))
    add_pulses(db, 1, prompt="newer")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(settings.data_path / "daemon.lock")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "locked\n"

        result = cli("db", "restore", str(backup_path))
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)

    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: The daemon is running (pid {holder.pid}); stop it first "
        "(systemctl --user stop reeve-daemon, or Ctrl-C), then restore\n"
    )
    assert count_pulses(db.path) == 2


def test_restore_refuses_a_damaged_backup(cli, db, tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a database at all" * 100)

    result = cli("db", "restore", str(bad))

    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {bad} is not a SQLite database: file is not a database\n"
    )


def test_restore_refuses_a_backup_from_a_newer_reeve(cli, db, tmp_path):
    add_pulses(db, 1)
    newer = tmp_path / "newer.db"
    cli("db", "backup", str(newer))
    conn = sqlite3.connect(newer)
    conn.execute("UPDATE alembic_version SET version_num = '9999'")
    conn.commit()
    conn.close()

    result = cli("db", "restore", str(newer))

    assert result.exit_code == 1
    assert result.stderr.startswith(
        "Error: Database schema revision '9999' was written by a newer Reeve"
    )
    assert count_pulses(db.path) == 1


def test_restore_refuses_the_live_database_itself(cli, db, settings):
    live = settings.data_path / "reeve.db"

    result = cli("db", "restore", str(live))

    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {live} is the database itself; give a backup file\n"
    )


def test_restore_refuses_a_missing_file(cli, db, tmp_path):
    result = cli("db", "restore", str(tmp_path / "nope.db"))

    assert result.exit_code == 1
    assert result.stderr == f"Error: Backup {tmp_path / 'nope.db'} does not exist\n"


# prune --------------------------------------------------------------------


def age(db, pulse_id, status, days):
    when = db_time(utcnow() - timedelta(days=days))
    with db.transaction(write=True) as conn:
        conn.execute(
            "UPDATE pulses SET status = :s, finished_at = :w, updated_at = :w "
            "WHERE id = :id",
            {"s": status, "w": when, "id": pulse_id},
        )


def add_attempt(db, settings, pulse_id, status, days):
    log = settings.logs_path / str(pulse_id) / "1.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("agent output\n" * 10)
    moment = (utcnow() - timedelta(days=days)).timestamp()
    os.utime(log, (moment, moment))
    with db.transaction(write=True) as conn:
        conn.execute(
            "INSERT INTO attempts (pulse_id, number, status, started_at, log_path) "
            "VALUES (:p, 1, :s, :t, :log)",
            {"p": pulse_id, "s": status, "t": db_time(utcnow()), "log": str(log)},
        )
    return log


@pytest.fixture
def history(db, settings):
    old_done, old_failed, recent, pending, running = add_pulses(db, 5)
    age(db, old_done.id, "completed", 40)
    age(db, old_failed.id, "failed", 31)
    age(db, recent.id, "completed", 5)
    age(db, running.id, "running", 60)
    logs = {
        "old": add_attempt(db, settings, old_done.id, "completed", 40),
        "recent": add_attempt(db, settings, recent.id, "completed", 5),
        "running": add_attempt(db, settings, running.id, "running", 60),
    }
    return [old_done.id, old_failed.id, recent.id, pending.id, running.id], logs


def remaining_ids(db):
    with db.transaction() as conn:
        return [r["id"] for r in conn.execute("SELECT id FROM pulses ORDER BY id")]


def test_prune_removes_old_finished_pulses_and_their_logs(cli, db, history):
    ids, logs = history

    result = cli("db", "prune", "--older-than", "30d", "--json")

    summary = json.loads(result.stdout)
    assert result.exit_code == 0
    assert {k: summary[k] for k in ("pulses", "attempts", "log_files")} == {
        "pulses": 2,
        "attempts": 1,
        "log_files": 1,
    }
    assert summary["events"] >= 2
    assert remaining_ids(db) == ids[2:]
    assert not logs["old"].exists() and not logs["old"].parent.exists()
    assert logs["recent"].exists()
    assert logs["running"].exists()  # an attempt still writes it


def test_prune_dry_run_removes_nothing(cli, db, history):
    ids, logs = history

    result = cli("db", "prune", "--older-than", "30d", "--dry-run", "--json")

    assert json.loads(result.stdout)["pulses"] == 2
    assert json.loads(result.stdout)["dry_run"] is True
    assert remaining_ids(db) == ids
    assert all(path.exists() for path in logs.values())


def test_prune_rejects_a_bad_age(cli, db):
    result = cli("db", "prune", "--older-than", "soon")

    assert result.exit_code == 1
    assert result.stderr.startswith("Error: Cannot read duration 'soon'")


def test_restore_refuses_while_a_real_daemon_runs(cli, db, settings, tmp_path):
    from tests.daemon_helpers import start_daemon

    add_pulses(db, 1)
    backup_path = tmp_path / "b.db"
    cli("db", "backup", str(backup_path))
    daemon = start_daemon()
    try:
        result = cli("db", "restore", str(backup_path))
    finally:
        daemon.stop()

    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: The daemon is running (pid {daemon.pid}); stop it first "
        "(systemctl --user stop reeve-daemon, or Ctrl-C), then restore\n"
    )


def test_cli_backup_with_a_progress_bar(cli, db, monkeypatch, tmp_path):
    from reeve_cli.cli import dbops

    add_pulses(db, 50)
    monkeypatch.setattr(dbops, "PROGRESS_MIN_BYTES", 0)

    result = cli("db", "backup", str(tmp_path / "with-bar.db"))

    assert result.exit_code == 0
    assert count_pulses(tmp_path / "with-bar.db") == 50
