"""The dispatcher in-process: claim order, lanes, outcomes, retries, recovery."""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta

import pytest

from reeve_cli import store
from reeve_cli.config import load_settings
from reeve_cli.dispatch import (
    SCHEDULE_FAILURE_LIMIT,
    Dispatcher,
    pulse_payload,
    recover,
    retry_delay,
)
from reeve_cli.executor import AttemptResult
from reeve_cli.model import Pulse, Status, utcnow
from reeve_cli.schedule import create_schedule, fire_schedule


class FakeExecutor:
    """Runs nothing: records the call and returns what the test asks for."""

    name = "fake"
    description = "test double"

    def __init__(self, ok=True, transient=True, hold=None):
        self.ok = ok
        self.transient = transient
        self.hold = hold  # an asyncio.Event to wait for, or None
        self.started = []

    async def run(self, request, on_start):
        on_start(os.getpid())
        self.started.append(request.pulse.id)
        if self.hold is not None:
            await self.hold.wait()
        return AttemptResult(
            ok=self.ok,
            exit_code=0 if self.ok else 2,
            error=None if self.ok else "exit status 2",
            transient=self.transient,
            session_id="sess-new",
            result_text="done" if self.ok else None,
            cost_usd=0.01,
            usage={"output_tokens": 5},
            output_tail="tail",
        )


def make(settings_env, db, executor, alerts=None, **env):
    for key, value in env.items():
        settings_env.setenv(f"REEVE_{key.upper()}", str(value))
    settings = load_settings()
    return Dispatcher(
        settings,
        db,
        executor_for=lambda pulse: executor,
        alert=(lambda kind, msg: alerts.append((kind, msg)))
        if alerts is not None
        else None,
    )


def add(db, prompt, *, ago=60, priority="normal", **kwargs):
    pulse, _ = store.add_pulse(
        db,
        prompt=prompt,
        scheduled_at=utcnow() - timedelta(seconds=ago),
        priority=priority,
        **kwargs,
    )
    return pulse


async def drain(dispatcher):
    while dispatcher.running:
        await asyncio.gather(*(r.task for r in list(dispatcher.running.values())))


async def test_claims_follow_priority_then_time_then_id(monkeypatch, db):
    executor = FakeExecutor()
    dispatcher = make(monkeypatch, db, executor, max_concurrent=1)
    low = add(db, "low", priority="low", ago=300)
    late = add(db, "normal late", ago=10)
    early = add(db, "normal early", ago=20)
    early_twin = add(db, "normal early twin", ago=20)
    crit = add(db, "critical", priority="critical", ago=5)
    dispatcher._on_change = dispatcher.dispatch

    dispatcher.dispatch()
    await drain(dispatcher)

    assert executor.started == [crit.id, early.id, early_twin.id, late.id, low.id]


async def test_future_pulse_is_not_claimed(monkeypatch, db):
    dispatcher = make(monkeypatch, db, FakeExecutor())
    add(db, "later", ago=-60)

    assert dispatcher.dispatch() == 0


async def test_critical_lane_takes_one_critical_when_slots_are_full(monkeypatch, db):
    hold = asyncio.Event()
    dispatcher = make(monkeypatch, db, FakeExecutor(hold=hold), max_concurrent=1)
    normal = add(db, "normal", ago=100)
    dispatcher.dispatch()
    high = add(db, "high", priority="high")
    crits = [add(db, f"critical {i}", priority="critical") for i in range(2)]

    claimed = dispatcher.dispatch()

    assert claimed == 1
    lanes = {pid: r.lane for pid, r in dispatcher.running.items()}
    assert lanes == {normal.id: "normal", crits[0].id: "critical"}
    assert store.get_pulse(db, high.id).status is Status.PENDING
    hold.set()
    await drain(dispatcher)


