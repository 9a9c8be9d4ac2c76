"""The Telegram bridge: each message in an allowed chat becomes a pulse, at once.

`reeve telegram` runs `Bridge.run`: long polling with `getUpdates`, one update at
a time, in order. The Bot API forgets an update once a later `offset` confirms
it, so the offset (kept in the `state` table) moves past an update only after
the update's effect is stored; when the database is unavailable the bridge backs
off and retries the same update. Nothing is skipped, and nothing is doubled: a
new pulse carries the idempotency key `telegram:<chat>:<message>`, and a message
merged into a waiting pulse is stored together with the new offset in one
transaction.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reeve_cli import store
from reeve_cli.config import Settings
from reeve_cli.db import Connection, Database
from reeve_cli.errors import DatabaseError, ReeveError
from reeve_cli.model import Priority, Pulse, Status, db_time, utcnow
from reeve_cli.telegram_api import BotApi, BotApiError, BotConflict, BotUnauthorized

logger = logging.getLogger(__name__)

SOURCE = "telegram"
BACKOFF_BASE = 1.0  # seconds; doubles per failure
BACKOFF_CAP = 60.0  # seconds
POLL_TIMEOUT = 25.0  # seconds a getUpdates call waits for news
IDLE_PAUSE = 1.0  # seconds; servers that ignore the long-poll timeout answer at once

HELP_TEXT = """\
Reeve relays your messages to the agent: each message wakes it at once, and it
answers here. Messages sent while the agent has not started yet are handed over
together.

