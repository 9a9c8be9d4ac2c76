"""End to end: a Telegram message wakes the agent through a real daemon and bridge."""

import signal
import subprocess

import pytest

from reeve_cli import store
from reeve_cli.config import load_settings
from reeve_cli.db import open_database
from tests.daemon_helpers import daemon_env, reeve_command, start_daemon
from tests.fake_bot_api import CHAT, fake_bot, wait_for  # noqa: F401 (fixture)

pytestmark = pytest.mark.e2e


def _completed(db, exclude=()):
    pulses = store.list_pulses(db, statuses=["completed"], limit=None)
    return [p for p in pulses if p.id not in exclude]


def test_message_wakes_agent_and_follow_up_resumes_session(fake_bot, tmp_path):  # noqa: F811
    daemon = start_daemon()
    bridge = subprocess.Popen(
        [*reeve_command(), "telegram", "--poll-timeout", "1"],
        env=daemon_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db = open_database(load_settings().db_url)
    try:
        fake_bot.user_says(CHAT, "What is on today?")
        (first,) = wait_for(lambda: _completed(db), timeout=30)
        fake_bot.user_says(CHAT, "And tomorrow?")
        (second,) = wait_for(lambda: _completed(db, exclude={first.id}), timeout=30)
    finally:
        bridge.send_signal(signal.SIGTERM)
        bridge.wait(timeout=15)
        daemon.stop()
        db.close()

    assert "What is on today?" in first.prompt
    assert first.result_session_id
    assert "And tomorrow?" in second.prompt
    assert second.session_id == first.result_session_id
    assert bridge.returncode == 0
