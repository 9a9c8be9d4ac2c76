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
    Attempt,
    Priority,
    Pulse,
    Schedule,
    db_time,
    iso_utc,
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
    task: asyncio.Task[None] | None = None
    pid: int | None = None


@dataclass(slots=True)
class Claimed:
    pulse: Pulse
    attempt_id: int
    number: int
    lane: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """What `_record` wrote for one finished attempt."""

    pulse: Pulse
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


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


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
        self.logs = settings.logs_path
        self.logs.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _plugin_executor(self, pulse: Pulse) -> Executor:
        from reeve_cli.plugins import get_executor

        return get_executor(pulse.executor or str(self.settings.executor))

    # Capacity ----------------------------------------------------------------

    def _lanes_free(self) -> tuple[int, bool]:
        normal = sum(1 for r in self.running.values() if r.lane == NORMAL)
        critical_busy = any(r.lane == CRITICAL for r in self.running.values())
        return self.slots - normal, not critical_busy

    # Claiming ----------------------------------------------------------------

    def dispatch(self, now: datetime | None = None) -> int:
        """Claim as many due pulses as the lanes allow and start them.

        Returns:
            How many pulses were claimed.
        """
        self.flush()
        if self.stopping:
            return 0
        now = now or utcnow()
        total = 0
        while True:
            normal_free, critical_free = self._lanes_free()
            if normal_free <= 0 and not critical_free:
                break
            claimed = self._claim(now, normal_free, critical_free)
            if not claimed:
                break
            total += len(claimed)
            for item in claimed:
                self._start(item, now)
        return total

    def _candidates(
        self, conn: Connection, now: datetime, wanted: int, critical_only: bool
    ) -> list[Any]:
        """Read due pulses in claim order, one index range per priority."""
        params: dict[str, Any] = {"now": db_time(now), "limit": wanted}
        busy = list(self.busy_sessions)
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

    def _claim(
        self, now: datetime, normal_free: int, critical_free: bool
    ) -> list[Claimed]:
        wanted = max(normal_free, 0) + (1 if critical_free else 0)
        stamp = db_time(utcnow())
        with self.db.transaction(write=True) as conn:
            rows = self._candidates(
                conn, now, wanted + 8, critical_only=normal_free <= 0
            )
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
            if not chosen:
                return []

            lanes = dict(chosen)
            marks = ", ".join(f":p{i}" for i in range(len(chosen)))
            params: dict[str, Any] = {f"p{i}": pid for i, (pid, _) in enumerate(chosen)}
            params["now"] = stamp
            updated = conn.execute(
                "UPDATE pulses SET status = 'running', attempt = attempt + 1, "
                "started_at = :now, finished_at = NULL, updated_at = :now "
                f"WHERE id IN ({marks}) AND status = 'pending' RETURNING *",
                params,
            )
            pulses = sorted(
                (Pulse.from_row(row) for row in updated),
                key=lambda p: (p.priority.rank, p.scheduled_at, p.id),
            )
            claimed = []
            for pulse in pulses:
                lateness = (now - pulse.scheduled_at).total_seconds()
                attempt_rows = conn.execute(
                    "INSERT INTO attempts (pulse_id, number, status, started_at, "
                    "lateness_s, daemon_pid) SELECT :pulse_id, "
                    "COALESCE(MAX(number), 0) + 1, 'running', :now, :late, "
                    ":daemon_pid FROM attempts WHERE pulse_id = :pulse_id "
                    "RETURNING id, number",
                    {
                        "pulse_id": pulse.id,
                        "now": stamp,
                        "late": max(0.0, lateness),
                        "daemon_pid": os.getpid(),
                    },
                )
                number = int(attempt_rows[0]["number"])
                attempt_id = int(attempt_rows[0]["id"])
                store.record_event(
                    conn,
                    "pulse.running",
                    pulse=pulse,
                    data={"attempt": number, "lane": lanes[pulse.id]},
                )
                claimed.append(Claimed(pulse, attempt_id, number, lanes[pulse.id]))
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
            pulse, item.attempt_id, item.number, item.lane, time.monotonic()
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
                        pulse, self.settings.zone, pulse.started_at or utcnow()
                    ),
                    session_id=pulse.session_id,
                    desk=self.settings.desk_path,
                    env=agent_env(self.settings, pulse, entry.attempt_id),
                    timeout_s=float(self.settings.pulse_timeout),
                    stall_timeout_s=float(self.settings.stall_timeout) or None,
                    log_path=self.logs / f"pulse-{pulse.id}-{entry.number}.log",
                    settings=self.settings,
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

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_and_notify)

    def _flush_and_notify(self) -> None:
        self._flush_scheduled = False
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
                for entry in pids:
                    conn.execute(
                        "UPDATE attempts SET pid = :pid WHERE id = :id",
                        {"pid": entry.pid, "id": entry.attempt_id},
                    )
                outcomes = [self._record(conn, e, r) for e, r in done]
        except Exception:
            logger.exception(
                "Recording %d finished attempt(s) failed; retrying", len(done)
            )
            self._pids[:0], self._done[:0] = pids, done
            loop = asyncio.get_running_loop()
            loop.call_later(1.0, self._schedule_flush)
            return 0
        for (entry, result), outcome in zip(done, outcomes, strict=True):
            self._release(entry)
            self._after(entry, result, outcome)
        return len(done)

    # Outcomes ----------------------------------------------------------------

    def _record(
        self, conn: Connection, entry: Running, result: AttemptResult
    ) -> Outcome:
        """Write one attempt's outcome on the attempt row and on its pulse."""
        pulse = entry.pulse
        now = utcnow()
        took = result.duration_s
        if took is None:
            took = time.monotonic() - entry.started
        status = "completed" if result.ok else "failed"
        retry_at: datetime | None = None
        if not result.ok and result.transient and pulse.attempt <= pulse.max_retries:
            delay = retry_delay(float(self.settings.retry_backoff), pulse.attempt)
            retry_at = now + timedelta(seconds=delay)

        common = {
            "id": pulse.id,
            "now": db_time(now),
            "exit_code": result.exit_code,
            "error": result.error,
            "tail": result.output_tail or None,
            "session": result.session_id,
            "text": result.result_text,
            "cost": result.cost_usd,
            "took": took,
            "usage": _json(result.usage) if result.usage else None,
        }
        attempt_row = conn.execute(
            "UPDATE attempts SET status = :status, finished_at = :now, "
            "duration_s = :took, exit_code = :exit_code, error = :error, "
            "session_id = :session, cost_usd = :cost, usage = :usage "
            "WHERE id = :attempt_id RETURNING *",
            dict(common, status=status, attempt_id=entry.attempt_id),
        )[0]
        outcome_sql = (
            "updated_at = :now, error = :error, exit_code = :exit_code, "
            "output_tail = :tail, result_session_id = :session, "
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
        stored = Pulse.from_row(rows[0])
        store.record_event(
            conn,
            event,
            pulse=stored,
            data={"attempt": entry.number, "retry_at": iso_utc(retry_at)},
        )
        paused = None
        if stored.schedule_name and retry_at is None:
            paused = self._schedule_outcome(conn, stored, result.ok)
        return Outcome(stored, Attempt.from_row(attempt_row), took, retry_at, paused)

    def _after(self, entry: Running, result: AttemptResult, outcome: Outcome) -> None:
        """Log, count, alert and call plugins once an outcome is written."""
        stored = outcome.pulse
        claimed_at = entry.pulse.started_at or stored.updated_at
        late = max(0.0, (claimed_at - entry.pulse.scheduled_at).total_seconds())
        self._log_outcome(stored, entry, result, outcome.took, late, outcome.retry_at)
        if result.ok:
            self.stats.completed += 1
        elif outcome.retry_at is not None:
            self.stats.retried += 1
        else:
            self.stats.failed += 1
            self._alert(
                "pulse_failed",
                f"Pulse {stored.id} failed after {stored.attempt} attempt(s): "
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
        self._hook(stored, outcome.attempt)

    def _schedule_outcome(
        self, conn: Connection, pulse: Pulse, ok: bool
    ) -> Schedule | None:
        """Track a schedule's failure streak; pause it at the limit."""
        name = pulse.schedule_name
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
