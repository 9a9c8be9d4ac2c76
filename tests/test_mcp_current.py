"""current_pulse and resume_current_session: which pulse started this session?

Two servers share one database: one is told its pulse through REEVE_PULSE_ID
(as the daemon's agent environment does), the other gets no REEVE_* variables
and runs below an intermediate shell, so it must find its pulse by walking up
its parent processes to a running attempt's agent pid.
"""

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from reeve_cli import store
from reeve_cli.current_pulse import (
    ancestors,
    find_current,
    parent_pid,
    session_from_log,
)
from reeve_cli.db import open_database
from reeve_cli.errors import InvalidValue
from tests.mcp_helpers import (
    McpServer,
    bare_env,
    reeve_bin,
    settings_args,
    write_init_log,
)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("current")


@pytest.fixture(scope="module")
def db(home):
    database = open_database(f"sqlite:///{home / 'data' / 'reeve.db'}")
    yield database
    database.close()


def start_attempt(db, *, pid, prompt="wake up", status="running", **pulse_fields):
    """A pulse the daemon claimed, and its attempt row as dispatch writes it."""
    pulse, _ = store.add_pulse(
        db,
        prompt=prompt,
        scheduled_at=datetime.now(UTC) - timedelta(seconds=5),
        **pulse_fields,
    )
    with db.transaction(write=True) as conn:
        conn.execute(
            "UPDATE pulses SET status = 'running', attempt = 1, started_at = :now "
            "WHERE id = :id",
            {"id": pulse.id, "now": "2026-12-03T10:00:00.000000Z"},
        )
        rows = conn.execute(
            "INSERT INTO attempts (pulse_id, number, status, started_at, pid) "
            "VALUES (:id, 1, :status, '2026-12-03T10:00:00.000000Z', :pid) "
            "RETURNING id",
            {"id": pulse.id, "status": status, "pid": pid},
        )
    return store.get_pulse(db, pulse.id), int(rows[0]["id"])


@pytest.fixture(scope="module")
def env_pulse(db):
    store.add_schedule(db, name="daily", prompt="tick", tz="UTC", cron="0 7 * * *")
    return start_attempt(
        db,
        pid=None,
        prompt="check the flight",
        sticky_notes=["LH 400"],
        tags=["travel"],
        schedule_name="daily",
    )


@pytest.fixture(scope="module")
def by_env(home, db, env_pulse):
    pulse, attempt_id = env_pulse
    env = bare_env(REEVE_PULSE_ID=str(pulse.id), REEVE_ATTEMPT_ID=str(attempt_id))
    args = settings_args(home / "data", home / "config.toml") + ["mcp", "serve"]
    with McpServer(args, env, home / "env.err") as running:
        yield running


@pytest.fixture(scope="module")
def by_ancestry(home, db):
    """A server two levels below this test process, without REEVE_* variables."""
    args = settings_args(home / "data", home / "config.toml") + ["mcp", "serve"]
    # The shell forks the server (the trailing command keeps it from exec'ing).
    shell_args = ["-c", '"$0" "$@"; exit $?', reeve_bin(), *args]
    with McpServer(shell_args, bare_env(), home / "ancestry.err", "/bin/sh") as running:
        yield running


@pytest.fixture
def clean_attempts(db):
    """Ancestry tests must not see each other's running attempts."""
    yield
    with db.transaction(write=True) as conn:
        conn.execute(
            "UPDATE attempts SET status = 'completed' WHERE status = 'running'"
        )


# Through REEVE_PULSE_ID ---------------------------------------------------------


def test_current_pulse_from_env_returns_pulse_notes_and_schedule(by_env, env_pulse):
    pulse, attempt_id = env_pulse

    text, data = by_env.ok("current_pulse")

    assert data["started_by_reeve"] is True
    assert data["found_by"] == "REEVE_PULSE_ID"
    assert data["pulse"]["id"] == pulse.id
    assert data["pulse"]["sticky_notes"] == ["LH 400"]
    assert data["attempt"]["id"] == attempt_id
    assert data["schedule"]["name"] == "daily"
    assert data["schedule"]["cron"] == "0 7 * * *"
    assert text.startswith(
        f"This session was started by Reeve for pulse {pulse.id} "
        "(found via REEVE_PULSE_ID)."
    )
    assert "Sticky notes:\n- LH 400" in text
    assert "Schedule: 'daily' [active, normal] cron '0 7 * * *' in UTC" in text


