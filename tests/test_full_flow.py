"""The whole of Reeve at once, as real processes on one data dir.

Daemon (with its HTTP API), Telegram bridge and MCP server run as separate
processes against a fake Bot API: a Telegram message becomes a critical pulse;
the agent it wakes schedules a follow-up over MCP and answers through
`send_notification`; the answer reaches the chat and the follow-up fires on
time. Then the daemon is killed with SIGKILL mid-run and started again: the
interrupted pulse is recovered, and nothing is lost or run twice.
"""

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from reeve_cli import store
from reeve_cli.config import load_settings
from reeve_cli.db import open_database
from reeve_cli.model import utcnow
from tests.daemon_helpers import daemon_env, reeve_command, start_daemon
from tests.fake_bot_api import CHAT, FakeBotApi, wait_for

pytestmark = pytest.mark.e2e

FLOW_AGENT = Path(__file__).with_name("flow_agent.py")


def _runs(log: Path) -> list[dict]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def _health(daemon) -> int:
    with urllib.request.urlopen(f"{daemon.api_url}/api/health", timeout=5) as resp:
        return resp.status


@pytest.fixture
def bot(tmp_path, monkeypatch):
    """A fake Bot API; the Telegram settings live in the config file, as in use."""
    server = FakeBotApi().start()
    Path(os.environ["REEVE_CONFIG"]).write_text(
        f'telegram_token = "{server.token}"\n'
        f"telegram_chat_ids = [{CHAT}]\n"
        f'telegram_api_url = "{server.url}"\n'
    )
    yield server
    server.stop()


def test_message_to_follow_up_then_crash_recovery(bot, tmp_path):
    flow_log = tmp_path / "flow.jsonl"
    env = {
        "REEVE_AGENT_COMMAND": f"{sys.executable} {FLOW_AGENT}",
        "FLOW_LOG": str(flow_log),
        "FLOW_MCP_ERR": str(tmp_path / "mcp.err"),
        "REEVE_MAX_CONCURRENT": "2",
    }
    daemon = start_daemon(env)
    bridge = subprocess.Popen(
        [*reeve_command(), "telegram", "--poll-timeout", "1"],
        env=daemon_env(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db = open_database(load_settings().db_url)
    try:
        assert _health(daemon) == 200

        # A message wakes the agent at once, with the critical priority.
        bot.user_says(CHAT, "Remind me to stretch at four")
        answer = wait_for(
            lambda: [s for s in bot.sent if s.text.startswith("On it:")], timeout=40
        )
        (message_pulse,) = [
            p
            for p in store.list_pulses(db, statuses=None, limit=None)
            if p.source == "telegram"
        ]
        follow_up = wait_for(
            lambda: [
                p
                for p in store.list_pulses(db, statuses=None, limit=None)
                if p.source == "mcp"
            ],
            timeout=20,
        )[0]
        done = wait_for(
            lambda: (
                (p := store.get_pulse(db, follow_up.id)).status.value == "completed"
                and p
            ),
            timeout=30,
        )

        # Crash: SIGKILL the daemon while an attempt runs, then start it again.
        sleeper, _ = store.add_pulse(
            db,
            prompt="long job [sleep-once 60]",
            scheduled_at=utcnow(),
            source="cli",
        )
        wait_for(lambda: [r for r in _runs(flow_log) if r["kind"] == "sleeping"])
        orphan = [r for r in _runs(flow_log) if r["kind"] == "sleeping"][0]["pid"]
        daemon.kill()
        assert store.get_pulse(db, sleeper.id).status.value == "running"
        daemon = start_daemon(env)
        recovered = wait_for(
            lambda: (
                (p := store.get_pulse(db, sleeper.id)).status.value == "completed" and p
            ),
            timeout=40,
        )
        attempts = store.get_attempts(db, sleeper.id)
        orphan_gone = wait_for(lambda: not _pid_alive(orphan), timeout=15)
    finally:
        bridge.send_signal(signal.SIGTERM)
        bridge.wait(timeout=20)
        stopped = daemon.stop()
        db.close()

    assert message_pulse.source == "telegram"
    assert message_pulse.priority.value == "critical"
    assert "Remind me to stretch at four" in message_pulse.prompt
    assert [s.chat_id for s in answer] == [CHAT]
    assert answer[0].text == "On it: Remind me to stretch at four"
    assert answer[0].disable_notification in (None, False)  # high priority: a sound

    runs = _runs(flow_log)
    tools_run = [r for r in runs if r["kind"] == "tools"]
    assert len(tools_run) == 1
    assert tools_run[0]["follow_up"]["id"] == follow_up.id
    assert (
        follow_up.session_id == store.get_pulse(db, message_pulse.id).result_session_id
    )
    lateness = (done.started_at - done.scheduled_at).total_seconds()
    assert 0 <= lateness < 1.5, lateness
    assert len([r for r in runs if "FOLLOW-UP" in r["prompt"]]) == 1

    assert orphan_gone
    assert recovered.attempt == 2
    assert [a.status for a in attempts] == ["lost", "completed"]
    counts = store.count_by_status(open_database(load_settings().db_url))
    assert counts == {
        "pending": 0,
        "running": 0,
        "completed": 3,
        "failed": 0,
        "cancelled": 0,
    }
    assert len([r for r in runs if "long job" in r["prompt"]]) == 2
    assert stopped == 0
    assert bridge.returncode == 0
