"""The Telegram bridge against the fake Bot API (tests/fake_bot_api.py)."""

import logging
import os
import re
import signal
import sqlite3
import subprocess
import threading
import time
from datetime import timedelta

import pytest

from reeve_cli import store
from reeve_cli.config import ensure_data_dir, load_settings
from reeve_cli.db import open_database
from reeve_cli.model import db_time, utcnow
from reeve_cli.telegram import Backoff, Bridge, message_key
from reeve_cli.telegram_api import BotApi, BotConflict
from tests.conftest import reeve_bin
from tests.fake_bot_api import (  # noqa: F401 (fixtures)
    CHAT,
    OTHER_CHAT,
    STRANGER,
    fake_bot,
    wait_for,
)


class Harness:
    """The fake Bot API, Reeve's database, and a bridge running in a thread."""

    def __init__(self, fake):
        self.fake = fake
        self.settings = load_settings()
        ensure_data_dir(self.settings)
        self.db = open_database(self.settings.db_url, self.settings.busy_timeout)
        self.bridge = None
        self.thread = None
        self.error = None

    def start(self, **flags):
        settings = load_settings(flags) if flags else self.settings
        db = open_database(settings.db_url, settings.busy_timeout)
        self.bridge = Bridge(
            settings,
            db,
            BotApi(settings.telegram_token, settings.telegram_api_url),
            poll_timeout=1,
            backoff=Backoff(base=0.05, cap=0.3),
            idle_pause=0.05,
        )

        def run():
            try:
                self.bridge.run()
            except Exception as exc:
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        return self.bridge

    def stop(self):
        if self.bridge is not None:
            self.bridge.stop()
            self.fake.release_polls = True  # end the long poll now
            self.thread.join(timeout=15)
            self.fake.release_polls = False
            assert not self.thread.is_alive()
            self.bridge = None

    def pulses(self):
        return store.list_pulses(self.db, statuses=None, limit=None)

    def chat_pulses(self, chat_id):
        return [
            p
            for p in self.pulses()
            if p.meta.get("telegram", {}).get("chat_id") == chat_id
        ]

    def stored_ids(self, chat_id):
        """Every message id of the chat stored in a pulse, duplicates kept."""
        ids = []
        for pulse in self.chat_pulses(chat_id):
            ids.extend(pulse.meta["telegram"]["message_ids"])
        return ids

    def offset(self):
        value = store.get_state(self.db, f"telegram.offset.{self.fake.bot_id}")
        return int(value) if value is not None else None

    def claim(self, pulse_id):
        """Mark a pulse started, as the daemon's dispatcher would."""
        with self.db.transaction(write=True) as conn:
            conn.execute(
                "UPDATE pulses SET status = 'running', attempt = 1, started_at = :now "
                "WHERE id = :id",
                {"now": db_time(utcnow()), "id": pulse_id},
            )

    def finish(self, pulse_id, session_id, ago):
        with self.db.transaction(write=True) as conn:
            conn.execute(
                "UPDATE pulses SET status = 'completed', attempt = 1, "
                "result_session_id = :session, finished_at = :at WHERE id = :id",
                {
                    "session": session_id,
                    "at": db_time(utcnow() - ago),
                    "id": pulse_id,
                },
            )


@pytest.fixture
def tg(fake_bot):  # noqa: F811
    harness = Harness(fake_bot)
    yield harness
    harness.stop()
    harness.db.close()


# Allowed and blocked chats ---------------------------------------------------


def test_message_in_allowed_chat_becomes_pulse_due_now(tg):
    tg.start()
    before = utcnow()

    tg.fake.user_says(CHAT, "Check the flight to Lisbon", first_name="Ann")
    (pulse,) = wait_for(lambda: tg.chat_pulses(CHAT))

    assert pulse.status.value == "pending"
    assert pulse.priority.value == "critical"
    assert pulse.source == "telegram"
    assert pulse.idempotency_key == message_key(CHAT, 1)
    assert before - timedelta(seconds=1) <= pulse.scheduled_at <= utcnow()
    assert "Check the flight to Lisbon" in pulse.prompt
    assert f"--- message 1 in chat {CHAT} from Ann (@ann, user id {CHAT})" in (
        pulse.prompt
    )
    assert "send_notification" in pulse.prompt
    assert pulse.meta["telegram"] == {"chat_id": CHAT, "message_ids": [1]}


