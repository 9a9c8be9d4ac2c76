"""Pulses, attempts, schedules and events: rows in, rows out.

Every function here is one short transaction, safe to call from any process while
the daemon runs. Each state change writes an `events` row in the same
transaction, which feeds the API's event stream. There is no scheduling logic
here; the daemon's dispatcher decides what runs.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from reeve_cli.db import Connection, Database
from reeve_cli.errors import (
    Conflict,
    InvalidValue,
    PulseNotFound,
    PulseNotPending,
    ScheduleNotFound,
)
from reeve_cli.model import (
    FINAL_STATUSES,
    Attempt,
    Priority,
    Pulse,
    Schedule,
    Status,
    db_time,
    utcnow,
)

logger = logging.getLogger(__name__)

MAX_KEY_LENGTH = 255
MAX_NOTE_LENGTH = 10_000
MAX_TAG_LENGTH = 64
MAX_SOURCE_LENGTH = 160
DEFAULT_MAX_PROMPT_BYTES = 100_000


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def record_event(
    conn: Connection,
    kind: str,
    *,
    pulse: Pulse | None = None,
    schedule: Schedule | None = None,
    data: dict[str, Any] | None = None,
    pulse_json: str | None = None,
) -> None:
    """Append one event row; call inside the transaction that made the change.

    Args:
        pulse_json: `_json(pulse.to_dict())` when the caller has it already; the
            payload is then assembled from it instead of serialised again.
    """
    if pulse is not None and pulse_json is not None and not data and schedule is None:
        text = '{"pulse":' + pulse_json + "}"
    else:
        payload = dict(data or {})
        if pulse is not None:
            payload.setdefault("pulse", pulse.to_dict())
        if schedule is not None:
            payload.setdefault("schedule", schedule.to_dict())
        text = _json(payload)
    conn.execute(
        "INSERT INTO events (at, kind, pulse_id, schedule_name, data) "
        "VALUES (:at, :kind, :pulse_id, :schedule_name, :data)",
        {
            "at": db_time(utcnow()),
            "kind": kind,
            "pulse_id": pulse.id if pulse else None,
            "schedule_name": schedule.name if schedule else None,
            "data": text,
        },
    )


def _clean_list(values: Iterable[str] | None, what: str, limit: int) -> list[str]:
    cleaned = []
    for value in values or ():
        if not isinstance(value, str):
            raise InvalidValue(f"Each {what} must be text, got {value!r}", field=what)
        value = value.strip()
        if not value:
            raise InvalidValue(f"A {what} cannot be empty", field=what)
        if len(value) > limit:
            raise InvalidValue(
                f"A {what} is longer than {limit} characters", field=what
            )
        cleaned.append(value)
    return cleaned


def check_prompt(prompt: str, max_bytes: int = DEFAULT_MAX_PROMPT_BYTES) -> str:
    """Return the prompt if it is usable text within the size limit."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidValue(
            "The prompt is empty; say what the agent should do", field="prompt"
        )
    size = len(prompt.encode("utf-8"))
    if size > max_bytes:
        raise InvalidValue(
            f"The prompt is {size} bytes; the limit is {max_bytes} "
            "(REEVE_MAX_PROMPT_BYTES)",
            field="prompt",
        )
    return prompt