Commands:
/status - is the daemon running, what runs, what comes next
/pulses - the next pending pulses
/cancel ID - cancel a pending pulse
/help - this text"""

ANSWER_HINT = (
    "To answer, call the MCP tool send_notification (message, priority): Reeve "
    "posts it to the Telegram chats it serves, this one included. Priority "
    "critical or high makes the phone sound; the others arrive silently."
)


class BridgeStopped(Exception):
    """Raised from a signal handler to end a long poll at once."""


def message_key(chat_id: int, message_id: int) -> str:
    """Return the idempotency key of the pulse a message creates."""
    return f"telegram:{chat_id}:{message_id}"


@dataclass
class Backoff:
    """Exponential delays for repeated failures, reset by a success."""

    base: float = BACKOFF_BASE
    cap: float = BACKOFF_CAP
    failures: int = 0

    def next_delay(self) -> float:
        delay = min(self.base * float(2**self.failures), self.cap)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0


class Bridge:
    """Poll one bot's updates and turn them into pulses and command answers."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        api: BotApi | None = None,
        *,
        poll_timeout: float = POLL_TIMEOUT,
        backoff: Backoff | None = None,
        idle_pause: float = IDLE_PAUSE,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.db = db
        self.api = api or BotApi(settings.telegram_token, settings.telegram_api_url)
        self.allowed = frozenset(int(c) for c in settings.telegram_chat_ids)
        self.priority = Priority.parse(settings.telegram_priority)
        self.continuity = float(settings.telegram_continuity)
        self.poll_timeout = poll_timeout
        self.backoff = backoff or Backoff()
        self.idle_pause = idle_pause
        self.clock = clock
        self.stopping = threading.Event()
        self.polling = False
        self.offset_key = f"telegram.offset.{self.api.bot_id}"
        self._answer: tuple[int, str] | None = None

    # Loop --------------------------------------------------------------------

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        """Poll until `stop()`; return normally, or raise a fatal ReeveError.

        Raises:
            BotConflict: another poller uses this token (HTTP 409).
            BotUnauthorized: the token is not valid.
        """
        logger.info(
            "Telegram bridge started (bot %s, %d allowed chats)",
            self.api.bot_id,
            len(self.allowed),
        )
        try:
            while not self.stopping.is_set():
                self.poll_once()
        except BridgeStopped:
            pass
        logger.info("Telegram bridge stopped")

    def poll_once(self) -> int:
        """Fetch one batch of updates and handle each; return how many were handled."""
        offset = self._load_offset()
        if offset is _UNAVAILABLE:
            return 0
        started = time.monotonic()
        updates = self._fetch(offset if isinstance(offset, int) else None)
        if updates is None:
            return 0
        if not updates and time.monotonic() - started < min(1.0, self.poll_timeout / 2):
            self.stopping.wait(self.idle_pause)

        handled = 0
        for update in sorted(updates, key=lambda u: int(u["update_id"])):
            if self.stopping.is_set():
                break
            if not self._handle_until_stored(update):
                break
            handled += 1
        return handled

    def _fetch(self, offset: int | None) -> list[dict[str, Any]] | None:
        self.polling = True
        try:
            updates = self.api.get_updates(offset, self.poll_timeout)
        except BotApiError as exc:
            self._api_failure(exc, "getUpdates")
            return None
        finally:
            self.polling = False
        self.backoff.reset()
        return updates

    def _handle_until_stored(self, update: dict[str, Any]) -> bool:
        """Handle one update, retrying it until done; False if stopped meanwhile."""
        update_id = int(update["update_id"])
        while not self.stopping.is_set():
            try:
                self.handle_update(update)
            except BotApiError as exc:
                self._api_failure(exc, "sendMessage", update_id)
                continue
            except (DatabaseError, sqlite3.Error) as exc:
                delay = self.backoff.next_delay()
                logger.warning(
                    "Telegram update %d not stored: %s; retrying in %.1fs",
                    update_id,
                    getattr(exc, "message", None) or exc,
                    delay,
                )
                self.stopping.wait(delay)
                continue
            except ReeveError as exc:
                # Retrying cannot help (e.g. a prompt over REEVE_MAX_PROMPT_BYTES).
                logger.error("Telegram update %d skipped: %s", update_id, exc.message)
                if not self._skip(update_id):
                    continue
            self.backoff.reset()
            return True
        return False

    def _api_failure(
        self, exc: BotApiError, method: str, update_id: int | None = None
    ) -> None:
        if exc.kind == "conflict":
            raise BotConflict(exc.description) from None
        if exc.kind == "unauthorized":
            raise BotUnauthorized() from None
        if exc.kind == "rate_limited":
            delay = exc.retry_after if exc.retry_after is not None else 1.0
        else:
            delay = self.backoff.next_delay()
        logger.warning("Telegram %s failed: %s; retrying in %.1fs", method, exc, delay)
        self.stopping.wait(delay)

    def _load_offset(self) -> int | None | object:
        try:
            value = store.get_state(self.db, self.offset_key)
        except (DatabaseError, sqlite3.Error) as exc:
            delay = self.backoff.next_delay()
            logger.warning(
                "Telegram offset not readable: %s; retrying in %.1fs",
                getattr(exc, "message", None) or exc,
                delay,
            )
            self.stopping.wait(delay)
            return _UNAVAILABLE
        return int(value) if value is not None else None

    # One update ----------------------------------------------------------------

    def handle_update(self, update: dict[str, Any]) -> None:
        """Act on one update and move the stored offset past it.

        Raises:
            DatabaseError, sqlite3.Error: nothing was stored; retry the update.
            BotApiError: a command's answer could not be sent; retry the update.
        """
        update_id = int(update["update_id"])
        next_offset = update_id + 1
        message = update.get("message")
        if not isinstance(message, dict):
            logger.info("Telegram update %d ignored: not a message", update_id)
            self._save_offset(next_offset)
            return

        chat_id = int((message.get("chat") or {}).get("id", 0))
        if chat_id not in self.allowed:
            logger.warning(
                "Telegram message from chat %d dropped: chat not in "
                "REEVE_TELEGRAM_CHAT_IDS",
                chat_id,
            )
            self._save_offset(next_offset)
            return

        text = message.get("text") or message.get("caption")
        if not isinstance(text, str) or not text.strip():
            logger.info(
                "Telegram message %s in chat %d ignored: no text",
                message.get("message_id"),
                chat_id,
            )
            self._save_offset(next_offset)
            return

        command, _, argument = text.strip().partition(" ")
        command = command.split("@", 1)[0].lower()
        if command in COMMANDS:
            # A failed send retries this update; the command must not run twice.
            if self._answer is None or self._answer[0] != update_id:
                self._answer = (update_id, COMMANDS[command](self, argument.strip()))
            answer = self._answer[1]
            try:
                self.api.send_message(chat_id, answer, silent=True)
            except BotApiError as exc:
                if exc.is_transient:
                    raise
                logger.warning(
                    "Telegram answer to %s in chat %d not sent: %s",
                    command,
                    chat_id,
                    exc,
                )
            self._save_offset(next_offset)
            return

        self.store_message(message, chat_id, text, next_offset)

    def _skip(self, update_id: int) -> bool:
        try:
            self._save_offset(update_id + 1)
        except (DatabaseError, sqlite3.Error):
            self.stopping.wait(self.backoff.next_delay())
            return False
        return True

    def _save_offset(self, offset: int) -> None:
        with self.db.transaction(write=True) as conn:
            store.set_state(conn, self.offset_key, str(offset))

    # Messages ----------------------------------------------------------------

    def store_message(
        self, message: dict[str, Any], chat_id: int, text: str, next_offset: int
    ) -> Pulse:
        """Merge the message into the chat's waiting pulse, or add a new pulse."""
        message_id = int(message["message_id"])
        key = message_key(chat_id, message_id)
        block = _message_block(message, chat_id, text, self.settings)

        with self.db.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM pulses WHERE idempotency_key = :key", {"key": key}
            )
        if rows:  # stored before a crash, offset not yet moved
            self._save_offset(next_offset)
            return Pulse.from_row(rows[0])

        merged = self._merge(chat_id, message_id, block, next_offset)
        if merged is not None:
            return merged

        session_id = self._continued_session(chat_id)
        prompt = f"{_HEADER}\n\n{block}"
        pulse, created = store.add_pulse(
            self.db,
            prompt=prompt,
            scheduled_at=self.clock(),
            priority=self.priority,
            session_id=session_id,
            source=SOURCE,
            idempotency_key=key,
            meta={"telegram": {"chat_id": chat_id, "message_ids": [message_id]}},
            max_prompt_bytes=self.settings.max_prompt_bytes,
        )
        self._save_offset(next_offset)
        logger.info(
            "Telegram message %d in chat %d became pulse %d%s",
            message_id,
            chat_id,
            pulse.id,
            f" (resumes session {session_id})" if session_id else "",
        )
        return pulse

    def _merge(
        self, chat_id: int, message_id: int, block: str, next_offset: int
    ) -> Pulse | None:
        """Append to the chat's pulse that has not started; None if there is none.

        The check, the change and the offset share one write transaction, so the
        dispatcher cannot claim the pulse in between, and a crash can neither
        lose the message nor append it twice.
        """
        with self.db.transaction(write=True) as conn:
            last = _last_chat_pulse(conn, chat_id)
            if last is None or last.status is not Status.PENDING or last.attempt:
                return None
            ids = list(last.meta.get("telegram", {}).get("message_ids", []))
            if message_id in ids:
                store.set_state(conn, self.offset_key, str(next_offset))
                return last
            prompt = f"{last.prompt}\n\n{block}"
            if len(prompt.encode("utf-8")) > self.settings.max_prompt_bytes:
                return None
            meta = dict(last.meta)
            meta["telegram"] = {"chat_id": chat_id, "message_ids": ids + [message_id]}
            rows = conn.execute(
                "UPDATE pulses SET prompt = :prompt, meta = :meta, updated_at = :now "
                "WHERE id = :id AND status = 'pending' RETURNING *",
                {
                    "prompt": prompt,
                    "meta": json.dumps(meta, ensure_ascii=False),
                    "now": db_time(utcnow()),
                    "id": last.id,
                },
            )
            if not rows:
                return None
            pulse = Pulse.from_row(rows[0])
            store.record_event(conn, "pulse.updated", pulse=pulse)
            store.set_state(conn, self.offset_key, str(next_offset))
        logger.info(
            "Telegram message %d in chat %d added to waiting pulse %d",
            message_id,
            chat_id,
            pulse.id,
        )
        return pulse

    def _continued_session(self, chat_id: int) -> str | None:
        """Return the chat's last session if it spoke within the continuity window."""
        if self.continuity <= 0:
            return None
        with self.db.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM pulses WHERE idempotency_key LIKE :prefix "
                "AND (result_session_id IS NOT NULL OR session_id IS NOT NULL) "
                "ORDER BY id DESC LIMIT 1",
                {"prefix": f"telegram:{chat_id}:%"},
            )
        if not rows:
            return None
        last = Pulse.from_row(rows[0])
        spoke_at = last.finished_at or last.updated_at
        if (self.clock() - spoke_at).total_seconds() > self.continuity:
            return None
        return last.result_session_id or last.session_id

    # Commands ------------------------------------------------------------------

    def command_help(self, argument: str) -> str:
        return HELP_TEXT

    def command_status(self, argument: str) -> str:
        from reeve_cli.status import collect_status
        from reeve_cli.timefmt import format_duration

        status = collect_status(self.settings, self.db)
        daemon = status["daemon"]
        if daemon["running"]:
            uptime = daemon.get("uptime_s")
            lines = [
                f"Daemon running (pid {daemon['pid']}"
                + (f", up {format_duration(uptime)})" if uptime else ")")
            ]
        else:
            lines = ["Daemon NOT running: pulses wait until it starts"]
        counts = status["counts"]
        lines.append(
            ", ".join(
                f"{counts.get(name, 0)} {name}" for name in ("pending", "running")
            )
            + f", {status['schedules']} schedules"
        )
        for pulse in status["running"]:
            lines.append(f"Running: #{pulse['id']} {_summary(pulse['prompt'])}")
        if status["next_due"]:
            lines.append("Next: " + self._pulse_line(status["next_due"]))
        if status["last_failure"]:
            failed = status["last_failure"]
            lines.append(f"Last failure: #{failed['id']} {failed.get('error') or ''}")
        return "\n".join(line.rstrip() for line in lines)

    def command_pulses(self, argument: str) -> str:
        pulses = store.list_pulses(self.db, statuses=[Status.PENDING], limit=10)
        if not pulses:
            return "No pending pulses"
        return "\n".join(self._pulse_line(p.to_dict()) for p in pulses)

    def command_cancel(self, argument: str) -> str:
        try:
            pulse_id = int(argument.lstrip("#"))
        except ValueError:
            return "Usage: /cancel ID (see /pulses for the ids)"
        try:
            pulse = store.cancel_pulse(self.db, pulse_id)
        except ReeveError as exc:
            if isinstance(exc, DatabaseError):
                raise
            return exc.message
        return f"Pulse {pulse.id} cancelled: {_summary(pulse.prompt)}"

    def _pulse_line(self, pulse: dict[str, Any]) -> str:
        from reeve_cli.timefmt import format_local

        due = datetime.fromisoformat(pulse["scheduled_at"].replace("Z", "+00:00"))
        when = format_local(due, self.settings.zone)
        return (
            f"#{pulse['id']} {when} [{pulse['priority']}] {_summary(pulse['prompt'])}"
        )


