"""APScheduler in the daemon: one timer for pulses, one job per schedule.

APScheduler keeps time; Reeve's own tables stay the source of truth. The daemon
arms ONE date job for the earliest future pending pulse (re-armed whenever rows
change, so 100,000 pending pulses cost one job, not 100,000) and one cron or
interval job per schedule, rebuilt from the `schedules` table. Only the daemon
ever writes APScheduler's job table (a job store must never be shared between
schedulers); other processes write Reeve's rows and the daemon notices through
SQLite's `PRAGMA data_version`.

This module is imported by any process that reads APScheduler's jobs, so its
top level stays cheap: the job functions below are stored by import path.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from reeve_cli.config import Settings
    from reeve_cli.db import Database
    from reeve_cli.model import Schedule

logger = logging.getLogger(__name__)

PULSE_JOB_ID = "reeve:next-pulse"
PULSE_STORE = "memory"
SCHEDULE_JOB_PREFIX = "schedule:"
# Stable import paths of the job functions; stored in APScheduler's job table.
PULSE_JOB_FUNC = "reeve_cli.scheduler:wake_pulses"
SCHEDULE_JOB_FUNC = "reeve_cli.scheduler:fire_schedule"
WATCH_INTERVAL_S = 0.05
SAFETY_WAKE_S = 30.0


class ClockOwner(Protocol):
    """What the clock calls back into (the daemon)."""

    async def on_pulse_timer(self) -> None: ...

    async def on_schedule_fire(self, name: str, fire_time: datetime) -> None: ...

    def on_rows_changed(self) -> None: ...


_owner: ClockOwner | None = None
_fire_times: dict[str, datetime] = {}


# The two functions below are referenced by import path from APScheduler's job
# table ("reeve_cli.scheduler:wake_pulses", "reeve_cli.scheduler:fire_schedule").
# Never rename or move them: a job whose function cannot be imported is deleted
# by APScheduler when read (docs/limitations.md).
async def wake_pulses() -> None:
    """Job function: the earliest pending pulse came due."""
    if _owner is not None:
        await _owner.on_pulse_timer()


async def fire_schedule(name: str) -> None:
    """Job function: the schedule `name` fired."""
    if _owner is not None:
        fire_time = _fire_times.pop(SCHEDULE_JOB_PREFIX + name, None)
        await _owner.on_schedule_fire(name, fire_time or datetime.now(UTC))


def _signature(schedule: Schedule) -> str:
    return f"{schedule.cron or ''}|{schedule.every_s or ''}|{schedule.tz}"


class PulseClock:
    """The daemon's AsyncIOScheduler and the watcher that keeps it current."""

    def __init__(self, settings: Settings, db: Database, owner: ClockOwner) -> None:
        self.settings = settings
        self.db = db
        self.owner = owner
        self.scheduler: Any = None
        self.armed_for: datetime | None = None
        self._armed_text: str | None = None
        self._schedules: dict[str, tuple[str, bool]] = {}
        self._schedules_loaded = False
        self._schedules_seen: tuple[Any, ...] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # Lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Start APScheduler on the running loop; mirror schedules and pulses."""
        from apscheduler.events import EVENT_JOB_SUBMITTED
        from apscheduler.jobstores.memory import MemoryJobStore
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        global _owner
        _owner = self.owner
        self.scheduler = AsyncIOScheduler(
            # Schedules persist in the database file, so fires missed while the
            # daemon was down are known at start. The pulse timer is derived
            # from the pulse rows and rebuilt at every start: keeping it in
            # memory saves two SQLite commits per re-arm.
            jobstores={
                "default": SQLAlchemyJobStore(engine=self.db.engine()),
                PULSE_STORE: MemoryJobStore(),
            },
            # The default misfire grace of 1 s silently drops jobs that come due
            # while the daemon is down or busy (LIBRARIES.md 1.3).
            job_defaults={
                "misfire_grace_time": None,
                "coalesce": True,
                "max_instances": 1,
            },
            timezone=UTC,
        )
        self.scheduler.add_listener(self._on_submitted, EVENT_JOB_SUBMITTED)
        # Start paused: rebuild the jobs from the rows before anything fires.
        self.scheduler.start(paused=True)
        self.sync_schedules()
        # The pulse timer is derived from the rows: re-armed by the first dispatch.
        self._remove_quietly(PULSE_JOB_ID)
        self.scheduler.resume()
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._watch(), name="reeve-watch"))
        self._tasks.append(loop.create_task(self._safety(), name="reeve-safety"))

    def shutdown(self) -> None:
        global _owner
        for task in self._tasks:
            task.cancel()
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        _owner = None

    @property
    def running(self) -> bool:
        return bool(self.scheduler is not None and self.scheduler.running)

    def _has_job(self, job_id: str) -> bool:
        return self.scheduler.get_job(job_id) is not None

    def _on_submitted(self, event: Any) -> None:
        if event.job_id.startswith(SCHEDULE_JOB_PREFIX) and event.scheduled_run_times:
            _fire_times[event.job_id] = max(event.scheduled_run_times)

    # Pulses ----------------------------------------------------------------

    def rearm(self, after: datetime) -> None:
        """Arm the pulse timer for the earliest pending pulse due after `after`.

        Due pulses are the dispatcher's business; the timer only looks ahead.
        """
        from reeve_cli.model import db_time, parse_db_time

        with self.db.transaction() as conn:
            rows = conn.execute(
                "SELECT MIN(scheduled_at) AS due FROM pulses "
                "WHERE status = 'pending' AND scheduled_at > :after",
                {"after": db_time(after)},
            )
        text = rows[0]["due"] if rows else None
        if text == self._armed_text:
            return
        if text is None:
            if self._has_job(PULSE_JOB_ID):
                self._remove_quietly(PULSE_JOB_ID)
            self._armed_text, self.armed_for = None, None
            return
        due = parse_db_time(text)
        self.scheduler.add_job(
            PULSE_JOB_FUNC,
            "date",
            run_date=due,
            id=PULSE_JOB_ID,
            jobstore=PULSE_STORE,
            name="next pulse",
            replace_existing=True,
        )
        self._armed_text, self.armed_for = text, due
        logger.debug("Pulse timer armed for %s", text)

    def timer_fired(self) -> None:
        """Forget the armed time once the date job ran (APScheduler removed it)."""
        self._armed_text, self.armed_for = None, None

    def _remove_quietly(self, job_id: str) -> None:
        from apscheduler.jobstores.base import JobLookupError

        try:
            self.scheduler.remove_job(job_id)
        except JobLookupError:
            pass

    # Schedules -------------------------------------------------------------

    def sync_schedules(self) -> None:
        """Make APScheduler's schedule jobs match the `schedules` table."""
        from reeve_cli import store
        from reeve_cli.schedule import make_trigger

        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT COUNT(*) AS n, MAX(updated_at) AS changed FROM schedules"
            )[0]
        seen = (row["n"], row["changed"])
        if seen == self._schedules_seen:
            return  # nothing changed since the last sync
        wanted = {s.name: s for s in store.list_schedules(self.db)}
        if not self._schedules_loaded:  # first sync: read what the job table holds
            self._schedules_loaded = True
            for job in self.scheduler.get_jobs():
                if job.id.startswith(SCHEDULE_JOB_PREFIX):
                    name = job.id[len(SCHEDULE_JOB_PREFIX) :]
                    self._schedules[name] = (job.name, job.next_run_time is None)

        for name in set(self._schedules) - set(wanted):
            self._remove_quietly(SCHEDULE_JOB_PREFIX + name)
            del self._schedules[name]
            logger.info("Schedule %s no longer mirrored", name)

        for name, schedule in wanted.items():
            signature = _signature(schedule)
            known = self._schedules.get(name)
            job_id = SCHEDULE_JOB_PREFIX + name
            if known is None or known[0] != signature:
                try:
                    trigger = make_trigger(schedule)
                except Exception:
                    logger.exception("Schedule %s has an unusable rule", name)
                    continue
                self.scheduler.add_job(
                    SCHEDULE_JOB_FUNC,
                    trigger,
                    args=[name],
                    id=job_id,
                    name=signature,
                    replace_existing=True,
                )
                known = (signature, False)
                logger.info("Schedule %s mirrored (%s)", name, trigger)
            if schedule.paused and not known[1]:
                self.scheduler.pause_job(job_id)
                known = (signature, True)
            elif not schedule.paused and known[1]:
                self.scheduler.resume_job(job_id)
                known = (signature, False)
            self._schedules[name] = known
        self._schedules_seen = seen

    def next_schedule_fire(self, name: str) -> datetime | None:
        job = self.scheduler.get_job(SCHEDULE_JOB_PREFIX + name)
        return job.next_run_time if job is not None else None

    # Noticing other processes ---------------------------------------------

    def wakeup(self) -> None:
        """Make APScheduler re-read its job table, tolerating concurrent deletes."""
        from apscheduler.jobstores.base import JobLookupError

        try:
            self.scheduler.wakeup()
        except JobLookupError:
            logger.debug("Scheduler wake-up raced with a job removal")

    async def _watch(self) -> None:
        """Notice commits of other connections within ~50 ms (PRAGMA data_version)."""
        assert self.db.path is not None
        conn = sqlite3.connect(self.db.path, check_same_thread=False)
        try:
            last = conn.execute("PRAGMA data_version").fetchone()[0]
            while True:
                await asyncio.sleep(WATCH_INTERVAL_S)
                try:
                    version = conn.execute("PRAGMA data_version").fetchone()[0]
                except sqlite3.Error as exc:
                    logger.warning("Database watcher failed: %s", exc)
                    continue
                if version != last:
                    last = version
                    self._guard(self.owner.on_rows_changed)
        finally:
            conn.close()

    async def _safety(self) -> None:
        """Wake everything periodically, in case a signal was ever missed."""
        while True:
            await asyncio.sleep(SAFETY_WAKE_S)
            self._guard(self.wakeup)
            self._guard(self.owner.on_rows_changed)

    @staticmethod
    def _guard(func: Callable[[], Any]) -> None:
        try:
            func()
        except Exception:
            logger.exception("Daemon wake-up failed")