def test_priority_follows_setting(tg):
    tg.start(telegram_priority="high")

    tg.fake.user_says(CHAT, "hello")
    (pulse,) = wait_for(lambda: tg.chat_pulses(CHAT))

    assert pulse.priority.value == "high"


def test_blocked_chat_gets_no_pulse_and_is_logged_by_id_only(tg, caplog):
    caplog.set_level(logging.INFO)
    tg.start()

    blocked = tg.fake.user_says(STRANGER, "secret words from a stranger")
    tg.fake.user_says(CHAT, "hi")
    wait_for(lambda: tg.chat_pulses(CHAT))

    assert [p.meta["telegram"]["chat_id"] for p in tg.pulses()] == [CHAT]
    assert tg.fake.sent == []
    wait_for(lambda: tg.offset() and tg.offset() > blocked["update_id"])
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert dropped == [
        (
            f"Telegram message from chat {STRANGER} dropped: chat not in "
            "REEVE_TELEGRAM_CHAT_IDS"
        )
    ]
    assert "secret words" not in caplog.text


def test_redelivered_update_makes_one_pulse(tg):
    """An update seen again after a crash before the offset moved: one pulse."""
    update = tg.fake.user_says(CHAT, "only once")
    bridge = Bridge(tg.settings, tg.db, BotApi(tg.fake.token, tg.fake.url))
    bridge.handle_update(update)
    with tg.db.transaction(write=True) as conn:
        store.set_state(conn, bridge.offset_key, str(update["update_id"]))

    bridge.handle_update(update)

    assert tg.stored_ids(CHAT) == [1]
    assert len(tg.pulses()) == 1
    assert tg.offset() == update["update_id"] + 1


# Burst merging and continuity --------------------------------------------------


def test_burst_is_merged_into_the_waiting_pulse(tg):
    tg.fake.user_says(CHAT, "first thought")
    tg.fake.user_says(CHAT, "second thought")
    tg.fake.user_says(OTHER_CHAT, "other chat")
    tg.fake.user_says(CHAT, "third thought")
    tg.start()

    wait_for(lambda: len(tg.stored_ids(CHAT)) == 3 and tg.stored_ids(OTHER_CHAT))

    (pulse,) = tg.chat_pulses(CHAT)
    assert pulse.meta["telegram"]["message_ids"] == [1, 2, 3]
    first = pulse.prompt.index("first thought")
    assert first < pulse.prompt.index("second thought")
    assert pulse.prompt.index("second thought") < pulse.prompt.index("third thought")
    assert pulse.prompt.count("send_notification") == 1
    assert len(tg.chat_pulses(OTHER_CHAT)) == 1


def test_message_after_pulse_started_makes_new_pulse(tg):
    tg.start()
    tg.fake.user_says(CHAT, "first")
    (first,) = wait_for(lambda: tg.chat_pulses(CHAT))
    tg.claim(first.id)

    tg.fake.user_says(CHAT, "second")
    wait_for(lambda: len(tg.chat_pulses(CHAT)) == 2)

    second = store.get_pulse(tg.db, max(p.id for p in tg.chat_pulses(CHAT)))
    assert "second" in second.prompt
    assert "second" not in store.get_pulse(tg.db, first.id).prompt
    assert second.meta["telegram"]["message_ids"] == [2]


