"""The daemon as a real process with the fake agent: timing, order, lanes, locks."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
from datetime import timedelta

import pytest

from reeve_cli import store
from reeve_cli.model import Status, utcnow
from tests.daemon_helpers import read_agent_log, start_daemon, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def agent_log(tmp_path):
    return tmp_path / "agent.log"


@pytest.fixture
def daemon(db, agent_log):
    """Start daemons for a test; every one left running is stopped at the end."""
    started = []

    def start(**env):
        env = {k: str(v) for k, v in env.items()}
        env.setdefault("FAKE_AGENT_LOG", str(agent_log))
        handle = start_daemon(env)
        started.append(handle)
        return handle

    yield start
    for handle in started:
        if handle.proc.poll() is None:
            handle.kill()


def add(db, prompt, *, at=None, priority="normal", **kwargs):
    pulse, _ = store.add_pulse(
        db,
        prompt=prompt,
        scheduled_at=at or utcnow(),
        priority=priority,
        **kwargs,
    )
    return pulse


def status_of(db, pulse_id):
    return store.get_pulse(db, pulse_id).status


def finished(db, pulse_id, status=Status.COMPLETED):
    return lambda: status_of(db, pulse_id) is status


def test_pulse_starts_at_its_time_not_before(db, daemon, agent_log):
    handle = daemon()
    due = utcnow() + timedelta(seconds=1.0)

    pulse = add(db, "exact", at=due)
    wait_for(finished(db, pulse.id))

    run = read_agent_log(agent_log)[0]
    attempt = store.get_attempts(db, pulse.id)[0]
    assert run["started_at"] >= due.timestamp()
    assert 0 <= attempt.lateness_s < 2.0
    assert attempt.status == "completed" and attempt.pid == run["pid"]
    assert handle.stop() == 0


def test_pulses_due_during_downtime_run_in_priority_order(db, daemon, agent_log):
    base = utcnow() - timedelta(minutes=5)
    ids = [
        add(db, "low", at=base, priority="low").id,
        add(db, "normal-later", at=base + timedelta(seconds=2)).id,
        add(db, "critical", at=base + timedelta(seconds=3), priority="critical").id,
        add(db, "normal-first", at=base + timedelta(seconds=1)).id,
        add(db, "high", at=base + timedelta(seconds=4), priority="high").id,
    ]

    daemon(REEVE_MAX_CONCURRENT=1)
    wait_for(lambda: all(status_of(db, i) is Status.COMPLETED for i in ids))

    order = [run["prompt"].rsplit("\n", 1)[-1] for run in read_agent_log(agent_log)]
    assert order == ["critical", "high", "normal-first", "normal-later", "low"]


def test_critical_pulse_uses_reserved_lane_when_slots_are_busy(db, daemon):
    daemon(REEVE_MAX_CONCURRENT=1)
    long_one = add(db, "long [sleep 30]")
    wait_for(lambda: status_of(db, long_one.id) is Status.RUNNING)

    urgent = add(db, "urgent", priority="critical")
    wait_for(finished(db, urgent.id))

    assert status_of(db, long_one.id) is Status.RUNNING
    events = _events(db, urgent.id, "pulse.running")
    assert events[0]["lane"] == "critical"


def test_normal_pulse_waits_when_slots_are_busy(db, daemon):
    daemon(REEVE_MAX_CONCURRENT=1)
    first = add(db, "first [sleep 1.5]")
    wait_for(lambda: status_of(db, first.id) is Status.RUNNING)

    second = add(db, "second")
    wait_for(finished(db, second.id))

    a, b = store.get_pulse(db, first.id), store.get_pulse(db, second.id)
    assert b.started_at >= a.finished_at


def test_pulses_resuming_one_session_never_overlap(db, daemon):
    daemon(REEVE_MAX_CONCURRENT=3)
    ids = [add(db, f"s{i} [sleep 0.6]", session_id="sess-1").id for i in range(2)]
    other = add(db, "other [sleep 0.6]", session_id="sess-2").id

    wait_for(lambda: all(status_of(db, i) is Status.COMPLETED for i in [*ids, other]))

    one, two = (store.get_pulse(db, i) for i in ids)
    assert two.started_at >= one.finished_at
    assert store.get_pulse(db, other).started_at < one.finished_at


def test_failed_attempts_retry_with_growing_backoff(db, daemon):
    daemon(REEVE_RETRY_BACKOFF="0.4")
    pulse = add(db, "broken [fail]", max_retries=2)

    wait_for(finished(db, pulse.id, Status.FAILED), timeout=30)

    attempts = store.get_attempts(db, pulse.id)
    assert [a.status for a in attempts] == ["failed", "failed", "failed"]
    gaps = [
        (attempts[i + 1].started_at - attempts[i].finished_at).total_seconds()
        for i in range(2)
    ]
    assert gaps[0] >= 0.4 and gaps[1] >= 0.8
    stored = store.get_pulse(db, pulse.id)
    assert stored.attempt == 3 and stored.error
    kinds = [e["kind"] for e in _all_events(db, pulse.id)]
    assert kinds.count("pulse.retrying") == 2 and kinds[-1] == "pulse.failed"


def test_missing_agent_binary_is_not_retried(db, daemon, tmp_path):
    daemon(REEVE_AGENT_COMMAND=str(tmp_path / "no-such-agent"))
    pulse = add(db, "hello", max_retries=3)

    wait_for(finished(db, pulse.id, Status.FAILED))

    assert len(store.get_attempts(db, pulse.id)) == 1


def test_timeout_kills_the_agent_process_group(db, daemon, agent_log):
    daemon(REEVE_PULSE_TIMEOUT="1")
    pulse = add(db, "slow [children] [sleep 60]", max_retries=0)

    wait_for(finished(db, pulse.id, Status.FAILED), timeout=30)

    run = read_agent_log(agent_log)[0]
    assert "time" in store.get_pulse(db, pulse.id).error.lower()
    wait_for(lambda: not _alive(run["pid"]) and not _alive(run["child_pid"]), 10)


def test_stalled_agent_is_stopped(db, daemon, agent_log):
    daemon(REEVE_STALL_TIMEOUT="1")
    pulse = add(db, "quiet [silent 60]", max_retries=0)

    wait_for(finished(db, pulse.id, Status.FAILED), timeout=30)

    run = read_agent_log(agent_log)[0]
    assert "output" in store.get_pulse(db, pulse.id).error.lower()
    wait_for(lambda: not _alive(run["pid"]), 10)


def test_running_attempt_has_its_session_id_before_the_agent_ends(
    db, daemon, agent_log
):
    handle = daemon(REEVE_STOP_GRACE="0.5")
    pulse = add(db, "long [sleep 60]")

    def stored_session():
        attempts = store.get_attempts(db, pulse.id)
        return attempts[0].session_id if attempts else None

    session = wait_for(stored_session)
    attempt = store.get_attempts(db, pulse.id)[0]
    still = store.get_pulse(db, pulse.id)
    events = read_agent_log(agent_log)
    handle.stop()

    assert attempt.status == "running" and still.status is Status.RUNNING
    assert len(events) == 1
    assert session == _init_session(attempt.number, pulse.id)


def _init_session(number, pulse_id):
    """The session id the fake agent announced in its init event (attempt log)."""
    from reeve_cli.config import load_settings
    from reeve_cli.current_pulse import session_from_log

    path = load_settings().logs_path / f"pulse-{pulse_id}-{number}.log"
    return session_from_log(path)


def test_sigterm_puts_running_pulse_back_to_pending_and_exits_0(db, daemon, agent_log):
    handle = daemon(REEVE_STOP_GRACE="0.5")
    pulse = add(db, "long [children] [sleep 60]")
    wait_for(lambda: read_agent_log(agent_log))

    assert handle.stop() == 0

    stored = store.get_pulse(db, pulse.id)
    assert stored.status is Status.PENDING and stored.attempt == 0
    assert [a.status for a in store.get_attempts(db, pulse.id)] == ["interrupted"]
    run = read_agent_log(agent_log)[0]
    wait_for(lambda: not _alive(run["pid"]) and not _alive(run["child_pid"]), 10)
    assert "Daemon stopped cleanly" in handle.log()


def test_sigterm_lets_short_attempt_finish_within_grace(db, daemon, agent_log):
    handle = daemon(REEVE_STOP_GRACE="20")
    pulse = add(db, "short [sleep 1]")
    wait_for(lambda: read_agent_log(agent_log))

    assert handle.stop() == 0

    assert status_of(db, pulse.id) is Status.COMPLETED


def test_kill_9_recovery_kills_orphan_and_retries(db, daemon, agent_log):
    first = daemon()
    pulse = add(db, "work [children] [sleep 60]", max_retries=1)
    run = wait_for(lambda: read_agent_log(agent_log))[0]

    first.kill()
    assert _alive(run["pid"])  # the agent outlives a crashed daemon
    second = daemon()

    wait_for(lambda: not _alive(run["pid"]) and not _alive(run["child_pid"]), 10)
    wait_for(lambda: len(store.get_attempts(db, pulse.id)) == 2)
    attempts = store.get_attempts(db, pulse.id)
    assert attempts[0].status == "lost"
    assert store.get_pulse(db, pulse.id).attempt == 2
    assert "unclean stop" in second.log()


def test_recovery_kills_survivors_of_a_dead_agent(db, daemon, agent_log):
    first = daemon()
    add(db, "work [children] [sleep 60]", max_retries=0)
    run = wait_for(lambda: read_agent_log(agent_log))[0]
    first.kill()
    os.kill(run["pid"], signal.SIGKILL)  # only the agent's child is left

    daemon()

    wait_for(lambda: not _alive(run["child_pid"]), 10)


def test_kill_9_recovery_fails_pulse_by_policy(db, daemon, agent_log):
    first = daemon()
    pulse = add(db, "work [sleep 60]", max_retries=3)
    wait_for(lambda: read_agent_log(agent_log))
    first.kill()

    daemon(REEVE_RECOVERY="fail")

    stored = store.get_pulse(db, pulse.id)
    assert stored.status is Status.FAILED
    assert "daemon stopped" in stored.error.lower()


def test_pulse_added_by_another_process_starts_promptly(db, daemon, run_reeve):
    daemon()

    result = run_reeve("pulse", "add", "from the shell", "--json")
    pulse_id = json.loads(result.stdout)["id"]

    wait_for(finished(db, pulse_id), timeout=10)
    attempt = store.get_attempts(db, pulse_id)[0]
    assert attempt.lateness_s < 2.0


def test_cancelled_pulse_never_runs(db, daemon, agent_log):
    daemon()
    pulse = add(db, "cancel me", at=utcnow() + timedelta(seconds=1))

    store.cancel_pulse(db, pulse.id)
    later = add(db, "later", at=utcnow() + timedelta(seconds=1.0))
    wait_for(finished(db, later.id))

    assert [r["REEVE_PULSE_ID"] for r in read_agent_log(agent_log)] == [str(later.id)]


def test_second_daemon_exits_4_naming_the_first(daemon, run_reeve):
    first = daemon()

    result = run_reeve("daemon", env={"REEVE_API_PORT": "0"})

    assert result.returncode == 4
    host = socket.gethostname()
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: Another Reeve daemon is running for this database (pid {first.pid} "
        f"on host {host}); stop it first, e.g. 'systemctl --user stop reeve-daemon'"
    )


def test_taken_port_exits_4(run_reeve):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = run_reeve("daemon", env={"REEVE_API_PORT": str(port)})

    assert result.returncode == 4
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: Cannot listen on 127.0.0.1:{port}: address already in use; stop "
        "the program using it, or set REEVE_API_PORT to a free port"
    )


def test_public_api_host_needs_explicit_token(run_reeve):
    result = run_reeve("daemon", env={"REEVE_API_HOST": "0.0.0.0"})

    assert result.returncode == 4
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: REEVE_API_HOST '0.0.0.0' is not a loopback address; set "
        "REEVE_API_TOKEN explicitly before exposing the API"
    )


def test_bad_setting_exits_4(run_reeve):
    result = run_reeve("daemon", env={"REEVE_MAX_CONCURRENT": "0"})

    assert result.returncode == 4
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: REEVE_MAX_CONCURRENT: must be at least 1, got 0"
    )


def test_status_reports_running_daemon(daemon, run_reeve, db):
    handle = daemon()
    add(db, "later", at=utcnow() + timedelta(hours=1))

    result = run_reeve("status", "--json")

    assert result.returncode == 0
    state = json.loads(result.stdout)
    assert state["daemon"]["running"] is True
    assert state["daemon"]["pid"] == handle.pid
    assert state["daemon"]["api_url"] == handle.api_url
    assert state["counts"]["pending"] == 1
    assert state["next_due"]["prompt"] == "later"
    human = run_reeve("status")
    assert human.returncode == 0
    assert f"running (pid {handle.pid} on {socket.gethostname()}" in human.stdout
    assert f"api:      {handle.api_url}" in human.stdout
    assert "1 pending" in human.stdout
    assert re.search(r"next: +pulse 1 \(normal\) .* \(in (59m|1h)\)", human.stdout)


def test_status_exits_3_when_daemon_is_down(cli):
    result = cli("status", "--json")

    assert result.exit_code == 3
    assert json.loads(result.stdout)["daemon"]["running"] is False


def test_sd_notify_ready_and_stopping(daemon, tmp_path):
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(20)
        handle = daemon(NOTIFY_SOCKET=str(path))

        ready = sock.recv(4096).decode()
        assert handle.stop() == 0
        messages = [sock.recv(4096).decode()]
        while "STOPPING=1" not in messages[-1]:
            messages.append(sock.recv(4096).decode())

    assert ready.startswith("READY=1\nSTATUS=0 running, 0 pending")
    assert "STOPPING=1" in messages


def _alive(pid):
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _all_events(db, pulse_id):
    with db.transaction() as conn:
        rows = conn.execute(
            "SELECT kind, data FROM events WHERE pulse_id = :id ORDER BY id",
            {"id": pulse_id},
        )
    return [{"kind": r["kind"], **json.loads(r["data"])} for r in rows]


def _events(db, pulse_id, kind):
    return [e for e in _all_events(db, pulse_id) if e["kind"] == kind]


def test_exhausted_pulse_sends_failure_alert(db, daemon):
    from tests.fake_bot_api import CHAT, FakeBotApi

    bot = FakeBotApi().start()
    try:
        handle = daemon(
            REEVE_TELEGRAM_TOKEN=bot.token,
            REEVE_TELEGRAM_CHAT_IDS=str(CHAT),
            REEVE_TELEGRAM_API_URL=bot.url,
        )
        pulse = add(db, "doomed [fail]", max_retries=0)

        wait_for(lambda: bot.sent, timeout=20)
    finally:
        bot.stop()

    (message,) = bot.sent
    assert message.chat_id == CHAT
    assert message.text == (
        f"Reeve alert: Pulse {pulse.id} failed after 1 attempt(s): Agent reported "
        "an error (error_during_execution): Something went wrong"
    )
    assert bot.token not in handle.log()