def test_resume_current_session_without_recorded_session_is_refused(
    db, by_env, env_pulse, home
):
    pulse, attempt_id = env_pulse
    with db.transaction(write=True) as conn:
        conn.execute(
            "UPDATE attempts SET log_path = :path, session_id = NULL WHERE id = :id",
            {"path": str(home / "missing.log"), "id": attempt_id},
        )

    text = by_env.error(
        "schedule_pulse", when="in 1h", prompt="go on", resume_current_session=True
    )

    assert text.startswith(
        "Error executing tool schedule_pulse: Reeve has not recorded a session "
        f"id for pulse {pulse.id} yet, so this session cannot be resumed"
    )


def test_resume_current_session_uses_session_from_attempt_log(
    db, by_env, env_pulse, home
):
    _, attempt_id = env_pulse
    log = home / "logs" / "attempt.log"
    write_init_log(log, "sess-from-init")
    with db.transaction(write=True) as conn:
        conn.execute(
            "UPDATE attempts SET log_path = :path, session_id = NULL WHERE id = :id",
            {"path": str(log), "id": attempt_id},
        )

    text, data = by_env.ok(
        "schedule_pulse", when="in 1h", prompt="go on", resume_current_session=True
    )

    assert data["session_id"] == "sess-from-init"
    assert store.get_pulse(db, data["id"]).session_id == "sess-from-init"
    assert "It resumes session sess-from-init." in text


def test_resume_current_session_prefers_attempt_session_id(db, by_env, env_pulse):
    _, attempt_id = env_pulse
    with db.transaction(write=True) as conn:
        conn.execute(
            "UPDATE attempts SET session_id = 'sess-row' WHERE id = :id",
            {"id": attempt_id},
        )

    _, data = by_env.ok(
        "schedule_pulse", when="in 1h", prompt="go on", resume_current_session=True
    )

    assert data["session_id"] == "sess-row"


def test_stale_env_id_explains_database_mismatch(db, monkeypatch):
    """REEVE_PULSE_ID from another database, and no ancestor is an agent."""
    monkeypatch.setenv("REEVE_PULSE_ID", "987654")

    with pytest.raises(InvalidValue) as caught:
        find_current(db)

    assert caught.value.message == (
        "REEVE_PULSE_ID is '987654', but this database has no such pulse; is the "
        "MCP server registered with the same --data-dir and --database-url as the "
        "daemon? (see 'reeve mcp config')"
    )


# Through the process tree ------------------------------------------------------


def test_current_pulse_found_through_ancestor_agent(db, by_ancestry, clean_attempts):
    pulse, attempt_id = start_attempt(db, pid=os.getpid(), prompt="from ancestry")

    text, data = by_ancestry.ok("current_pulse")

    assert data["found_by"] == "process ancestry"
    assert data["pulse"]["id"] == pulse.id
    assert data["attempt"]["id"] == attempt_id
    assert "(found via process ancestry)" in text


def test_current_pulse_ignores_unrelated_and_finished_attempts(
    db, by_ancestry, clean_attempts
):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        start_attempt(db, pid=sleeper.pid, prompt="someone else's agent")
        start_attempt(db, pid=os.getpid(), prompt="ran before", status="completed")

        text, data = by_ancestry.ok("current_pulse")
    finally:
        sleeper.kill()
        sleeper.wait()

    assert data == {"started_by_reeve": False, "pulse": None, "now": data["now"]}
    assert text.startswith("This session was not started by Reeve")


def test_resume_current_session_through_ancestry_uses_resumed_session(
    db, by_ancestry, clean_attempts
):
    start_attempt(db, pid=os.getpid(), session_id="sess-resumed")

    _, data = by_ancestry.ok(
        "schedule_pulse", when="in 1h", prompt="later", resume_current_session=True
    )

    assert data["session_id"] == "sess-resumed"


# The building blocks ----------------------------------------------------------


def test_ancestors_starts_with_this_process_and_reaches_parents():
    chain = ancestors()

    assert chain[0] == os.getpid()
    assert chain[1] == os.getppid()
    assert 1 not in chain


def test_parent_pid_of_a_vanished_process_is_none():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()

    assert parent_pid(child.pid) is None


def test_session_from_log_reads_the_init_event(tmp_path):
    log = tmp_path / "a.log"
    write_init_log(log, "abc-123")

    assert session_from_log(log) == "abc-123"
    assert session_from_log(tmp_path / "missing.log") is None