@pytest.mark.parametrize(
    ("ago", "expected"),
    [
        pytest.param(timedelta(minutes=5), "sess-chat", id="within-window"),
        pytest.param(timedelta(hours=2), None, id="window-passed"),
    ],
)
def test_continuity_resumes_recent_session(tg, ago, expected):
    tg.start()
    tg.fake.user_says(CHAT, "first")
    (first,) = wait_for(lambda: tg.chat_pulses(CHAT))
    tg.finish(first.id, "sess-chat", ago)

    tg.fake.user_says(CHAT, "follow-up")
    wait_for(lambda: len(tg.chat_pulses(CHAT)) == 2)

    latest = max(tg.chat_pulses(CHAT), key=lambda p: p.id)
    assert latest.session_id == expected


def test_continuity_never_crosses_chats(tg):
    tg.start()
    tg.fake.user_says(CHAT, "first")
    (first,) = wait_for(lambda: tg.chat_pulses(CHAT))
    tg.finish(first.id, "sess-chat", timedelta(minutes=1))

    tg.fake.user_says(OTHER_CHAT, "hello from the group")
    (other,) = wait_for(lambda: tg.chat_pulses(OTHER_CHAT))

    assert other.session_id is None


# Commands --------------------------------------------------------------------


def _answers(fake, count):
    wait_for(lambda: len(fake.sent) >= count)
    return fake.sent


def test_help_command_is_answered_silently_without_pulse(tg):
    tg.start()

    tg.fake.user_says(CHAT, "/help")
    (answer,) = _answers(tg.fake, 1)

    assert answer.chat_id == CHAT
    assert "/cancel ID" in answer.text
    assert answer.disable_notification is True
    assert answer.parse_mode is None
    assert tg.pulses() == []


def test_pulses_and_cancel_commands(tg):
    pulse, _ = store.add_pulse(
        tg.db, prompt="water the plants", scheduled_at=utcnow() + timedelta(hours=1)
    )
    tg.start()

    tg.fake.user_says(CHAT, "/pulses")
    tg.fake.user_says(CHAT, f"/cancel {pulse.id}")
    tg.fake.user_says(CHAT, f"/cancel@reeve_test_bot {pulse.id}")
    tg.fake.user_says(CHAT, "/cancel soon")
    listing, cancelled, again, usage = _answers(tg.fake, 4)

    assert f"#{pulse.id} " in listing.text
    assert "water the plants" in listing.text
    assert cancelled.text == f"Pulse {pulse.id} cancelled: water the plants"
    assert again.text == (
        f"Pulse {pulse.id} is cancelled; only pending pulses can be cancelled"
    )
    assert usage.text == "Usage: /cancel ID (see /pulses for the ids)"
    assert store.get_pulse(tg.db, pulse.id).status.value == "cancelled"
    assert len(tg.pulses()) == 1


def test_status_command_reports_daemon_and_counts(tg):
    store.add_pulse(tg.db, prompt="later", scheduled_at=utcnow() + timedelta(hours=1))
    tg.start()

    tg.fake.user_says(CHAT, "/status")
    (answer,) = _answers(tg.fake, 1)

    assert answer.text.splitlines()[0] == (
        "Daemon NOT running: pulses wait until it starts"
    )
    assert "1 pending, 0 running, 0 schedules" in answer.text
    assert "later" in answer.text


def test_failed_answer_is_resent_without_running_the_command_again(tg):
    pulse, _ = store.add_pulse(
        tg.db, prompt="feed the cat", scheduled_at=utcnow() + timedelta(hours=1)
    )
    tg.fake.fail("sendMessage", 502, times=2)
    tg.start()

    tg.fake.user_says(CHAT, f"/cancel {pulse.id}")
    (answer,) = _answers(tg.fake, 1)

    assert answer.text == f"Pulse {pulse.id} cancelled: feed the cat"
    assert len(tg.fake.calls_of("sendMessage")) == 3


