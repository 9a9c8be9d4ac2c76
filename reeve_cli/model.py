"""The vocabulary and records every part of Reeve shares.

Statuses and priorities are spelled here and nowhere else. `Pulse.to_dict` is
the one JSON shape that `--json`, the HTTP API and the MCP tools return.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from reeve_cli.errors import InvalidPriority, InvalidStatus


class Status(StrEnum):
    """Where a pulse is in its life."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @classmethod
    def parse(cls, value: str) -> Status:
        try:
            return cls(value.strip().lower())
        except ValueError:
            raise InvalidStatus(value, [s.value for s in cls]) from None

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})


class Priority(StrEnum):
    """How urgent a pulse is; among due pulses the most urgent runs first."""

    CRITICAL = "critical"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"
    DEFERRED = "deferred"

    @classmethod
    def parse(cls, value: str) -> Priority:
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise InvalidPriority(str(value)) from None

    @property
    def rank(self) -> int:
        """Sort key stored in the database: 0 is the most urgent."""
        return PRIORITY_ORDER.index(self)

    @classmethod
    def from_rank(cls, rank: int) -> Priority:
        return PRIORITY_ORDER[rank]


PRIORITY_ORDER: tuple[Priority, ...] = tuple(Priority)


def iso_utc(moment: datetime | None) -> str | None:
    """Render an aware datetime as ISO 8601 UTC with a `Z`, or None."""
    if moment is None:
        return None
    # isoformat is several times faster than strftime (the API renders three
    # times per pulse); "milliseconds" truncates, as the old f"{us // 1000}" did.
    moment = moment.astimezone(UTC).replace(tzinfo=None)
    spec = "milliseconds" if moment.microsecond else "seconds"
    return moment.isoformat(timespec=spec) + "Z"


def db_time(moment: datetime) -> str:
    """Render an aware datetime as the fixed-width UTC text stored in the database.

    Fixed width keeps text order equal to time order, on SQLite and PostgreSQL.
    """
    naive = moment.astimezone(UTC).replace(tzinfo=None)
    return naive.isoformat(timespec="microseconds") + "Z"


def parse_db_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    # fromisoformat reads the fixed-width form (with its Z) ~10x faster than
    # strptime; the daemon parses several times per attempt.
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _loads_list(text: str | None) -> list[Any]:
    return list(json.loads(text)) if text else []


def _loads_dict(text: str | None) -> dict[str, Any]:
    return dict(json.loads(text)) if text else {}