_UNAVAILABLE = object()

COMMANDS: dict[str, Callable[[Bridge, str], str]] = {
    "/help": Bridge.command_help,
    "/start": Bridge.command_help,
    "/status": Bridge.command_status,
    "/pulses": Bridge.command_pulses,
    "/cancel": Bridge.command_cancel,
}

_HEADER = f"New Telegram message(s) for you. {ANSWER_HINT}"


def _summary(prompt: str, width: int = 60) -> str:
    lines = [line for line in prompt.strip().splitlines() if line.strip()]
    if lines and lines[0].startswith(_HEADER[:20]):
        lines = [line for line in lines[1:] if not line.startswith("--- message")]
    first = lines[0] if lines else ""
    return first if len(first) <= width else first[: width - 1] + "…"


def _message_block(
    message: dict[str, Any], chat_id: int, text: str, settings: Settings
) -> str:
    from reeve_cli.timefmt import format_local

    sender = message.get("from") or {}
    name = " ".join(
        str(part)
        for part in (sender.get("first_name"), sender.get("last_name"))
        if part
    )
    who = name or "unknown sender"
    if sender.get("username"):
        who += f" (@{sender['username']}"
        who += f", user id {sender['id']})" if "id" in sender else ")"
    elif "id" in sender:
        who += f" (user id {sender['id']})"
    sent = datetime.fromtimestamp(int(message.get("date") or time.time()), UTC)
    return (
        f"--- message {message['message_id']} in chat {chat_id} from {who}, "
        f"{format_local(sent, settings.zone)} ---\n{text}"
    )


def _last_chat_pulse(conn: Connection, chat_id: int) -> Pulse | None:
    rows = conn.execute(
        "SELECT * FROM pulses WHERE idempotency_key LIKE :prefix "
        "ORDER BY id DESC LIMIT 1",
        {"prefix": f"telegram:{chat_id}:%"},
    )
    return Pulse.from_row(rows[0]) if rows else None