def test_message_that_can_never_be_stored_is_skipped_with_an_error(tg, caplog):
    caplog.set_level(logging.ERROR)
    tg.start(max_prompt_bytes="1000")

    too_long = tg.fake.user_says(CHAT, "x" * 1200)
    tg.fake.user_says(CHAT, "short")
    wait_for(lambda: tg.stored_ids(CHAT))

    assert tg.stored_ids(CHAT) == [2]
    (record,) = caplog.records
    assert re.fullmatch(
        rf"Telegram update {too_long['update_id']} skipped: The prompt is 1\d\d\d "
        r"bytes; the limit is 1000 \(REEVE_MAX_PROMPT_BYTES\)",
        record.getMessage(),
    )


def test_command_from_blocked_chat_is_not_answered(tg):
    tg.start()

    tg.fake.user_says(STRANGER, "/status")
    tg.fake.user_says(CHAT, "/help")
    _answers(tg.fake, 1)

    assert [a.chat_id for a in tg.fake.sent] == [CHAT]


# Failures of the Bot API and of the database -----------------------------------


def test_conflict_stops_the_bridge_with_a_clear_error(tg):
    tg.fake.fail("getUpdates", 409)
    tg.start()

    tg.thread.join(timeout=15)

    assert isinstance(tg.error, BotConflict)
    assert tg.error.exit_code == 4
    assert "another program is polling this bot" in tg.error.message
    tg.bridge = None


def test_rate_limit_waits_retry_after(tg):
    tg.fake.fail("getUpdates", 429, retry_after=1)
    tg.fake.user_says(CHAT, "after the wait")
    tg.start()

    wait_for(lambda: tg.chat_pulses(CHAT))

    (limited, _), (retried, _) = tg.fake.calls_of("getUpdates")[:2]
    assert retried - limited >= 0.95


def test_server_errors_back_off_exponentially(tg):
    tg.fake.fail("getUpdates", 502, times=2, html=True)
    tg.fake.fail("getUpdates", 500, times=1)
    tg.fake.user_says(CHAT, "after the errors")
    tg.start()

    wait_for(lambda: tg.chat_pulses(CHAT))

    times = [at for at, _ in tg.fake.calls_of("getUpdates")[:4]]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    minimum = [0.05, 0.1, 0.2]  # Backoff(base=0.05) doubles
    assert [gap >= low * 0.9 for gap, low in zip(gaps, minimum, strict=True)] == [
        True
    ] * 3


def test_outage_then_recovery_loses_nothing(tg, caplog):
    caplog.set_level(logging.WARNING)
    tg.start()
    tg.fake.user_says(CHAT, "before")
    wait_for(lambda: tg.stored_ids(CHAT) == [1])

    with tg.fake.outage():
        tg.fake.user_says(CHAT, "during")
        wait_for(lambda: "cannot reach the Bot API" in caplog.text)
    tg.fake.user_says(CHAT, "after")
    wait_for(lambda: len(tg.stored_ids(CHAT)) == 3)

    assert sorted(tg.stored_ids(CHAT)) == [1, 2, 3]


def test_database_outage_retries_the_same_update(tg, caplog):
    caplog.set_level(logging.WARNING)
    blocker = sqlite3.connect(tg.settings.db_url.removeprefix("sqlite:///"))
    blocker.execute("BEGIN IMMEDIATE")
    tg.fake.user_says(CHAT, "one")
    tg.fake.user_says(STRANGER, "blocked")
    tg.fake.user_says(CHAT, "two")
    tg.start(busy_timeout="0.1")

    wait_for(lambda: caplog.text.count("not stored") >= 2)
    first_offset = tg.offset()
    offsets_seen = {p.get("offset") for _, p in tg.fake.calls_of("getUpdates")}
    blocker.execute("ROLLBACK")
    blocker.close()
    wait_for(lambda: len(tg.stored_ids(CHAT)) == 2)

    assert first_offset is None
    assert offsets_seen == {None}  # nothing was confirmed to Telegram meanwhile
    assert tg.stored_ids(CHAT) == [1, 2]
    last = tg.fake.user_says(CHAT, "three")
    wait_for(lambda: tg.offset() == last["update_id"] + 1)
    assert tg.stored_ids(CHAT) == [1, 2, 3]


