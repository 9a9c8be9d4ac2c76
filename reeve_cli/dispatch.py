"""Claim due pulses and run them: lanes, session locks, outcomes, retries.

A pulse runs only after an atomic `pending -> running` claim (one UPDATE ...
WHERE status = 'pending' RETURNING), in the order priority, scheduled time, id.
`max_concurrent` normal slots plus one critical lane: a critical pulse starts at
once even when every normal slot is busy. Two pulses that resume the same
session never run together; the second waits in `pending`.

Everything here runs on the daemon's event loop; database calls are short and
synchronous, so a claim and its bookkeeping can never interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reeve_cli import store
from reeve_cli.model import (
    PRIORITY_ORDER,
    Attempt,
    Priority,
    Pulse,
    Schedule,
    db_time,
    iso_utc,
    parse_db_time,
    utcnow,
)

if TYPE_CHECKING:
    from reeve_cli.config import Settings
    from reeve_cli.db import Connection, Database
    from reeve_cli.executor import AttemptResult, Executor

logger = logging.getLogger(__name__)

# A schedule whose pulses fail this many times in a row is paused (docs/daemon.md).
SCHEDULE_FAILURE_LIMIT = 5
# Retry delays grow as retry_backoff * 2**(n-1), plus up to this share of jitter.
RETRY_JITTER = 0.2
MAX_RETRY_DELAY_S = 6 * 3600.0
NORMAL, CRITICAL = "normal", "critical"


@dataclass(slots=True)
class Running:
    """One attempt in flight."""

    pulse: Pulse
    attempt_id: int
    number: int
    lane: str
    started: float
    lateness_s: float = 0.0
    task: asyncio.Task[None] | None = None
    pid: int | None = None
    session_id: str | None = None  # reported by the executor while running


@dataclass(slots=True)
class Claimed:
    pulse: Pulse
    attempt_id: int
    number: int
    lane: str
    lateness_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What `_record` wrote for one finished attempt."""

    row: Any  # the pulses row as stored
    attempt: Attempt
    took: float
    retry_at: datetime | None
    paused: Schedule | None


@dataclass(slots=True)
class DispatchStats:
    claimed: int = 0
    completed: int = 0
    failed: int = 0
    retried: int = 0


# One encoder for every call: json.dumps with options builds a new one each time.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _json(value: Any) -> str:
    return _encode(value)


EVENT_SQL = (
    "INSERT INTO events (at, kind, pulse_id, schedule_name, data) "
    "VALUES (:at, :kind, :pulse_id, NULL, :data)"
)


_PRIORITY_NAMES = tuple(priority.value for priority in PRIORITY_ORDER)


def _iso(text: str | None) -> str | None:
    """`iso_utc(parse_db_time(text))` for the stored fixed-width form, by slicing."""
    if text is None:
        return None
    if len(text) != 27 or text[19] != "." or text[26] != "Z":
        return iso_utc(parse_db_time(text))
    if text[20:26] == "000000":
        return text[:19] + "Z"
    return text[:19] + "." + text[20:23] + "Z"


def _list(text: str | None) -> list[Any]:
    return list(json.loads(text)) if text and text != "[]" else []


def _dict(text: str | None) -> dict[str, Any]:
    return dict(json.loads(text)) if text and text != "{}" else {}


def pulse_payload(row: Any) -> dict[str, Any]:
    """`Pulse.from_row(row).to_dict()`, built straight from a `pulses` row.

    The daemon writes two event rows per attempt, each carrying the pulse as
    stored; skipping the datetime round trip halves what that costs.
    """
    return {
        "id": row["id"],
        "prompt": row["prompt"],
        "scheduled_at": _iso(row["scheduled_at"]),
        "priority": _PRIORITY_NAMES[row["priority"]],
        "status": row["status"],
        "session_id": row["session_id"],
        "sticky_notes": _list(row["sticky_notes"]),
        "tags": _list(row["tags"]),
        "source": row["source"],
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
        "started_at": _iso(row["started_at"]),
        "finished_at": _iso(row["finished_at"]),
        "attempt": row["attempt"],
        "max_retries": row["max_retries"],
        "error": row["error"],
        "idempotency_key": row["idempotency_key"],
        "executor": row["executor"],
        "schedule_name": row["schedule_name"],
        "result": {
            "exit_code": row["exit_code"],
            "session_id": row["result_session_id"],
            "text": row["result_text"],
            "output_tail": row["output_tail"],
            "cost_usd": row["cost_usd"],
            "duration_s": row["duration_s"],
            "usage": _dict(row["usage"]),
        },
    }


