"""Tell the user something through the configured notifier, and keep a record.

`notify` is what the MCP tool `send_notification` calls: one row in the
`notifications` table per message, delivery retried with backoff, the outcome
recorded. `alert` is the daemon's way to report failures (a pulse out of
retries, a paused schedule, a restart after a crash): rate limited per kind, and
it never raises.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from reeve_cli.config import Settings
from reeve_cli.db import Database
from reeve_cli.errors import InvalidValue, PluginError
from reeve_cli.model import Priority, db_time, iso_utc, parse_db_time, utcnow

logger = logging.getLogger(__name__)

RETRY_DELAYS: tuple[float, ...] = (1.0, 3.0)  # seconds before the 2nd and 3rd try
ALERT_INTERVAL = 900.0  # seconds: at most one alert of a kind per 15 minutes
MAX_MESSAGE_CHARS = 100_000

NO_NOTIFIER = (
    "No notifier configured; set REEVE_TELEGRAM_TOKEN and REEVE_TELEGRAM_CHAT_IDS"
)


def notify(
    settings: Settings,
    db: Database,
    message: str,
    priority: Priority | str = "normal",
    *,
    retry_delays: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Send a message to the user and return its `notifications` row as a dict.

    Delivery is tried once plus once per entry of `retry_delays` (default
    `RETRY_DELAYS`). A message that could not be delivered is recorded with
    status `failed` and returned, not raised: a notification must never crash
    the daemon or the tool that sent it.

    Raises:
        PluginError: no notifier is configured.
        InvalidValue: the message is empty or too long, or the priority unknown.
    """
    from reeve_cli import plugins

    if not isinstance(message, str) or not message.strip():
        raise InvalidValue("The message is empty; say something", field="message")
    if len(message) > MAX_MESSAGE_CHARS:
        raise InvalidValue(
            f"The message is longer than {MAX_MESSAGE_CHARS} characters",
            field="message",
        )
    level = Priority.parse(str(priority))
    notifier = plugins.get_notifier(settings)
    if notifier is None:
        raise PluginError(NO_NOTIFIER)

    row_id = _insert(db, notifier.name, level, message)
    delays = list(RETRY_DELAYS if retry_delays is None else retry_delays)
    tries = 0
    while True:
        tries += 1
        try:
            notifier.send(settings, message, level)
        except Exception as exc:
            error = _safe_text(exc, settings)
            last = not delays
            _update(db, row_id, "failed" if last else "pending", tries, error)
            if last:
                logger.warning(
                    "Notification %d failed after %d tries: %s", row_id, tries, error
                )
                break
            delay = delays.pop(0)
            logger.warning(
                "Notification %d try %d failed: %s; retrying in %.1fs",
                row_id,
                tries,
                error,
                delay,
            )
            time.sleep(delay)
            continue
        _update(db, row_id, "sent", tries, None, sent=True)
        logger.info("Notification %d sent through %s", row_id, notifier.name)
        break
    return get_notification(db, row_id)


def alert(settings: Settings, db: Database, kind: str, message: str) -> None:
    """Send a failure alert, at most one per `kind` every `ALERT_INTERVAL` seconds.

    Alerts held back by the rate limit are counted, and the next alert of the
    kind says how many there were. Never raises; a failure is logged.
    """
    try:
        text = _rate_limited_text(db, kind, message)
        if text is None:
            return
        row = notify(settings, db, text, Priority.HIGH)
        if row["status"] != "sent":
            logger.warning("Alert %s not delivered: %s", kind, row["last_error"])
    except Exception as exc:
        logger.warning("Alert %s not sent: %s", kind, _safe_text(exc, settings))


def get_notification(db: Database, notification_id: int) -> dict[str, Any]:
    """Return one `notifications` row as the dict shared by MCP and the API."""
    with db.transaction() as conn:
        rows = conn.execute(
            "SELECT * FROM notifications WHERE id = :id", {"id": notification_id}
        )
    return _to_dict(rows[0])


def list_notifications(db: Database, limit: int = 50) -> list[dict[str, Any]]:
    """Return the most recent notifications, newest first."""
    with db.transaction() as conn:
        rows = conn.execute(
            "SELECT * FROM notifications ORDER BY id DESC LIMIT :limit",
            {"limit": limit},
        )
    return [_to_dict(row) for row in rows]


def _to_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "created_at": iso_utc(parse_db_time(row["created_at"])),
        "notifier": row["notifier"],
        "priority": Priority.from_rank(row["priority"]).value,
        "message": row["message"],
        "status": row["status"],
        "tries": row["tries"],
        "last_error": row["last_error"],
        "sent_at": iso_utc(parse_db_time(row["sent_at"])),
    }


def _insert(db: Database, notifier: str, priority: Priority, message: str) -> int:
    with db.transaction(write=True) as conn:
        rows = conn.execute(
            "INSERT INTO notifications (created_at, notifier, priority, message, "
            "status, tries) VALUES (:at, :notifier, :priority, :message, "
            "'pending', 0) RETURNING id",
            {
                "at": db_time(utcnow()),
                "notifier": notifier,
                "priority": priority.rank,
                "message": message,
            },
        )
    return int(rows[0]["id"])


def _update(
    db: Database,
    row_id: int,
    status: str,
    tries: int,
    error: str | None,
    *,
    sent: bool = False,
) -> None:
    with db.transaction(write=True) as conn:
        conn.execute(
            "UPDATE notifications SET status = :status, tries = :tries, "
            "last_error = COALESCE(:error, last_error), sent_at = :sent_at "
            "WHERE id = :id",
            {
                "status": status,
                "tries": tries,
                "error": error,
                "sent_at": db_time(utcnow()) if sent else None,
                "id": row_id,
            },
        )


def _rate_limited_text(db: Database, kind: str, message: str) -> str | None:
    """Return the alert text to send now, or None while the kind is rate limited."""
    from reeve_cli import store

    key = f"alert.{kind}"
    now = utcnow()
    with db.transaction(write=True) as conn:
        rows = conn.execute("SELECT value FROM state WHERE key = :key", {"key": key})
        state = json.loads(rows[0]["value"]) if rows else {}
        last = parse_db_time(state.get("last_at"))
        held = int(state.get("held", 0))
        if last is not None and now - last < timedelta(seconds=ALERT_INTERVAL):
            store.set_state(conn, key, json.dumps({**state, "held": held + 1}))
            logger.info("Alert %s held back by the rate limit", kind)
            return None
        store.set_state(conn, key, json.dumps({"last_at": db_time(now), "held": 0}))
    text = f"Reeve alert: {message}"
    if held:
        text += f"\n({held} more alert(s) of this kind were held back before this one)"
    return text


def _safe_text(exc: Exception, settings: Settings) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    for secret in settings.secrets():
        text = text.replace(secret, "********")
    return text[:500]