@dataclass(frozen=True, slots=True)
class Pulse:
    """One scheduled wake-up of the agent, as stored."""

    id: int
    prompt: str
    scheduled_at: datetime
    priority: Priority
    status: Status
    session_id: str | None
    sticky_notes: list[str]
    tags: list[str]
    source: str
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempt: int
    max_retries: int
    error: str | None
    idempotency_key: str | None
    executor: str | None
    schedule_name: str | None
    exit_code: int | None
    output_tail: str | None
    result_session_id: str | None
    result_text: str | None
    cost_usd: float | None
    duration_s: float | None
    usage: dict[str, Any]
    meta: dict[str, Any]

    @classmethod
    def from_row(cls, row: Any) -> Pulse:
        return cls(
            id=row["id"],
            prompt=row["prompt"],
            scheduled_at=parse_db_time(row["scheduled_at"]),  # type: ignore[arg-type]
            priority=Priority.from_rank(row["priority"]),
            status=Status(row["status"]),
            session_id=row["session_id"],
            sticky_notes=_loads_list(row["sticky_notes"]),
            tags=_loads_list(row["tags"]),
            source=row["source"],
            created_at=parse_db_time(row["created_at"]),  # type: ignore[arg-type]
            updated_at=parse_db_time(row["updated_at"]),  # type: ignore[arg-type]
            started_at=parse_db_time(row["started_at"]),
            finished_at=parse_db_time(row["finished_at"]),
            attempt=row["attempt"],
            max_retries=row["max_retries"],
            error=row["error"],
            idempotency_key=row["idempotency_key"],
            executor=row["executor"],
            schedule_name=row["schedule_name"],
            exit_code=row["exit_code"],
            output_tail=row["output_tail"],
            result_session_id=row["result_session_id"],
            result_text=row["result_text"],
            cost_usd=row["cost_usd"],
            duration_s=row["duration_s"],
            usage=_loads_dict(row["usage"]),
            meta=_loads_dict(row["meta"]),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON shape shared by `--json`, the HTTP API and MCP."""
        return {
            "id": self.id,
            "prompt": self.prompt,
            "scheduled_at": iso_utc(self.scheduled_at),
            "priority": self.priority.value,
            "status": self.status.value,
            "session_id": self.session_id,
            "sticky_notes": list(self.sticky_notes),
            "tags": list(self.tags),
            "source": self.source,
            "created_at": iso_utc(self.created_at),
            "updated_at": iso_utc(self.updated_at),
            "started_at": iso_utc(self.started_at),
            "finished_at": iso_utc(self.finished_at),
            "attempt": self.attempt,
            "max_retries": self.max_retries,
            "error": self.error,
            "idempotency_key": self.idempotency_key,
            "executor": self.executor,
            "schedule_name": self.schedule_name,
            "result": {
                "exit_code": self.exit_code,
                "session_id": self.result_session_id,
                "text": self.result_text,
                "output_tail": self.output_tail,
                "cost_usd": self.cost_usd,
                "duration_s": self.duration_s,
                "usage": dict(self.usage),
            },
        }


@dataclass(frozen=True, slots=True)
class Attempt:
    """One execution of a pulse."""

    id: int
    pulse_id: int
    number: int
    status: str
    started_at: datetime
    finished_at: datetime | None
    lateness_s: float | None
    duration_s: float | None
    exit_code: int | None
    error: str | None
    session_id: str | None
    cost_usd: float | None
    usage: dict[str, Any]
    pid: int | None
    log_path: str | None

    @classmethod
    def from_row(cls, row: Any) -> Attempt:
        return cls(
            id=row["id"],
            pulse_id=row["pulse_id"],
            number=row["number"],
            status=row["status"],
            started_at=parse_db_time(row["started_at"]),  # type: ignore[arg-type]
            finished_at=parse_db_time(row["finished_at"]),
            lateness_s=row["lateness_s"],
            duration_s=row["duration_s"],
            exit_code=row["exit_code"],
            error=row["error"],
            session_id=row["session_id"],
            cost_usd=row["cost_usd"],
            usage=_loads_dict(row["usage"]),
            pid=row["pid"],
            log_path=row["log_path"],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pulse_id": self.pulse_id,
            "number": self.number,
            "status": self.status,
            "started_at": iso_utc(self.started_at),
            "finished_at": iso_utc(self.finished_at),
            "lateness_s": self.lateness_s,
            "duration_s": self.duration_s,
            "exit_code": self.exit_code,
            "error": self.error,
            "session_id": self.session_id,
            "cost_usd": self.cost_usd,
            "usage": dict(self.usage),
            "pid": self.pid,
            "log_path": self.log_path,
        }


@dataclass(frozen=True, slots=True)
class Schedule:
    """A named recurring rule that creates pulses."""

    name: str
    cron: str | None
    every_s: float | None
    prompt: str
    tz: str
    priority: Priority
    jitter_s: float
    session_id: str | None
    sticky_notes: list[str]
    tags: list[str]
    max_retries: int | None
    executor: str | None
    paused: bool
    created_at: datetime
    updated_at: datetime
    last_fire_at: datetime | None
    fire_count: int
    skip_count: int
    failure_streak: int

    @classmethod
    def from_row(cls, row: Any) -> Schedule:
        return cls(
            name=row["name"],
            cron=row["cron"],
            every_s=row["every_s"],
            prompt=row["prompt"],
            tz=row["tz"],
            priority=Priority.from_rank(row["priority"]),
            jitter_s=row["jitter_s"],
            session_id=row["session_id"],
            sticky_notes=_loads_list(row["sticky_notes"]),
            tags=_loads_list(row["tags"]),
            max_retries=row["max_retries"],
            executor=row["executor"],
            paused=bool(row["paused"]),
            created_at=parse_db_time(row["created_at"]),  # type: ignore[arg-type]
            updated_at=parse_db_time(row["updated_at"]),  # type: ignore[arg-type]
            last_fire_at=parse_db_time(row["last_fire_at"]),
            fire_count=row["fire_count"],
            skip_count=row["skip_count"],
            failure_streak=row["failure_streak"],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cron": self.cron,
            "every_s": self.every_s,
            "prompt": self.prompt,
            "tz": self.tz,
            "priority": self.priority.value,
            "jitter_s": self.jitter_s,
            "session_id": self.session_id,
            "sticky_notes": list(self.sticky_notes),
            "tags": list(self.tags),
            "max_retries": self.max_retries,
            "executor": self.executor,
            "paused": self.paused,
            "created_at": iso_utc(self.created_at),
            "updated_at": iso_utc(self.updated_at),
            "last_fire_at": iso_utc(self.last_fire_at),
            "fire_count": self.fire_count,
            "skip_count": self.skip_count,
            "failure_streak": self.failure_streak,
        }