def event_params(
    kind: str, row: Any, data: dict[str, Any], stamp: str
) -> dict[str, Any]:
    """Parameters of one EVENT_SQL row: what `store.record_event` writes."""
    payload = dict(data)
    payload["pulse"] = pulse_payload(row)
    return {"at": stamp, "kind": kind, "pulse_id": row["id"], "data": _json(payload)}


def retry_delay(base_s: float, counted_attempts: int) -> float:
    """Seconds until the next attempt: exponential backoff with added jitter."""
    nominal = min(MAX_RETRY_DELAY_S, base_s * 2.0 ** max(0, counted_attempts - 1))
    return float(nominal) + random.uniform(0, RETRY_JITTER * nominal)


class Dispatcher:
    """Claims due pulses into free slots and runs each as an attempt."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        executor_for: Callable[[Pulse], Executor] | None = None,
        alert: Callable[[str, str], None] | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.slots = int(settings.max_concurrent)
        self.running: dict[int, Running] = {}
        self.busy_sessions: dict[str, int] = {}
        self.stopping = False
        self.stats = DispatchStats()
        self._done: list[tuple[Running, AttemptResult]] = []
        self._pids: list[Running] = []
        self._flush_scheduled = False
        self._executor_for = executor_for or self._plugin_executor
        self._alert = alert or (lambda kind, message: None)
        self._on_change = on_change or (lambda: None)
        self._owner_dispatches = on_change is not None
        self.logs = settings.logs_path
        self.logs.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Read once: each is a property that builds a new object per call.
        self._zone = settings.zone
        self._desk = settings.desk_path
        self._timeout = float(settings.pulse_timeout)
        self._stall = float(settings.stall_timeout) or None

    def _plugin_executor(self, pulse: Pulse) -> Executor:
        from reeve_cli.plugins import get_executor

        return get_executor(pulse.executor or str(self.settings.executor))

    # Capacity ----------------------------------------------------------------

    def _lanes_free(self, leaving: set[int] | None = None) -> tuple[int, bool]:
        """Free normal slots and whether the critical lane is free.

        `leaving`: pulse ids whose finished attempts are written in the same
        transaction as the claim, so their lanes count as free.
        """
        gone = leaving or set()
        held = [r for r in self.running.values() if r.pulse.id not in gone]
        normal = sum(1 for r in held if r.lane == NORMAL)
        critical_busy = any(r.lane == CRITICAL for r in held)
        return self.slots - normal, not critical_busy

    # Claiming ----------------------------------------------------------------

    def dispatch(self, now: datetime | None = None) -> int:
        """Record finished attempts, claim due pulses into free lanes, start them.

        The outcomes waiting to be written and the new claims share one write
        transaction; when there is nothing to record, a read finds out first
        whether anything is due, so an idle wake-up never takes the write lock.

        Returns:
            How many pulses were claimed.
        """
        if self.stopping:
            self.flush()
            return 0
        now = now or utcnow()
        total = 0
        while True:
            pids, self._pids = self._pids, []
            done, self._done = self._done, []
            leaving = {entry.pulse.id for entry, _ in done}
            normal_free, critical_free = self._lanes_free(leaving)
            can_claim = normal_free > 0 or critical_free
            if not pids and not done:
                if not can_claim:
                    break
                if not self._anything_due(now, critical_only=normal_free <= 0):
                    break
            try:
                with self.db.transaction(write=True) as conn:
                    self._write_pids(conn, pids)
                    outcomes = self._record(conn, done) if done else []
                    claimed = (
                        self._claim(conn, now, normal_free, critical_free, leaving)
                        if can_claim
                        else []
                    )
            except Exception:
                logger.exception(
                    "Recording %d finished attempt(s) and claiming failed; retrying",
                    len(done),
                )
                self._retry_later(pids, done)
                return total
            self._settled(done, outcomes)
            for item in claimed:
                self._start(item, now)
            total += len(claimed)
            if not claimed:
                break
        return total

    def _candidates(
        self,
        conn: Connection,
        now: datetime,
        wanted: int,
        critical_only: bool,
        leaving: set[int],
    ) -> list[Any]:
        """Read due pulses in claim order, one index range per priority."""
        params: dict[str, Any] = {"now": db_time(now), "limit": wanted}
        busy = [s for s, owner in self.busy_sessions.items() if owner not in leaving]
        session_clause = ""
        if busy:
            names = []
            for index, session in enumerate(busy):
                params[f"b{index}"] = session
                names.append(f":b{index}")
            session_clause = (
                f" AND (session_id IS NULL OR session_id NOT IN ({', '.join(names)}))"
            )
        found: list[Any] = []
        for priority in Priority:
            if critical_only and priority is not Priority.CRITICAL:
                break
            params["priority"] = priority.rank
            found.extend(
                conn.execute(
                    "SELECT id, priority, session_id FROM pulses "
                    "WHERE status = 'pending' AND priority = :priority "
                    "AND scheduled_at <= :now" + session_clause + " "
                    "ORDER BY scheduled_at, id LIMIT :limit",
                    params,
                )
            )
            if len(found) >= wanted:
                break
        return found

    def _anything_due(self, now: datetime, critical_only: bool) -> bool:
        """One indexed read: is a pulse due for the free lanes? (no write lock)"""
        sql = "SELECT 1 FROM pulses WHERE status = 'pending' AND scheduled_at <= :now"
        if critical_only:
            sql += f" AND priority = {Priority.CRITICAL.rank}"
        with self.db.transaction() as conn:
            rows = conn.execute(sql + " LIMIT 1", {"now": db_time(now)})
        return bool(rows)

    def _choose(
        self,
        conn: Connection,
        now: datetime,
        normal_free: int,
        critical_free: bool,
        leaving: set[int],
    ) -> list[tuple[int, str]]:
        """Pick due pulses for the free lanes: (pulse id, lane), in claim order."""
        wanted = max(normal_free, 0) + (1 if critical_free else 0)
        rows = self._candidates(conn, now, wanted + 8, normal_free <= 0, leaving)
        chosen: list[tuple[int, str]] = []
        sessions: set[str] = set()
        for row in rows:
            session = row["session_id"]
            if session is not None and session in sessions:
                continue  # one attempt per session at a time
            if normal_free > 0:
                lane = NORMAL
                normal_free -= 1
            elif critical_free and row["priority"] == Priority.CRITICAL.rank:
                lane = CRITICAL
                critical_free = False
            else:
                break
            if session is not None:
                sessions.add(session)
            chosen.append((row["id"], lane))
            if normal_free <= 0 and not critical_free:
                break
        return chosen

    def _claim(
        self,
        conn: Connection,
        now: datetime,
        normal_free: int,
        critical_free: bool,
        leaving: set[int],
    ) -> list[Claimed]:
        """Claim chosen pulses atomically (pending -> running) inside `conn`."""
        stamp = db_time(utcnow())
        chosen = self._choose(conn, now, normal_free, critical_free, leaving)
        if not chosen:
            return []
        lanes = dict(chosen)
        marks = ", ".join(f":p{i}" for i in range(len(chosen)))
        params: dict[str, Any] = {f"p{i}": pid for i, (pid, _) in enumerate(chosen)}
        params["now"] = stamp
        updated = conn.execute(
            "UPDATE pulses SET status = 'running', attempt = attempt + 1, "
            "started_at = :now, finished_at = NULL, updated_at = :now "
            # `+status`: look the ids up by primary key; without the `+`,
            # SQLite walks every pending row of the status index instead.
            f"WHERE id IN ({marks}) AND +status = 'pending' RETURNING *",
            params,
        )
        pairs = sorted(
            ((Pulse.from_row(row), row) for row in updated),
            key=lambda pair: (
                pair[0].priority.rank,
                pair[0].scheduled_at,
                pair[0].id,
            ),
        )
        if not pairs:
            return []
        # One statement for all attempt rows of the batch; the number is
        # the pulse's highest attempt number + 1 (interrupted attempts are
        # rows too, so it can differ from pulses.attempt).
        values = []
        inserts: dict[str, Any] = {"now": stamp, "daemon_pid": os.getpid()}
        late: dict[int, float] = {}
        for index, (pulse, _) in enumerate(pairs):
            late[pulse.id] = max(0.0, (now - pulse.scheduled_at).total_seconds())
            inserts[f"q{index}"] = pulse.id
            inserts[f"l{index}"] = late[pulse.id]
            values.append(
                f"(:q{index}, (SELECT COALESCE(MAX(number), 0) + 1 FROM "
                f"attempts WHERE pulse_id = :q{index}), 'running', :now, "
                f":l{index}, :daemon_pid)"
            )
        attempt_rows = conn.execute(
            "INSERT INTO attempts (pulse_id, number, status, started_at, "
            "lateness_s, daemon_pid) VALUES "
            + ", ".join(values)
            + " RETURNING id, pulse_id, number",
            inserts,
        )
        attempts = {
            row["pulse_id"]: (int(row["id"]), int(row["number"]))
            for row in attempt_rows
        }
        claimed = []
        events = []
        for pulse, row in pairs:
            attempt_id, number = attempts[pulse.id]
            lane = lanes[pulse.id]
            events.append(
                event_params(
                    "pulse.running",
                    row,
                    {"attempt": number, "lane": lane},
                    stamp,
                )
            )
            claimed.append(Claimed(pulse, attempt_id, number, lane, late[pulse.id]))
        conn.executemany(EVENT_SQL, events)
        return claimed

    # Running -----------------------------------------------------------------

    def _start(self, item: Claimed, now: datetime) -> None:
        pulse = item.pulse
        late = max(0.0, (now - pulse.scheduled_at).total_seconds())
        logger.info(
            "Pulse %d claimed (priority %s, lane %s, attempt %d, late %.3fs)",
            pulse.id,
            pulse.priority.value,
            item.lane,
            pulse.attempt,
            late,
        )
        self.stats.claimed += 1
        entry = Running(
            pulse,
            item.attempt_id,
            item.number,
            item.lane,
            time.monotonic(),
            item.lateness_s,
        )
        self.running[pulse.id] = entry
        if pulse.session_id:
            self.busy_sessions[pulse.session_id] = pulse.id
        entry.task = asyncio.get_running_loop().create_task(
            self._run(entry), name=f"pulse-{pulse.id}"
        )

    async def _run(self, entry: Running) -> None:
        from reeve_cli.executor import AttemptRequest, AttemptResult, agent_env

        pulse = entry.pulse
        try:
            try:
                executor = self._executor_for(pulse)
                from reeve_cli.executor import build_prompt

                request = AttemptRequest(
                    pulse=pulse,
                    number=entry.number,
                    prompt=build_prompt(
                        pulse, self._zone, pulse.started_at or utcnow()
                    ),
                    session_id=pulse.session_id,
                    desk=self._desk,
                    env=agent_env(self.settings, pulse, entry.attempt_id),
                    timeout_s=self._timeout,
                    stall_timeout_s=self._stall,
                    log_path=self.logs / f"pulse-{pulse.id}-{entry.number}.log",
                    settings=self.settings,
                    on_session=lambda session: self._on_session(entry, session),
                )
                result = await executor.run(
                    request, lambda pid: self._on_pid(entry, pid)
                )
            except asyncio.CancelledError:
                self._requeue(entry)
                raise
            except Exception as exc:
                from reeve_cli.errors import ReeveError

                if isinstance(exc, ReeveError):
                    message, transient = exc.message, False
                else:
                    logger.exception("Executor failed on pulse %d", pulse.id)
                    message, transient = f"Executor error: {exc}", True
                result = AttemptResult(
                    ok=False, exit_code=None, error=message, transient=transient
                )
            self._done.append((entry, result))
            self._schedule_flush()
        except asyncio.CancelledError:
            self._release(entry)
            raise

    def _release(self, entry: Running) -> None:
        pulse = entry.pulse
        self.running.pop(pulse.id, None)
        if pulse.session_id and self.busy_sessions.get(pulse.session_id) == pulse.id:
            del self.busy_sessions[pulse.session_id]

    def _on_pid(self, entry: Running, pid: int) -> None:
        entry.pid = pid
        self._pids.append(entry)
        self._schedule_flush()

    def _on_session(self, entry: Running, session: str) -> None:
        """The executor learned the agent's session id: store it on the attempt now."""
        if not isinstance(session, str) or not session or session == entry.session_id:
            return
        entry.session_id = session
        if not any(queued is entry for queued in self._pids):
            self._pids.append(entry)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_and_notify)

    def _flush_and_notify(self) -> None:
        self._flush_scheduled = False
        if self._done and not self.stopping and self._owner_dispatches:
            # The owner calls dispatch(), which writes these outcomes and the
            # claims for the freed lanes in one transaction.
            self._on_change()
            return
        if self.flush() and not self.stopping:
            self._on_change()

    def flush(self) -> int:
        """Write agent pids and finished attempts, all in one transaction.

        Attempts that end in the same turn of the event loop share one commit;
        their slots and session locks are released only once it is written.

        Returns:
            How many finished attempts were written.
        """
        pids, self._pids = self._pids, []
        done, self._done = self._done, []
        if not pids and not done:
            return 0
        try:
            with self.db.transaction(write=True) as conn:
                self._write_pids(conn, pids)
                outcomes = self._record(conn, done) if done else []
        except Exception:
            logger.exception(
                "Recording %d finished attempt(s) failed; retrying", len(done)
            )
            self._retry_later(pids, done)
            return 0
        self._settled(done, outcomes)
        return len(done)

    def _write_pids(self, conn: Connection, pids: list[Running]) -> None:
        """Store what running attempts reported: the agent's pid, its session id."""
        if pids:
            conn.executemany(
                "UPDATE attempts SET pid = COALESCE(:pid, pid), "
                "session_id = COALESCE(:session, session_id) "
                "WHERE id = :id AND status = 'running'",
                [
                    {"pid": e.pid, "session": e.session_id, "id": e.attempt_id}
                    for e in pids
                ],
            )

    def _retry_later(
        self, pids: list[Running], done: list[tuple[Running, AttemptResult]]
    ) -> None:
        """Put unwritten work back; write it again in a second."""
        self._pids[:0], self._done[:0] = pids, done
        loop = asyncio.get_running_loop()
        loop.call_later(1.0, self._schedule_flush)

    def _settled(
        self, done: list[tuple[Running, AttemptResult]], outcomes: list[Outcome]
    ) -> None:
        """Free the lanes of written attempts; log, alert and call plugins."""
        if not done:
            return
        hooked = self._has_hooks()
        for (entry, result), outcome in zip(done, outcomes, strict=True):
            self._release(entry)
            self._after(entry, result, outcome, hooked)

    # Outcomes ----------------------------------------------------------------

    def _record(
        self, conn: Connection, done: list[tuple[Running, AttemptResult]]
    ) -> list[Outcome]:
        """Write the outcomes of finished attempts on their attempt and pulse rows.

        One statement for all attempt rows, one UPDATE ... RETURNING per pulse
        (its event carries the pulse as stored) and one for all event rows.
        """
        now = utcnow()
        stamp = db_time(now)
        attempt_params = []
        events = []
        outcomes = []
        for entry, result in done:
            pulse = entry.pulse
            took = result.duration_s
            if took is None:
                took = time.monotonic() - entry.started
            status = "completed" if result.ok else "failed"
            retry_at: datetime | None = None
            if (
                not result.ok
                and result.transient
                and pulse.attempt <= pulse.max_retries
            ):
                delay = retry_delay(float(self.settings.retry_backoff), pulse.attempt)
                retry_at = now + timedelta(seconds=delay)
            usage = _json(result.usage) if result.usage else None
            # The latest id: the result's, else the one reported mid-run.
            session = result.session_id or entry.session_id
            common = {
                "id": pulse.id,
                "now": stamp,
                "exit_code": result.exit_code,
                "error": result.error,
                "tail": result.output_tail or None,
                "session": session,
                "text": result.result_text,
                "cost": result.cost_usd,
                "took": took,
                "usage": usage,
            }
            attempt_params.append(
                dict(common, status=status, attempt_id=entry.attempt_id)
            )
            outcome_sql = (
                "updated_at = :now, error = :error, exit_code = :exit_code, "
                "output_tail = :tail, "
                "result_session_id = :session, "
                "result_text = :text, cost_usd = :cost, duration_s = :took, "
                "usage = :usage WHERE id = :id RETURNING *"
            )
            if retry_at is not None:
                rows = conn.execute(
                    "UPDATE pulses SET status = 'pending', scheduled_at = :retry_at, "
                    + outcome_sql,
                    dict(common, retry_at=db_time(retry_at)),
                )
                event = "pulse.retrying"
            else:
                rows = conn.execute(
                    "UPDATE pulses SET status = :status, finished_at = :now, "
                    + outcome_sql,
                    dict(common, status=status),
                )
                event = f"pulse.{status}"
            row = rows[0]
            events.append(
                event_params(
                    event,
                    row,
                    {"attempt": entry.number, "retry_at": iso_utc(retry_at)},
                    stamp,
                )
            )
            paused = None
            if row["schedule_name"] and retry_at is None:
                paused = self._schedule_outcome(conn, row["schedule_name"], result.ok)
            attempt = Attempt(
                id=entry.attempt_id,
                pulse_id=pulse.id,
                number=entry.number,
                status=status,
                started_at=pulse.started_at or now,
                finished_at=now,
                lateness_s=entry.lateness_s,
                duration_s=took,
                exit_code=result.exit_code,
                error=result.error,
                session_id=session,
                cost_usd=result.cost_usd,
                usage=dict(result.usage),
                pid=entry.pid,
                log_path=None,
            )
            outcomes.append(Outcome(row, attempt, took, retry_at, paused))
        conn.executemany(
            "UPDATE attempts SET status = :status, finished_at = :now, "
            "duration_s = :took, exit_code = :exit_code, error = :error, "
            "session_id = :session, cost_usd = :cost, "
            "usage = :usage WHERE id = :attempt_id",
            attempt_params,
        )
        conn.executemany(EVENT_SQL, events)
        return outcomes

    def _after(
        self,
        entry: Running,
        result: AttemptResult,
        outcome: Outcome,
        hooked: bool = True,
    ) -> None:
        """Log, count, alert and call plugins once an outcome is written."""
        row = outcome.row
        pulse = entry.pulse
        claimed_at = pulse.started_at or pulse.updated_at
        late = max(0.0, (claimed_at - pulse.scheduled_at).total_seconds())
        self._log_outcome(pulse, entry, result, outcome.took, late, outcome.retry_at)
        if result.ok:
            self.stats.completed += 1
        elif outcome.retry_at is not None:
            self.stats.retried += 1
        else:
            self.stats.failed += 1
            self._alert(
                "pulse_failed",
                f"Pulse {pulse.id} failed after {row['attempt']} attempt(s): "
                f"{result.error or 'unknown error'}",
            )
        if outcome.paused is not None:
            paused = outcome.paused
            self._alert(
                "schedule_paused",
                f"Schedule {paused.name} paused after {paused.failure_streak} "
                "failed pulses in a row; 'reeve schedule resume "
                f"{paused.name}' starts it again",
            )
        if hooked:
            self._hook(Pulse.from_row(row), outcome.attempt)

    def _schedule_outcome(
        self, conn: Connection, name: str, ok: bool
    ) -> Schedule | None:
        """Track a schedule's failure streak; pause it at the limit."""
        if ok:
            conn.execute(
                "UPDATE schedules SET failure_streak = 0 WHERE name = :name "
                "AND failure_streak != 0",
                {"name": name},
            )
            return None
        rows = conn.execute(
            "UPDATE schedules SET failure_streak = failure_streak + 1 "
            "WHERE name = :name RETURNING *",
            {"name": name},
        )
        if not rows:
            return None
        schedule = Schedule.from_row(rows[0])
        if schedule.failure_streak < SCHEDULE_FAILURE_LIMIT or schedule.paused:
            return None
        rows = conn.execute(
            "UPDATE schedules SET paused = 1, updated_at = :now WHERE name = :name "
            "RETURNING *",
            {"name": name, "now": db_time(utcnow())},
        )
        schedule = Schedule.from_row(rows[0])
        store.record_event(
            conn,
            "schedule.paused",
            schedule=schedule,
            data={"reason": "failures", "failure_streak": schedule.failure_streak},
        )
        logger.error(
            "Schedule %s paused after %d failed pulses in a row",
            name,
            schedule.failure_streak,
        )
        return schedule

    def _log_outcome(
        self,
        pulse: Pulse,
        entry: Running,
        result: AttemptResult,
        took: float,
        late: float,
        retry_at: datetime | None,
    ) -> None:
        if result.ok:
            logger.info(
                "Pulse %d completed (priority %s, attempt %d, late %.3fs, took %.1fs)",
                pulse.id,
                pulse.priority.value,
                entry.number,
                late,
                took,
            )
        elif retry_at is not None:
            logger.warning(
                "Attempt %d of pulse %d failed: %s after %.1fs; retry at %s",
                entry.number,
                pulse.id,
                result.error,
                took,
                iso_utc(retry_at),
            )
        else:
            logger.error(
                "Pulse %d failed (priority %s, attempt %d, late %.3fs, took %.1fs): %s",
                pulse.id,
                pulse.priority.value,
                entry.number,
                late,
                took,
                result.error,
            )

    def _has_hooks(self) -> bool:
        """Whether any plugin implements `on_attempt_finished` (else skip building)."""
        try:
            from reeve_cli.plugins import plugin_manager
        except ImportError:
            return False
        try:
            hook = plugin_manager().hook.on_attempt_finished
        except Exception:
            logger.exception("Plugins could not be loaded")
            return False
        return bool(hook.get_hookimpls())

    def _hook(self, pulse: Pulse, attempt: Attempt) -> None:
        try:
            from reeve_cli.plugins import attempt_finished
        except ImportError:
            return
        attempt_finished(pulse, attempt)

    def _requeue(self, entry: Running) -> None:
        """Put a pulse whose attempt was stopped by shutdown back to pending."""
        now = db_time(utcnow())
        with self.db.transaction(write=True) as conn:
            conn.execute(
                "UPDATE attempts SET status = 'interrupted', finished_at = :now, "
                "duration_s = :took, error = :error WHERE id = :id",
                {
                    "id": entry.attempt_id,
                    "now": now,
                    "took": time.monotonic() - entry.started,
                    "error": "Daemon stopped during the attempt; not counted",
                },
            )
            rows = conn.execute(
                "UPDATE pulses SET status = 'pending', attempt = MAX(attempt - 1, 0), "
                "updated_at = :now WHERE id = :id AND status = 'running' RETURNING *",
                {"id": entry.pulse.id, "now": now},
            )
            if rows:
                store.record_event(
                    conn,
                    "pulse.requeued",
                    pulse=Pulse.from_row(rows[0]),
                    data={"attempt": entry.number, "reason": "shutdown"},
                )
        logger.warning(
            "Pulse %d stopped by shutdown and put back to pending (attempt %d)",
            entry.pulse.id,
            entry.number,
        )

    # Shutdown ----------------------------------------------------------------

    async def stop(self, grace: float) -> None:
        """Stop claiming, give running attempts `grace` seconds, then cancel them."""
        self.stopping = True
        tasks = [r.task for r in self.running.values() if r.task is not None]
        if not tasks:
            return
        logger.info("Waiting up to %.0fs for %d running attempt(s)", grace, len(tasks))
        _, pending = await asyncio.wait(tasks, timeout=grace)
        self.flush()
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        self.flush()