# The `reeve telegram` process ----------------------------------------------------


def _spawn_bridge(*args):
    return subprocess.Popen(
        [reeve_bin(), *args, "telegram", "--poll-timeout", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )


def test_restart_mid_stream_loses_and_doubles_nothing(tg):
    chats = [CHAT, OTHER_CHAT]
    expected = {CHAT: [], OTHER_CHAT: []}
    proc = _spawn_bridge()
    try:
        for n in range(12):
            chat = chats[n % 2]
            tg.fake.user_says(chat, f"message {n}")
            expected[chat].append(len(expected[chat]) + 1)
            if n % 3 == 2:  # let the dispatcher start some pulses meanwhile
                for pulse in tg.pulses():
                    if pulse.status.value == "pending":
                        tg.claim(pulse.id)
        wait_for(lambda: len(tg.stored_ids(CHAT)) >= 2)
        proc.kill()
        proc.wait(timeout=15)
        for n in range(12, 20):
            chat = chats[n % 2]
            tg.fake.user_says(chat, f"message {n}")
            expected[chat].append(len(expected[chat]) + 1)

        proc = _spawn_bridge()
        wait_for(
            lambda: all(len(tg.stored_ids(c)) >= len(expected[c]) for c in chats),
            timeout=30,
        )
        time.sleep(0.5)  # a duplicate would show up now
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)

    assert proc.returncode == 0
    for chat in chats:
        assert sorted(tg.stored_ids(chat)) == expected[chat]
    prompts = "\n".join(p.prompt for p in tg.pulses()) + "\n"
    assert [prompts.count(f"\nmessage {n}\n") for n in range(20)] == [1] * 20


def test_reeve_telegram_exits_4_on_conflict(tg, run_reeve):
    tg.fake.fail("getUpdates", 409, times=5)

    result = run_reeve("telegram", "--poll-timeout", "1")

    assert result.returncode == 4
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: Telegram refused getUpdates with 409 Conflict (Conflict: terminated "
        "by other getUpdates request; make sure that only one bot instance is "
        "running): another program is polling this bot, or a webhook is set. Stop "
        "the other poller (or delete the webhook) and start 'reeve telegram' again"
    )


def test_token_never_appears_in_verbose_logs(tg):
    tg.fake.fail("getUpdates", 502, times=1)
    tg.fake.fail("sendMessage", 500, times=1)
    proc = _spawn_bridge("-vv")
    try:
        tg.fake.user_says(CHAT, "hello")
        tg.fake.user_says(CHAT, "/help")
        wait_for(lambda: tg.chat_pulses(CHAT) and tg.fake.sent)
        with tg.fake.outage():
            time.sleep(2)  # longer than one idle pause plus one poll
        tg.fake.user_says(CHAT, "again")
        wait_for(lambda: len(tg.stored_ids(CHAT)) == 2)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)

    assert "Telegram bridge started (bot 123456789" in stderr
    assert "HTTP 502" in stderr
    assert "cannot reach the Bot API" in stderr
    assert tg.fake.token not in stderr
    assert tg.fake.token.partition(":")[2] not in stderr


def test_telegram_check_reports_the_bot(tg, cli):
    result = cli("telegram", "check")

    assert result.exit_code == 0
    assert result.stdout.splitlines()[:2] == [
        "Bot @reeve_test_bot (id 123456789) answers",
        f"Allowed chats: {CHAT}, {OTHER_CHAT}",
    ]


def test_telegram_without_token_is_a_config_error(cli, monkeypatch):
    monkeypatch.delenv("REEVE_TELEGRAM_TOKEN", raising=False)

    result = cli("telegram")

    assert result.exit_code == 1
    assert result.stderr == (
        "Error: REEVE_TELEGRAM_TOKEN is not set; create a bot with @BotFather and "
        "set its token (see docs/telegram.md)\n"
    )