async def test_success_records_outcome_on_pulse_and_attempt(monkeypatch, db):
    dispatcher = make(monkeypatch, db, FakeExecutor())
    pulse = add(db, "work")

    dispatcher.dispatch()
    await drain(dispatcher)

    stored = store.get_pulse(db, pulse.id)
    (attempt,) = store.get_attempts(db, pulse.id)
    assert stored.status is Status.COMPLETED and stored.attempt == 1
    assert stored.result_text == "done" and stored.result_session_id == "sess-new"
    assert stored.cost_usd == 0.01 and stored.usage == {"output_tokens": 5}
    assert stored.output_tail == "tail" and stored.exit_code == 0
    assert attempt.status == "completed" and attempt.pid == os.getpid()
    assert attempt.lateness_s >= 59 and attempt.duration_s is not None


async def test_transient_failure_is_retried_later(monkeypatch, db):
    dispatcher = make(monkeypatch, db, FakeExecutor(ok=False), retry_backoff="10")
    pulse = add(db, "flaky", max_retries=2)

    dispatcher.dispatch()
    await drain(dispatcher)

    stored = store.get_pulse(db, pulse.id)
    delay = (stored.scheduled_at - utcnow()).total_seconds()
    assert stored.status is Status.PENDING and stored.attempt == 1
    assert 9 <= delay <= 12.5
    assert stored.error == "exit status 2"


async def test_exhausted_retries_fail_and_alert(monkeypatch, db):
    alerts = []
    dispatcher = make(monkeypatch, db, FakeExecutor(ok=False), alerts)
    pulse = add(db, "broken", max_retries=0)

    dispatcher.dispatch()
    await drain(dispatcher)

    assert store.get_pulse(db, pulse.id).status is Status.FAILED
    assert alerts == [
        ("pulse_failed", f"Pulse {pulse.id} failed after 1 attempt(s): exit status 2")
    ]


async def test_non_transient_failure_is_not_retried(monkeypatch, db):
    executor = FakeExecutor(ok=False, transient=False)
    dispatcher = make(monkeypatch, db, executor)
    pulse = add(db, "no agent", max_retries=5)

    dispatcher.dispatch()
    await drain(dispatcher)

    assert store.get_pulse(db, pulse.id).status is Status.FAILED


async def test_schedule_pauses_after_repeated_failures(monkeypatch, db):
    alerts = []
    dispatcher = make(monkeypatch, db, FakeExecutor(ok=False), alerts, max_retries=0)
    settings = dispatcher.settings
    create_schedule(settings, db, name="nightly", prompt="p", every="1h")

    for index in range(SCHEDULE_FAILURE_LIMIT):
        fire_schedule(settings, db, "nightly", utcnow() - timedelta(hours=9 - index))
        dispatcher.dispatch()
        await drain(dispatcher)

    schedule = store.get_schedule(db, "nightly")
    assert schedule.paused and schedule.failure_streak == SCHEDULE_FAILURE_LIMIT
    assert alerts[-1] == (
        "schedule_paused",
        (
            "Schedule nightly paused after 5 failed pulses in a row; "
            "'reeve schedule resume nightly' starts it again"
        ),
    )


async def test_schedule_success_resets_failure_streak(monkeypatch, db):
    executor = FakeExecutor(ok=False)
    dispatcher = make(monkeypatch, db, executor, max_retries=0)
    settings = dispatcher.settings
    create_schedule(settings, db, name="nightly", prompt="p", every="1h")
    for index, ok in enumerate([False, False, True]):
        executor.ok = ok
        fire_schedule(settings, db, "nightly", utcnow() - timedelta(hours=9 - index))
        dispatcher.dispatch()
        await drain(dispatcher)

    assert store.get_schedule(db, "nightly").failure_streak == 0


async def test_stop_requeues_running_attempt_uncounted(monkeypatch, db):
    dispatcher = make(monkeypatch, db, FakeExecutor(hold=asyncio.Event()))
    pulse = add(db, "long")
    dispatcher.dispatch()
    await asyncio.sleep(0)

    await dispatcher.stop(grace=0.05)

    stored = store.get_pulse(db, pulse.id)
    assert stored.status is Status.PENDING and stored.attempt == 0
    assert [a.status for a in store.get_attempts(db, pulse.id)] == ["interrupted"]
    assert dispatcher.dispatch() == 0  # stopping: nothing new is claimed