# Crash recovery -------------------------------------------------------------


def _environ_has(pid: int, marker: bytes) -> bool:
    try:
        data = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return marker in data.split(b"\0")


def attempt_processes(attempt_id: int) -> list[int]:
    """Find live processes whose environment carries this REEVE_ATTEMPT_ID.

    The agent and everything it started inherit the variable, so this finds
    survivors even when the agent itself is gone or its pid was never stored.
    """
    marker = f"REEVE_ATTEMPT_ID={attempt_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            if _environ_has(int(entry.name), marker) and _alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def kill_orphans(attempt_id: int) -> list[int]:
    """Kill the process groups of an attempt a dead daemon left behind.

    Only processes whose environment carries our REEVE_ATTEMPT_ID are touched,
    so a recycled pid is never killed by mistake. Returns the pids found.
    """
    pids = attempt_processes(attempt_id)
    groups = set()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            groups.add(os.getpgid(pid))
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.05)
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def recover(settings: Settings, db: Database) -> list[Pulse]:
    """Settle pulses a dead daemon left `running`: retry or fail by policy.

    Call only while holding the daemon lock: then no live daemon owns them.
    """
    with db.transaction() as conn:
        rows = conn.execute("SELECT * FROM pulses WHERE status = 'running'")
        stranded = [Pulse.from_row(row) for row in rows]
        attempts = {
            row["pulse_id"]: row["id"]
            for row in conn.execute(
                "SELECT id, pulse_id FROM attempts WHERE status = 'running'"
            )
        }
    recovered: list[Pulse] = []
    for pulse in stranded:
        attempt_id = attempts.get(pulse.id)
        if attempt_id is not None:
            killed = kill_orphans(int(attempt_id))
            if killed:
                logger.warning(
                    "Pulse %d: killed agent process(es) %s left by the dead daemon",
                    pulse.id,
                    ", ".join(str(p) for p in killed),
                )
        retry = settings.recovery == "retry" and pulse.attempt <= pulse.max_retries
        now = db_time(utcnow())
        error = "The daemon stopped while the attempt ran (crash or power loss)"
        with db.transaction(write=True) as conn:
            conn.execute(
                "UPDATE attempts SET status = 'lost', finished_at = :now, "
                "error = :error WHERE pulse_id = :id AND status = 'running'",
                {"id": pulse.id, "now": now, "error": error},
            )
            if retry:
                rows = conn.execute(
                    "UPDATE pulses SET status = 'pending', scheduled_at = :now, "
                    "updated_at = :now, error = :error WHERE id = :id RETURNING *",
                    {"id": pulse.id, "now": now, "error": error},
                )
                event = "pulse.retrying"
            else:
                rows = conn.execute(
                    "UPDATE pulses SET status = 'failed', finished_at = :now, "
                    "updated_at = :now, error = :error WHERE id = :id RETURNING *",
                    {"id": pulse.id, "now": now, "error": error},
                )
                event = "pulse.failed"
            stored = Pulse.from_row(rows[0])
            store.record_event(conn, event, pulse=stored, data={"reason": "recovery"})
        logger.warning(
            "Pulse %d was left running by a dead daemon: %s (attempt %d)",
            pulse.id,
            "retrying now" if retry else "failed",
            pulse.attempt,
        )
        recovered.append(stored)
    return recovered
