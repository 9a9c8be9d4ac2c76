"""Recurring schedules: validation, fire-time arithmetic and firing.

A schedule is a row in Reeve's `schedules` table; the daemon mirrors each one
into an APScheduler job whose trigger comes from `make_trigger`. Every front end
(CLI, HTTP API, MCP) creates schedules through `create_schedule`, so the rules
are the same everywhere.

Cron expressions follow crontab(5): five fields, day of week 0 and 7 = Sunday,
names allowed, and when both day of month and day of week are restricted a day
matching either one fires. Times are wall-clock times in the schedule's zone:
a time skipped by a DST jump fires right after the jump, and a time that occurs
twice fires once (the first time), unless the hour field is a wildcard.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger

from reeve_cli import store
from reeve_cli.errors import InvalidValue
from reeve_cli.model import Priority, Pulse, Schedule, db_time, iso_utc, utcnow

if TYPE_CHECKING:
    from reeve_cli.config import Settings
    from reeve_cli.db import Database

logger = logging.getLogger(__name__)

CRON_FORMS = (
    "five fields 'minute hour day-of-month month day-of-week', "
    "e.g. '0 9 * * 1-5', or @hourly, @daily, @weekly, @monthly, @yearly"
)
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
MIN_EVERY_S = 1.0
MAX_NAME_LENGTH = 128


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidValue(
            f"Unknown time zone '{tz}'; use an IANA name such as 'Europe/Berlin'",
            field="tz",
        ) from None


def _expand_numeric(part: str) -> list[int]:
    """Expand one crontab day-of-week item ('1-5', '*/2', '0', '5-7/2')."""
    base, _, step_text = part.partition("/")
    step = int(step_text) if step_text else 1
    if step < 1:
        raise ValueError(f"step must be at least 1 in '{part}'")
    if base == "*":
        first, last = 0, 6
    elif "-" in base:
        low, high = base.split("-", 1)
        first, last = int(low), int(high)
    else:
        first = int(base)
        last = 7 if step_text else first
    if not (0 <= first <= 7 and 0 <= last <= 7) or first > last:
        raise ValueError(f"day of week '{part}' is outside 0-7")
    return sorted({day % 7 for day in range(first, last + 1, step)})


def _translate_dow(field: str) -> str:
    """Turn crontab's day of week (0 and 7 = Sunday) into APScheduler names.

    APScheduler 3 counts 0 = Monday, so numbers are never passed through.
    """
    if field == "*":
        return "*"
    items: list[str] = []
    for part in field.lower().split(","):
        if not part:
            raise ValueError("empty item in day of week")
        if any(ch.isalpha() for ch in part):
            items.append(part)  # names mean the same in both systems
            continue
        items.extend(_DAY_NAMES[day] for day in _expand_numeric(part))
    return ",".join(dict.fromkeys(items))


def _fields(expr: str) -> list[str]:
    text = " ".join(expr.split())
    text = MACROS.get(text.lower(), text)
    fields = text.split(" ")
    if len(fields) != 5:
        raise ValueError(f"it has {len(fields)} fields, not 5")
    return fields


def _cron_triggers(expr: str, zone: tzinfo) -> list[Any]:
    from apscheduler.triggers.cron import CronTrigger

    minute, hour, day, month, dow = _fields(expr)
    common = {"minute": minute, "hour": hour, "month": month, "second": "0"}
    week_days = _translate_dow(dow)
    if day != "*" and dow != "*":
        # crontab(5): when both are restricted, either one matching fires.
        return [
            CronTrigger(day=day, timezone=zone, **common),
            CronTrigger(day_of_week=week_days, timezone=zone, **common),
        ]
    return [CronTrigger(day=day, day_of_week=week_days, timezone=zone, **common)]


class CrontabTrigger(BaseTrigger):  # type: ignore[misc]
    """An APScheduler trigger with crontab(5) semantics in a DST-aware zone.

    Stored pickled in APScheduler's job table by its import path
    `reeve_cli.schedule:CrontabTrigger`: never rename or move this class.
    """

    def __init__(self, expr: str, tz: str) -> None:
        self.expr = expr
        self.tz = tz
        self.once_per_wall_time = not _fields(expr)[1].startswith("*")
        self.triggers = _cron_triggers(expr, ZoneInfo(tz))

    def __getstate__(self) -> dict[str, Any]:
        return {"version": 1, "expr": self.expr, "tz": self.tz}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["expr"], state["tz"])  # type: ignore[misc]

    def __str__(self) -> str:
        return f"crontab[{self.expr} {self.tz}]"

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        after = now
        for _ in range(4):
            found = [
                t.get_next_fire_time(previous_fire_time, after) for t in self.triggers
            ]
            candidates = [c for c in found if c is not None]
            if not candidates:
                return None
            nxt: datetime = min(candidates)
            if self.once_per_wall_time and _is_repeat(nxt):
                # Skip the rest of the repeated hour: APScheduler's CronTrigger
                # compares wall times there and would return `nxt` again.
                first, second = nxt.replace(fold=0).utcoffset(), nxt.utcoffset()
                assert first is not None and second is not None
                overlap = first - second
                previous_fire_time = None
                after = (nxt + overlap).astimezone(UTC)
                continue
            return nxt
        return None


def _is_repeat(moment: datetime) -> bool:
    """Tell whether `moment` is the second occurrence of an ambiguous wall time.

    In a fall-back overlap the first occurrence (fold=0) has the larger offset;
    in a spring-forward gap it is the other way round, and nothing repeats.
    """
    first = moment.replace(fold=0).utcoffset()
    second = moment.replace(fold=1).utcoffset()
    if first is None or second is None or first <= second:
        return False
    return moment.utcoffset() == second


def validate_cron(expr: str, tz: str) -> str:
    """Check a crontab expression and return it normalised.

    Raises:
        InvalidValue: the expression or the zone cannot be used.
    """
    _zone(tz)
    text = " ".join(str(expr).split())
    try:
        trigger = CrontabTrigger(text, tz)
        upcoming = trigger.get_next_fire_time(None, utcnow())
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidValue(
            f"Cannot read cron expression '{expr}': {exc}; use {CRON_FORMS}",
            field="cron",
        ) from None
    if upcoming is None:
        raise InvalidValue(
            f"Cron expression '{expr}' never fires; use {CRON_FORMS}", field="cron"
        )
    return text


def make_trigger(schedule: Schedule) -> Any:
    """Build the APScheduler trigger for a schedule (cron or interval)."""
    if schedule.cron:
        return CrontabTrigger(schedule.cron, schedule.tz)
    from apscheduler.triggers.interval import IntervalTrigger

    every = float(schedule.every_s or 0)
    return IntervalTrigger(
        seconds=every,
        start_date=schedule.created_at + timedelta(seconds=every),
        timezone=UTC,
    )


def next_fire_times(schedule: Schedule, n: int, after: datetime) -> list[datetime]:
    """Return the next `n` fire times of a schedule after `after` (aware, UTC)."""
    trigger = make_trigger(schedule)
    times: list[datetime] = []
    previous: datetime | None = None
    now = after
    while len(times) < n:
        nxt = trigger.get_next_fire_time(previous, now)
        if nxt is None:
            break
        nxt = nxt.astimezone(UTC)
        if nxt <= after:
            now = after + timedelta(microseconds=1)
            previous = nxt
            continue
        times.append(nxt)
        previous = nxt
        now = nxt + timedelta(microseconds=1)
    return times


def _check_name(name: str) -> str:
    cleaned = str(name).strip()
    if not cleaned:
        raise InvalidValue("A schedule needs a name", field="name")
    if len(cleaned) > MAX_NAME_LENGTH or any(ch.isspace() for ch in cleaned):
        raise InvalidValue(
            f"Schedule name '{name}' must be one word of at most "
            f"{MAX_NAME_LENGTH} characters",
            field="name",
        )
    return cleaned


def _seconds(value: float | str | None, what: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return float(value)
    from reeve_cli.timefmt import parse_duration

    try:
        return parse_duration(str(value)).total_seconds()
    except InvalidValue as exc:
        raise InvalidValue(exc.message, field=what) from None


def create_schedule(
    settings: Settings,
    db: Database,
    *,
    name: str,
    prompt: str,
    cron: str | None = None,
    every: float | str | None = None,
    tz: str | None = None,
    priority: Priority | str = "normal",
    jitter: float | str | None = None,
    session_id: str | None = None,
    sticky_notes: Sequence[str] = (),
    tags: Sequence[str] = (),
    max_retries: int | None = None,
    executor: str | None = None,
) -> Schedule:
    """Validate and store a new schedule; the daemon picks it up within 100 ms.

    Args:
        every: an interval in seconds or a duration text such as '15m'.
        jitter: up to this many seconds (or a duration text) of random delay
            added to each fire's pulse.

    Raises:
        InvalidValue: a field is wrong (the message says what is accepted).
        Conflict: a schedule with this name exists.
    """
    name = _check_name(name)
    zone_name = tz or settings.timezone
    _zone(zone_name)
    every_s = _seconds(every, "every")
    if (cron is None) == (every_s is None):
        raise InvalidValue("Give exactly one of --cron or --every", field="cron")
    if cron is not None:
        cron = validate_cron(cron, zone_name)
    if every_s is not None and every_s < MIN_EVERY_S:
        raise InvalidValue(
            f"--every must be at least {MIN_EVERY_S:g}s, got {every_s:g}s",
            field="every",
        )
    jitter_s = _seconds(jitter, "jitter") or 0.0
    if jitter_s < 0:
        raise InvalidValue("--jitter cannot be negative", field="jitter")
    store.check_prompt(prompt, settings.max_prompt_bytes)
    return store.add_schedule(
        db,
        name=name,
        prompt=prompt,
        tz=zone_name,
        cron=cron,
        every_s=every_s,
        priority=Priority.parse(str(priority)),
        jitter_s=jitter_s,
        session_id=session_id,
        sticky_notes=sticky_notes,
        tags=tags,
        max_retries=max_retries,
        executor=executor,
    )


def fire_key(name: str, fire_time: datetime) -> str:
    """Idempotency key of one fire: the same fire never makes two pulses."""
    key = f"schedule:{name}:{iso_utc(fire_time)}"
    if len(key) > store.MAX_KEY_LENGTH:
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        key = f"schedule:{digest}:{iso_utc(fire_time)}"
    return key


def _active_pulse(db: Database, name: str) -> int | None:
    with db.transaction() as conn:
        rows = conn.execute(
            "SELECT id FROM pulses WHERE schedule_name = :name "
            "AND status IN ('pending', 'running') ORDER BY id LIMIT 1",
            {"name": name},
        )
    return int(rows[0]["id"]) if rows else None


def fire_schedule(
    settings: Settings,
    db: Database,
    name: str,
    fire_time: datetime,
    *,
    manual: bool = False,
) -> Pulse | None:
    """Create the pulse of one fire, or count a skip; return the pulse or None.

    A fire while the previous pulse of the schedule is pending or running is
    skipped and counted in `skip_count`.
    """
    schedule = store.get_schedule(db, name)
    active = _active_pulse(db, name)
    if active is not None:
        with db.transaction(write=True) as conn:
            rows = conn.execute(
                "UPDATE schedules SET skip_count = skip_count + 1, "
                "updated_at = :now WHERE name = :name RETURNING *",
                {"name": name, "now": db_time(utcnow())},
            )
            if rows:
                store.record_event(
                    conn,
                    "schedule.skipped",
                    schedule=Schedule.from_row(rows[0]),
                    data={"fire_time": iso_utc(fire_time), "pending_pulse": active},
                )
        logger.info(
            "Schedule %s skipped its fire at %s: pulse %d is still active",
            name,
            iso_utc(fire_time),
            active,
        )
        return None

    due = fire_time
    if schedule.jitter_s > 0:
        due = fire_time + timedelta(seconds=random.uniform(0, schedule.jitter_s))
    key = fire_key(name, fire_time)
    if manual:
        key = f"{key}:run"
    pulse, created = store.add_pulse(
        db,
        prompt=schedule.prompt,
        scheduled_at=due,
        priority=schedule.priority,
        session_id=schedule.session_id,
        sticky_notes=schedule.sticky_notes,
        tags=schedule.tags,
        source=f"schedule:{name}",
        max_retries=(
            schedule.max_retries
            if schedule.max_retries is not None
            else settings.max_retries
        ),
        idempotency_key=key,
        executor=schedule.executor,
        schedule_name=name,
        max_prompt_bytes=settings.max_prompt_bytes,
    )
    if created:
        with db.transaction(write=True) as conn:
            rows = conn.execute(
                "UPDATE schedules SET fire_count = fire_count + 1, "
                "last_fire_at = :fired, updated_at = :now WHERE name = :name "
                "RETURNING *",
                {
                    "name": name,
                    "fired": db_time(fire_time),
                    "now": db_time(utcnow()),
                },
            )
            if rows:
                store.record_event(
                    conn,
                    "schedule.fired",
                    schedule=Schedule.from_row(rows[0]),
                    data={"fire_time": iso_utc(fire_time), "pulse_id": pulse.id},
                )
        logger.info(
            "Schedule %s fired at %s: pulse %d (priority %s)",
            name,
            iso_utc(fire_time),
            pulse.id,
            pulse.priority.value,
        )
    return pulse


def fire_schedule_now(settings: Settings, db: Database, name: str) -> Pulse | None:
    """Fire a schedule at once (`reeve schedule run`); None when skipped."""
    return fire_schedule(settings, db, name, utcnow(), manual=True)