def _strand(db, pulse_id, attempts=1):
    with db.transaction(write=True) as conn:
        conn.execute(
            "UPDATE pulses SET status = 'running', attempt = :n WHERE id = :id",
            {"id": pulse_id, "n": attempts},
        )
        conn.execute(
            "INSERT INTO attempts (pulse_id, number, status, started_at, pid) "
            "VALUES (:id, :n, 'running', '2026-01-01T00:00:00.000000Z', 999999999)",
            {"id": pulse_id, "n": attempts},
        )


@pytest.mark.parametrize(
    ("policy", "attempts", "expected"),
    [
        pytest.param("retry", 1, Status.PENDING, id="retry"),
        pytest.param("retry", 3, Status.FAILED, id="retries-exhausted"),
        pytest.param("fail", 1, Status.FAILED, id="fail-policy"),
    ],
)
def test_recovery_settles_stranded_pulses(monkeypatch, db, policy, attempts, expected):
    monkeypatch.setenv("REEVE_RECOVERY", policy)
    pulse = add(db, "stranded", max_retries=2)
    _strand(db, pulse.id, attempts)

    recovered = recover(load_settings(), db)

    assert [p.status for p in recovered] == [expected]
    assert store.get_pulse(db, pulse.id).status is expected
    assert [a.status for a in store.get_attempts(db, pulse.id)] == ["lost"]


@pytest.mark.parametrize("attempts", [1, 2, 3, 4])
def test_retry_delay_doubles_with_bounded_jitter(attempts):
    nominal = 30 * 2 ** (attempts - 1)

    delays = [retry_delay(30, attempts) for _ in range(50)]

    assert all(nominal <= d <= nominal * 1.2 for d in delays)
    assert len(set(delays)) > 1


def test_event_payload_is_the_pulse_as_to_dict_gives_it(db):
    pulse = add(db, "payload", sticky_notes=["a note"], tags=["x"], session_id="s-1")
    stamps = [
        "2026-12-03T17:00:00.000000Z",  # no fraction: iso_utc drops it
        "2026-12-03T17:00:00.000400Z",  # under a millisecond: ".000"
        "2026-12-03T17:00:00.123456Z",
    ]
    for stamp in stamps:
        with db.transaction(write=True) as conn:
            row = conn.execute(
                "UPDATE pulses SET started_at = :t, finished_at = :t, "
                "usage = :usage, output_tail = 'tail', exit_code = 0 "
                "WHERE id = :id RETURNING *",
                {"t": stamp, "id": pulse.id, "usage": '{"output_tokens": 3}'},
            )[0]
        assert pulse_payload(row) == Pulse.from_row(row).to_dict()


async def test_waiting_session_pulse_is_claimed_in_the_pass_that_frees_it(
    monkeypatch, db
):
    hold = asyncio.Event()
    executor = FakeExecutor(hold=hold)
    dispatcher = make(monkeypatch, db, executor, max_concurrent=2)
    first = add(db, "first", session_id="shared", ago=20)
    second = add(db, "second", session_id="shared", ago=10)
    dispatcher._owner_dispatches = True
    dispatcher._on_change = dispatcher.dispatch

    assert dispatcher.dispatch() == 1
    assert store.get_pulse(db, second.id).status is Status.PENDING
    hold.set()
    deadline = asyncio.get_running_loop().time() + 30
    while store.get_pulse(db, second.id).status is Status.PENDING:
        if asyncio.get_running_loop().time() > deadline:
            break  # nothing else wakes the dispatcher: it was never claimed
        await asyncio.sleep(0.01)
    await drain(dispatcher)

    assert store.get_pulse(db, second.id).status is Status.COMPLETED
    assert executor.started == [first.id, second.id]
    assert store.get_pulse(db, first.id).status is Status.COMPLETED