def _check_optional_text(value: str | None, what: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidValue(f"The {what} cannot be empty", field=what)
    if len(value) > limit:
        raise InvalidValue(f"The {what} is longer than {limit} characters", field=what)
    return value.strip()


def _pulse_row(conn: Connection, pulse_id: int) -> Pulse:
    rows = conn.execute("SELECT * FROM pulses WHERE id = :id", {"id": pulse_id})
    if not rows:
        raise PulseNotFound(pulse_id)
    return Pulse.from_row(rows[0])


def _by_key(conn: Connection, key: str) -> Pulse | None:
    rows = conn.execute(
        "SELECT * FROM pulses WHERE idempotency_key = :key", {"key": key}
    )
    return Pulse.from_row(rows[0]) if rows else None


def pulse_by_key(conn: Connection, key: str) -> Pulse | None:
    """Return the pulse stored with this idempotency key, inside a transaction."""
    return _by_key(conn, key)


_PULSE_INSERT_COLUMNS = (
    "prompt",
    "scheduled_at",
    "priority",
    "status",
    "session_id",
    "sticky_notes",
    "tags",
    "source",
    "created_at",
    "updated_at",
    "max_retries",
    "idempotency_key",
    "executor",
    "schedule_name",
    "meta",
)
_PULSE_INSERT = (
    f"INSERT INTO pulses ({', '.join(_PULSE_INSERT_COLUMNS)}) "
    f"VALUES ({', '.join(':' + name for name in _PULSE_INSERT_COLUMNS)}) RETURNING id"
)


def add_pulse(
    db: Database,
    *,
    prompt: str,
    scheduled_at: datetime,
    priority: Priority | str = Priority.NORMAL,
    session_id: str | None = None,
    sticky_notes: Sequence[str] = (),
    tags: Sequence[str] = (),
    source: str = "cli",
    max_retries: int = 2,
    idempotency_key: str | None = None,
    executor: str | None = None,
    schedule_name: str | None = None,
    meta: dict[str, Any] | None = None,
    max_prompt_bytes: int = DEFAULT_MAX_PROMPT_BYTES,
) -> tuple[Pulse, bool]:
    """Store a new pending pulse, or return the one that has the same key.

    Returns:
        The pulse as stored, and True if it was created by this call.

    Raises:
        InvalidValue: a field is empty, too long or of the wrong kind.
    """
    pulse, created, _ = add_pulse_json(
        db,
        prompt=prompt,
        scheduled_at=scheduled_at,
        priority=priority,
        session_id=session_id,
        sticky_notes=sticky_notes,
        tags=tags,
        source=source,
        max_retries=max_retries,
        idempotency_key=idempotency_key,
        executor=executor,
        schedule_name=schedule_name,
        meta=meta,
        max_prompt_bytes=max_prompt_bytes,
    )
    return pulse, created


def add_pulse_json(
    db: Database,
    *,
    prompt: str,
    scheduled_at: datetime,
    priority: Priority | str = Priority.NORMAL,
    session_id: str | None = None,
    sticky_notes: Sequence[str] = (),
    tags: Sequence[str] = (),
    source: str = "cli",
    max_retries: int = 2,
    idempotency_key: str | None = None,
    executor: str | None = None,
    schedule_name: str | None = None,
    meta: dict[str, Any] | None = None,
    max_prompt_bytes: int = DEFAULT_MAX_PROMPT_BYTES,
) -> tuple[Pulse, bool, str]:
    """`add_pulse`, plus the pulse's `to_dict()` as compact JSON text.

    The record is built from the values written (the row is not read back and
    re-parsed), and its JSON is rendered once, for the `pulse.created` event and
    for the caller (the HTTP API answers with it).
    """
    pulse, created, text = add_new_pulse(
        db,
        NewPulse(
            prompt=prompt,
            scheduled_at=scheduled_at,
            priority=priority,
            session_id=session_id,
            sticky_notes=sticky_notes,
            tags=tags,
            source=source,
            max_retries=max_retries,
            idempotency_key=idempotency_key,
            executor=executor,
            schedule_name=schedule_name,
            meta=meta,
            max_prompt_bytes=max_prompt_bytes,
        ),
    )
    if created:
        log_added(pulse)
    return pulse, created, text


def add_new_pulse(db: Database, new: NewPulse) -> tuple[Pulse, bool, str]:
    """`insert_pulse` in its own transaction; a key that another writer stored
    at the same moment returns that writer's pulse. Does not log."""
    try:
        with db.transaction(write=True) as conn:
            return insert_pulse(conn, new)
    except Exception as exc:
        if new.key is None or not _is_integrity_error(exc):
            raise
        with db.transaction() as conn:
            existing = _by_key(conn, new.key)
        if existing is None:
            raise
        return existing, False, _json(existing.to_dict())


class NewPulse:
    """A pulse to add, checked and rendered for its row (see `insert_pulse`).

    Raises:
        InvalidValue: a field is empty, too long or of the wrong kind.
    """

    __slots__ = ("key", "meta", "notes", "params", "priority", "scheduled_at", "tags")

    def __init__(
        self,
        *,
        prompt: str,
        scheduled_at: datetime,
        priority: Priority | str = Priority.NORMAL,
        session_id: str | None = None,
        sticky_notes: Sequence[str] = (),
        tags: Sequence[str] = (),
        source: str = "cli",
        max_retries: int = 2,
        idempotency_key: str | None = None,
        executor: str | None = None,
        schedule_name: str | None = None,
        meta: dict[str, Any] | None = None,
        max_prompt_bytes: int = DEFAULT_MAX_PROMPT_BYTES,
    ) -> None:
        check_prompt(prompt, max_prompt_bytes)
        self.priority = Priority.parse(priority)
        self.notes = _clean_list(sticky_notes, "sticky note", MAX_NOTE_LENGTH)
        self.tags = _clean_list(tags, "tag", MAX_TAG_LENGTH)
        self.key = _check_optional_text(
            idempotency_key, "idempotency key", MAX_KEY_LENGTH
        )
        session = _check_optional_text(session_id, "session id", 200)
        if not isinstance(max_retries, int) or not 0 <= max_retries <= 100:
            raise InvalidValue(
                f"max_retries must be between 0 and 100, got {max_retries!r}",
                field="max_retries",
            )
        self.scheduled_at = scheduled_at
        meta_text = _json(meta) if meta else None
        # Exactly what Pulse.from_row would read back from the row.
        self.meta = dict(json.loads(meta_text)) if meta_text else {}
        self.params: dict[str, Any] = {
            "prompt": prompt,
            "scheduled_at": None,
            "priority": self.priority.rank,
            "status": Status.PENDING.value,
            "session_id": session,
            "sticky_notes": _json(self.notes),
            "tags": _json(self.tags),
            "source": source[:MAX_SOURCE_LENGTH],
            "created_at": None,
            "updated_at": None,
            "max_retries": max_retries,
            "idempotency_key": self.key,
            "executor": executor,
            "schedule_name": schedule_name,
            "meta": meta_text,
        }
        self.set_time(scheduled_at)

    def set_time(self, scheduled_at: datetime) -> None:
        """Set when the pulse is due (an aware datetime)."""
        if scheduled_at.tzinfo is None:
            raise ValueError("scheduled_at must be timezone-aware")
        self.scheduled_at = scheduled_at.astimezone(UTC)
        self.params["scheduled_at"] = db_time(self.scheduled_at)


def insert_pulse(conn: Connection, new: NewPulse) -> tuple[Pulse, bool, str]:
    """Add a checked pulse inside the caller's write transaction.

    Returns the pulse, whether it was created (False: the one with the same key),
    and its `to_dict()` as JSON text. Logging is the caller's, after the commit
    (`log_added`).
    """
    if new.key is not None and (existing := _by_key(conn, new.key)) is not None:
        return existing, False, _json(existing.to_dict())
    created_at = utcnow()
    params = new.params
    params["created_at"] = params["updated_at"] = db_time(created_at)
    rows = conn.execute(_PULSE_INSERT, params)
    pulse = Pulse(
        id=rows[0]["id"],
        prompt=params["prompt"],
        scheduled_at=new.scheduled_at,
        priority=new.priority,
        status=Status.PENDING,
        session_id=params["session_id"],
        sticky_notes=new.notes,
        tags=new.tags,
        source=params["source"],
        created_at=created_at,
        updated_at=created_at,
        started_at=None,
        finished_at=None,
        attempt=0,
        max_retries=params["max_retries"],
        error=None,
        idempotency_key=new.key,
        executor=params["executor"],
        schedule_name=params["schedule_name"],
        exit_code=None,
        output_tail=None,
        result_session_id=None,
        result_text=None,
        cost_usd=None,
        duration_s=None,
        usage={},
        meta=new.meta,
    )
    text = _json(pulse.to_dict())
    record_event(conn, "pulse.created", pulse=pulse, pulse_json=text)
    return pulse, True, text


def log_added(pulse: Pulse) -> None:
    """Log a pulse created by `insert_pulse` (after its transaction committed)."""
    if logger.isEnabledFor(logging.INFO):
        logger.info(
            "Pulse %d added (priority %s, due %s, source %s)",
            pulse.id,
            pulse.priority.value,
            db_time(pulse.scheduled_at),
            pulse.source,
        )


def _is_integrity_error(exc: Exception) -> bool:
    if isinstance(exc, sqlite3.IntegrityError):
        return True
    return type(exc).__name__ == "IntegrityError"


def get_pulse(db: Database, pulse_id: int) -> Pulse:
    """Return one pulse.

    Raises:
        PulseNotFound: no pulse has this id.
    """
    with db.transaction() as conn:
        return _pulse_row(conn, pulse_id)


def get_attempts(db: Database, pulse_id: int) -> list[Attempt]:
    """Return the attempts of a pulse, oldest first."""
    with db.transaction() as conn:
        rows = conn.execute(
            "SELECT * FROM attempts WHERE pulse_id = :id ORDER BY number",
            {"id": pulse_id},
        )
    return [Attempt.from_row(row) for row in rows]


def list_pulses(
    db: Database,
    *,
    statuses: Iterable[Status | str] | None = (Status.PENDING,),
    tag: str | None = None,
    priority: Priority | str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = 100,
    newest_first: bool = False,
    after_id: int | None = None,
) -> list[Pulse]:
    """Return pulses that match every given filter.

    Args:
        statuses: the statuses to include; None includes all.
        since, until: bounds on `scheduled_at` (inclusive, exclusive).
        newest_first: order by id descending instead of due time.
        after_id: keyset cursor: only pulses after this id in the chosen order.
    """
    where: list[str] = []
    params: dict[str, Any] = {}
    if statuses is not None:
        names = [Status.parse(str(s)).value for s in statuses]
        placeholders = []
        for index, name in enumerate(names):
            params[f"s{index}"] = name
            placeholders.append(f":s{index}")
        where.append(f"status IN ({', '.join(placeholders) or 'NULL'})")
    if tag is not None:
        escaped = _json(tag).replace("\\", "\\\\")
        escaped = escaped.replace("%", "\\%").replace("_", "\\_")
        where.append("tags LIKE :tag ESCAPE '\\'")
        params["tag"] = f"%{escaped}%"
    if priority is not None:
        where.append("priority = :priority")
        params["priority"] = Priority.parse(str(priority)).rank
    if since is not None:
        where.append("scheduled_at >= :since")
        params["since"] = db_time(since)
    if until is not None:
        where.append("scheduled_at < :until")
        params["until"] = db_time(until)

    if newest_first:
        order = "id DESC"
        if after_id is not None:
            where.append("id < :after_id")
            params["after_id"] = after_id
    else:
        order = "scheduled_at, priority, id"
        if after_id is not None:
            where.append(
                "(scheduled_at, priority, id) > (SELECT scheduled_at, priority, id "
                "FROM pulses WHERE id = :after_id)"
            )
            params["after_id"] = after_id

    sql = "SELECT * FROM pulses"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {order}"
    if limit is not None:
        sql += " LIMIT :limit"
        params["limit"] = limit
    with db.transaction() as conn:
        rows = conn.execute(sql, params)
    return [Pulse.from_row(row) for row in rows]


def list_history(db: Database, limit: int = 20) -> list[Pulse]:
    """Return finished pulses, the most recently finished first."""
    statuses = [s.value for s in FINAL_STATUSES]
    with db.transaction() as conn:
        rows = conn.execute(
            "SELECT * FROM pulses WHERE status IN (:a, :b, :c) "
            "ORDER BY COALESCE(finished_at, updated_at) DESC, id DESC LIMIT :limit",
            {"a": statuses[0], "b": statuses[1], "c": statuses[2], "limit": limit},
        )
    return [Pulse.from_row(row) for row in rows]


def _change_pending(
    db: Database,
    pulse_id: int,
    changes: dict[str, Any],
    *,
    event: str,
    done: str,
    append_notes: Sequence[str] = (),
) -> Pulse:
    with db.transaction(write=True) as conn:
        pulse = _pulse_row(conn, pulse_id)
        if pulse.status is not Status.PENDING:
            raise PulseNotPending(pulse_id, pulse.status.value, done)
        if append_notes:  # read and write in one transaction: no lost notes
            changes = dict(
                changes, sticky_notes=_json([*pulse.sticky_notes, *append_notes])
            )
        assignments = ", ".join(f"{name} = :{name}" for name in changes)
        params = dict(changes, id=pulse_id, updated_at=db_time(utcnow()))
        rows = conn.execute(
            f"UPDATE pulses SET {assignments}, updated_at = :updated_at "
            "WHERE id = :id AND status = 'pending' RETURNING *",
            params,
        )
        if not rows:  # claimed between the read and the write
            raise PulseNotPending(pulse_id, "running", done)
        pulse = Pulse.from_row(rows[0])
        record_event(conn, event, pulse=pulse)
    return pulse


def cancel_pulse(db: Database, pulse_id: int) -> Pulse:
    """Cancel a pending pulse and return it as stored.

    Raises:
        PulseNotFound: no pulse has this id.
        PulseNotPending: the pulse already started or finished.
    """
    now = db_time(utcnow())
    pulse = _change_pending(
        db,
        pulse_id,
        {"status": Status.CANCELLED.value, "finished_at": now},
        event="pulse.cancelled",
        done="cancelled",
    )
    logger.info("Pulse %d cancelled", pulse_id)
    return pulse


def cancel_pulses(db: Database, pulse_ids: Sequence[int]) -> list[Pulse]:
    """Cancel several pending pulses in one transaction: all of them or none.

    Raises:
        PulseNotFound: an id names no pulse; nothing is cancelled.
        PulseNotPending: a pulse already started or finished; nothing is cancelled.
    """
    ids = list(dict.fromkeys(pulse_ids))
    now = db_time(utcnow())
    cancelled = []
    with db.transaction(write=True) as conn:
        for pulse_id in ids:
            pulse = _pulse_row(conn, pulse_id)
            if pulse.status is not Status.PENDING:
                raise PulseNotPending(pulse_id, pulse.status.value, "cancelled")

        for pulse_id in ids:
            rows = conn.execute(
                "UPDATE pulses SET status = :status, finished_at = :now, "
                "updated_at = :now WHERE id = :id RETURNING *",
                {"status": Status.CANCELLED.value, "now": now, "id": pulse_id},
            )
            pulse = Pulse.from_row(rows[0])
            record_event(conn, "pulse.cancelled", pulse=pulse)
            cancelled.append(pulse)

    logger.info("Pulses %s cancelled", ", ".join(map(str, ids)))
    return cancelled


def update_pulse(
    db: Database,
    pulse_id: int,
    *,
    scheduled_at: datetime | None = None,
    priority: Priority | str | None = None,
    sticky_notes: Sequence[str] | None = None,
    add_notes: Sequence[str] = (),
    prompt: str | None = None,
    tags: Sequence[str] | None = None,
    max_prompt_bytes: int = DEFAULT_MAX_PROMPT_BYTES,
) -> Pulse:
    """Change a pending pulse: its time, priority, notes, tags or prompt.

    Raises:
        PulseNotFound: no pulse has this id.
        PulseNotPending: the pulse already started or finished.
    """
    changes: dict[str, Any] = {}
    if scheduled_at is not None:
        changes["scheduled_at"] = db_time(scheduled_at)
    if priority is not None:
        changes["priority"] = Priority.parse(str(priority)).rank
    if prompt is not None:
        changes["prompt"] = check_prompt(prompt, max_prompt_bytes)
    if tags is not None:
        changes["tags"] = _json(_clean_list(tags, "tag", MAX_TAG_LENGTH))
    new_notes = _clean_list(add_notes, "sticky note", MAX_NOTE_LENGTH)
    if sticky_notes is not None:
        notes = _clean_list(sticky_notes, "sticky note", MAX_NOTE_LENGTH)
        changes["sticky_notes"] = _json(notes + new_notes)
        new_notes = []
    if not changes and not new_notes:
        raise InvalidValue("Nothing to change; give a new time, priority or notes")
    return _change_pending(
        db,
        pulse_id,
        changes,
        event="pulse.updated",
        done="changed",
        append_notes=new_notes,
    )


def reschedule_pulse(db: Database, pulse_id: int, when: datetime) -> Pulse:
    """Move a pending pulse to a new time and return it."""
    pulse = _change_pending(
        db,
        pulse_id,
        {"scheduled_at": db_time(when)},
        event="pulse.updated",
        done="rescheduled",
    )
    logger.info("Pulse %d rescheduled to %s", pulse_id, db_time(when))
    return pulse


def count_by_status(db: Database) -> dict[str, int]:
    """Return how many pulses are in each status (every status, zeros included)."""
    counts = {status.value: 0 for status in Status}
    with db.transaction() as conn:
        for row in conn.execute(
            "SELECT status, COUNT(*) AS n FROM pulses GROUP BY status"
        ):
            counts[row["status"]] = row["n"]
    return counts


def next_due(db: Database) -> Pulse | None:
    """Return the pending pulse that comes due first, or None."""
    with db.transaction() as conn:
        rows = conn.execute(
            "SELECT * FROM pulses WHERE status = 'pending' "
            "ORDER BY scheduled_at, priority, id LIMIT 1"
        )
    return Pulse.from_row(rows[0]) if rows else None


def last_failure(db: Database) -> Pulse | None:
    """Return the most recently failed pulse, or None."""
    with db.transaction() as conn:
        rows = conn.execute(
            "SELECT * FROM pulses WHERE status = 'failed' "
            "ORDER BY finished_at DESC, id DESC LIMIT 1"
        )
    return Pulse.from_row(rows[0]) if rows else None


# Schedules -----------------------------------------------------------------


def _schedule_row(conn: Connection, name: str) -> Schedule:
    rows = conn.execute("SELECT * FROM schedules WHERE name = :name", {"name": name})
    if not rows:
        raise ScheduleNotFound(name)
    return Schedule.from_row(rows[0])


def add_schedule(
    db: Database,
    *,
    name: str,
    prompt: str,
    tz: str,
    cron: str | None = None,
    every_s: float | None = None,
    priority: Priority | str = Priority.NORMAL,
    jitter_s: float = 0.0,
    session_id: str | None = None,
    sticky_notes: Sequence[str] = (),
    tags: Sequence[str] = (),
    max_retries: int | None = None,
    executor: str | None = None,
) -> Schedule:
    """Store a new schedule; the caller has validated `cron` or `every_s`.

    Raises:
        Conflict: a schedule with this name exists.
    """
    check_prompt(prompt)
    if (cron is None) == (every_s is None):
        raise InvalidValue("Give exactly one of --cron or --every", field="cron")
    now = db_time(utcnow())
    params = {
        "name": name,
        "cron": cron,
        "every_s": every_s,
        "prompt": prompt,
        "tz": tz,
        "priority": Priority.parse(str(priority)).rank,
        "jitter_s": jitter_s,
        "session_id": _check_optional_text(session_id, "session id", 200),
        "sticky_notes": _json(
            _clean_list(sticky_notes, "sticky note", MAX_NOTE_LENGTH)
        ),
        "tags": _json(_clean_list(tags, "tag", MAX_TAG_LENGTH)),
        "max_retries": max_retries,
        "executor": executor,
        "created_at": now,
        "updated_at": now,
    }
    columns = ", ".join(params)
    values = ", ".join(f":{k}" for k in params)
    with db.transaction(write=True) as conn:
        if conn.execute("SELECT 1 FROM schedules WHERE name = :name", {"name": name}):
            raise Conflict(
                f"A schedule named '{name}' exists; remove it first or pick "
                "another name",
                field="name",
            )
        rows = conn.execute(
            f"INSERT INTO schedules ({columns}) VALUES ({values}) RETURNING *", params
        )
        schedule = Schedule.from_row(rows[0])
        record_event(conn, "schedule.created", schedule=schedule)
    logger.info("Schedule %s added", name)
    return schedule


def get_schedule(db: Database, name: str) -> Schedule:
    with db.transaction() as conn:
        return _schedule_row(conn, name)


def list_schedules(db: Database) -> list[Schedule]:
    with db.transaction() as conn:
        rows = conn.execute("SELECT * FROM schedules ORDER BY name")
    return [Schedule.from_row(row) for row in rows]


SCHEDULE_FIELDS = frozenset(
    {
        "cron",
        "every_s",
        "prompt",
        "tz",
        "priority",
        "jitter_s",
        "session_id",
        "sticky_notes",
        "tags",
        "max_retries",
        "executor",
        "paused",
        "last_fire_at",
        "fire_count",
        "skip_count",
        "failure_streak",
    }
)


def update_schedule(db: Database, name: str, **changes: Any) -> Schedule:
    """Change fields of a schedule and return it as stored."""
    unknown = set(changes) - SCHEDULE_FIELDS
    if unknown:
        raise ValueError(f"unknown schedule fields: {sorted(unknown)}")
    if not changes:
        raise InvalidValue("Nothing to change in schedule '" + name + "'")
    params: dict[str, Any] = {}
    for field_name, value in changes.items():
        if field_name == "priority":
            value = Priority.parse(str(value)).rank
        elif field_name in {"sticky_notes", "tags"}:
            value = _json(list(value))
        elif isinstance(value, datetime):
            value = db_time(value)
        params[field_name] = value
    assignments = ", ".join(f"{k} = :{k}" for k in params)
    params.update(name=name, updated_at=db_time(utcnow()))
    with db.transaction(write=True) as conn:
        rows = conn.execute(
            f"UPDATE schedules SET {assignments}, updated_at = :updated_at "
            "WHERE name = :name RETURNING *",
            params,
        )
        if not rows:
            raise ScheduleNotFound(name)
        schedule = Schedule.from_row(rows[0])
        record_event(conn, "schedule.updated", schedule=schedule)
    return schedule


def set_schedule_paused(db: Database, name: str, paused: bool) -> Schedule:
    """Pause or resume a schedule; resuming also clears its failure streak.

    Raises:
        ScheduleNotFound: no schedule has this name.
    """
    changes: dict[str, Any] = {"paused": paused}
    if not paused:
        changes["failure_streak"] = 0
    return update_schedule(db, name, **changes)


def remove_schedule(db: Database, name: str) -> Schedule:
    """Delete a schedule; pulses it already created stay."""
    with db.transaction(write=True) as conn:
        schedule = _schedule_row(conn, name)
        conn.execute("DELETE FROM schedules WHERE name = :name", {"name": name})
        record_event(conn, "schedule.removed", schedule=schedule)
    logger.info("Schedule %s removed", name)
    return schedule


# Small persistent state ------------------------------------------------------


def get_state(db: Database, key: str) -> str | None:
    with db.transaction() as conn:
        rows = conn.execute("SELECT value FROM state WHERE key = :key", {"key": key})
    return str(rows[0]["value"]) if rows else None


def set_state(conn: Connection, key: str, value: str) -> None:
    """Store a named value; call inside a write transaction."""
    conn.execute(
        "INSERT INTO state (key, value, updated_at) VALUES (:key, :value, :at) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
        "updated_at = excluded.updated_at",
        {"key": key, "value": value, "at": db_time(utcnow())},
    )
