"""The `telegram` notifier plugin and reeve_cli.notify, against the fake Bot API."""

import json
import logging

import pytest

from reeve_cli import notify as notify_module
from reeve_cli import plugins, store
from reeve_cli.config import ensure_data_dir, load_settings
from reeve_cli.db import open_database
from reeve_cli.errors import PluginError
from reeve_cli.model import db_time, utcnow
from reeve_cli.telegram_api import split_text
from tests.fake_bot_api import (  # noqa: F401 (fixtures)
    CHAT,
    OTHER_CHAT,
    fake_bot,
)

FAST = (0.01, 0.01)  # retry delays for tests, seconds


@pytest.fixture
def env(fake_bot):  # noqa: F811
    settings = load_settings()
    ensure_data_dir(settings)
    db = open_database(settings.db_url)
    plugins.reset()
    yield fake_bot, settings, db
    db.close()
    plugins.reset()


def test_telegram_notifier_is_registered_through_entry_point(env):
    _, settings, _ = env

    notifier = plugins.get_notifier(settings)

    assert notifier is not None
    assert notifier.name == "telegram"
    assert type(notifier).__module__ == "reeve_telegram"


@pytest.mark.parametrize(
    ("priority", "silent"),
    [
        pytest.param("critical", False, id="critical-loud"),
        pytest.param("high", False, id="high-loud"),
        pytest.param("normal", True, id="normal-silent"),
        pytest.param("low", True, id="low-silent"),
        pytest.param("deferred", True, id="deferred-silent"),
    ],
)
def test_only_critical_and_high_make_a_sound(env, priority, silent):
    fake, settings, db = env

    row = notify_module.notify(settings, db, "The flight is on time", priority)

    assert row["status"] == "sent"
    assert row["priority"] == priority
    assert [(s.chat_id, s.text, s.disable_notification) for s in fake.sent] == [
        (CHAT, "The flight is on time", silent),
        (OTHER_CHAT, "The flight is on time", silent),
    ]


def test_long_text_is_split_on_line_boundaries(env):
    fake, settings, db = env
    lines = [f"line {n:05d} " + "x" * 80 for n in range(120)]  # ~11,000 chars
    message = "\n".join(lines)

    notify_module.notify(settings, db, message)

    to_chat = [s.text for s in fake.sent if s.chat_id == CHAT]
    assert len(to_chat) == 3
    assert all(len(text) <= 4096 for text in to_chat)
    assert "\n".join(to_chat).splitlines() == lines


def test_split_counts_utf16_units_and_cuts_overlong_lines():
    emoji_line = "\U0001f680" * 3000  # 6000 UTF-16 units on one line
    words = ("word " * 2000).strip()  # 9999 chars, no line break

    emoji_parts = split_text(emoji_line)
    word_parts = split_text(words)

    assert "".join(emoji_parts) == emoji_line
    assert [len(p.encode("utf-16-le")) // 2 <= 4096 for p in emoji_parts] == [True] * 2
    assert "".join(word_parts) == words
    assert all(part.endswith(" ") for part in word_parts[:-1])


def test_formatting_is_sent_verbatim_as_plain_text(env):
    fake, settings, db = env
    tricky = "*bold* _it_ `code` [link](http://x) <b>tag</b> & \\ \\*"

    notify_module.notify(settings, db, tricky, "high")

    assert {(s.text, s.parse_mode) for s in fake.sent} == {(tricky, None)}


def test_failed_tries_are_retried_and_recorded(env):
    fake, settings, db = env
    fake.fail("sendMessage", 502, times=2)

    row = notify_module.notify(settings, db, "hello", retry_delays=FAST)

    assert row["status"] == "sent"
    assert row["tries"] == 3
    assert row["last_error"] == "HTTP 502: Bad Gateway"
    assert row["sent_at"] is not None
    assert notify_module.list_notifications(db) == [row]


def test_undeliverable_message_is_recorded_as_failed_not_raised(env, caplog):
    fake, settings, db = env
    fake.fail("sendMessage", 500, times=10)

    row = notify_module.notify(settings, db, "hello", retry_delays=FAST)

    assert (row["status"], row["tries"], row["sent_at"]) == ("failed", 3, None)
    assert row["last_error"] == "HTTP 500: Internal Server Error"
    assert fake.token not in caplog.text


def test_unreachable_bot_api_error_holds_no_token(env):
    fake, settings, db = env
    fake.stop()

    row = notify_module.notify(settings, db, "hello", retry_delays=())

    assert row["status"] == "failed"
    assert row["last_error"] == "cannot reach the Bot API (ConnectionError)"


def test_short_rate_limit_is_waited_out(env):
    fake, settings, db = env
    fake.fail("sendMessage", 429, retry_after=1)

    row = notify_module.notify(settings, db, "patience", retry_delays=())

    assert (row["status"], row["tries"]) == ("sent", 1)
    assert [s.text for s in fake.sent] == ["patience", "patience"]


def test_no_notifier_configured_is_a_plugin_error(env, monkeypatch):
    _, _, db = env
    monkeypatch.delenv("REEVE_TELEGRAM_TOKEN")
    settings = load_settings()

    with pytest.raises(PluginError) as caught:
        notify_module.notify(settings, db, "hello")

    assert caught.value.message == (
        "No notifier configured; set REEVE_TELEGRAM_TOKEN and REEVE_TELEGRAM_CHAT_IDS"
    )


def test_alerts_are_rate_limited_per_kind(env):
    fake, settings, db = env

    notify_module.alert(settings, db, "pulse_failed", "Pulse 7 failed")
    notify_module.alert(settings, db, "pulse_failed", "Pulse 8 failed")
    notify_module.alert(settings, db, "schedule_paused", "Schedule 'news' paused")

    texts = [s.text for s in fake.sent if s.chat_id == CHAT]
    assert texts == [
        "Reeve alert: Pulse 7 failed",
        "Reeve alert: Schedule 'news' paused",
    ]
    assert {s.disable_notification for s in fake.sent} == {False}


def test_alert_after_the_interval_counts_held_back_ones(env):
    fake, settings, db = env
    notify_module.alert(settings, db, "pulse_failed", "Pulse 7 failed")
    notify_module.alert(settings, db, "pulse_failed", "Pulse 8 failed")
    long_ago = utcnow().replace(year=2020)
    with db.transaction(write=True) as conn:
        state = json.loads(
            conn.execute("SELECT value FROM state WHERE key = 'alert.pulse_failed'")[0][
                "value"
            ]
        )
        state["last_at"] = db_time(long_ago)
        store.set_state(conn, "alert.pulse_failed", json.dumps(state))

    notify_module.alert(settings, db, "pulse_failed", "Pulse 9 failed")

    texts = [s.text for s in fake.sent if s.chat_id == CHAT]
    assert texts[-1] == (
        "Reeve alert: Pulse 9 failed\n"
        "(1 more alert(s) of this kind were held back before this one)"
    )


def test_alert_never_raises(env, monkeypatch, caplog):
    _, _, db = env
    caplog.set_level(logging.WARNING)
    monkeypatch.delenv("REEVE_TELEGRAM_TOKEN")
    settings = load_settings()

    notify_module.alert(settings, db, "daemon_restarted", "Daemon restarted")

    assert "Alert daemon_restarted not sent: No notifier configured" in caplog.text
