"""The pulse store: rows in, rows out, safe from several processes at once."""

import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta

import pytest

from reeve_cli import store
from reeve_cli.errors import (
    InvalidPriority,
    InvalidValue,
    PulseNotFound,
    PulseNotPending,
)
from reeve_cli.model import Priority, Status, db_time
from tests.conftest import reeve_bin

LATER = datetime(2030, 1, 1, 12, tzinfo=UTC)


def add(db, prompt="wake up", **fields):
    fields.setdefault("scheduled_at", LATER)
    pulse, created = store.add_pulse(db, prompt=prompt, **fields)
    assert created
    return pulse


def set_status(db, pulse_id, status, finished_at=None):
    with db.transaction(write=True) as conn:
        conn.execute(
            "UPDATE pulses SET status = :s, finished_at = :f WHERE id = :id",
            {"s": status, "f": finished_at and db_time(finished_at), "id": pulse_id},
        )


def count_rows(db, table="pulses"):
    with db.transaction() as conn:
        return conn.execute(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"]


def test_add_pulse_stores_every_field(db):
    pulse, created = store.add_pulse(
        db,
        prompt="check the flight",
        scheduled_at=LATER,
        priority="high",
        session_id="sess-1",
        sticky_notes=["gate B12", " seat 4A "],
        tags=["travel"],
        source="mcp",
        max_retries=3,
        idempotency_key="flight-1",
        executor="command",
    )

    assert created
    assert store.get_pulse(db, pulse.id) == pulse
    data = pulse.to_dict()
    assert data["id"] == 1
    assert data["prompt"] == "check the flight"
    assert data["scheduled_at"] == "2030-01-01T12:00:00Z"
    assert data["priority"] == "high"
    assert data["status"] == "pending"
    assert data["session_id"] == "sess-1"
    assert data["sticky_notes"] == ["gate B12", "seat 4A"]
    assert data["tags"] == ["travel"]
    assert data["source"] == "mcp"
    assert data["attempt"] == 0
    assert data["max_retries"] == 3
    assert data["idempotency_key"] == "flight-1"
    assert data["executor"] == "command"
    assert data["created_at"].endswith("Z")
    assert data["result"] == {
        "exit_code": None,
        "session_id": None,
        "text": None,
        "output_tail": None,
        "cost_usd": None,
        "duration_s": None,
        "usage": {},
    }


def test_add_pulse_records_an_event(db):
    pulse = add(db)

    with db.transaction() as conn:
        rows = conn.execute("SELECT kind, pulse_id, data FROM events")

    assert [(r["kind"], r["pulse_id"]) for r in rows] == [("pulse.created", pulse.id)]
    assert json.loads(rows[0]["data"])["pulse"]["id"] == pulse.id


def test_add_pulse_json_matches_the_stored_row_and_the_event(db):
    from zoneinfo import ZoneInfo

    berlin = datetime(2030, 3, 1, 7, 30, 0, 123456, tzinfo=ZoneInfo("Europe/Berlin"))
    pulse, created, text = store.add_pulse_json(
        db,
        prompt="Grüße ✓",
        scheduled_at=berlin,
        session_id=" sess ",
        sticky_notes=["a"],
        tags=["t"],
        source="s" * 200,
        schedule_name="daily",
        meta={"fire": 3, "list": (1, 2)},
    )

    assert created
    assert store.get_pulse(db, pulse.id) == pulse
    assert json.loads(text) == pulse.to_dict()
    assert pulse.meta == {"fire": 3, "list": [1, 2]}
    assert pulse.source == "s" * store.MAX_SOURCE_LENGTH
    with db.transaction() as conn:
        rows = conn.execute("SELECT data FROM events")
    assert json.loads(rows[0]["data"]) == {"pulse": pulse.to_dict()}

    again, created, replay = store.add_pulse_json(
        db, prompt="x", scheduled_at=LATER, idempotency_key="k"
    )
    same, created_again, replay_again = store.add_pulse_json(
        db, prompt="y", scheduled_at=LATER, idempotency_key="k"
    )
    assert created and not created_again
    assert same == again and replay_again == replay


def test_same_idempotency_key_returns_the_existing_pulse(db):
    first = add(db, prompt="one", idempotency_key="k")

    again, created = store.add_pulse(
        db, prompt="two", scheduled_at=LATER, idempotency_key="k"
    )

    assert not created
    assert again == first
    assert count_rows(db) == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param(
            {"prompt": "  "},
            "The prompt is empty; say what the agent should do",
            id="empty-prompt",
        ),
        pytest.param(
            {"prompt": "x" * 11, "max_prompt_bytes": 10},
            "The prompt is 11 bytes; the limit is 10 (REEVE_MAX_PROMPT_BYTES)",
            id="prompt-too-big",
        ),
        pytest.param({"tags": [""]}, "A tag cannot be empty", id="empty-tag"),
        pytest.param(
            {"tags": ["t" * 65]}, "A tag is longer than 64 characters", id="long-tag"
        ),
        pytest.param(
            {"sticky_notes": [" "]}, "A sticky note cannot be empty", id="empty-note"
        ),
        pytest.param(
            {"idempotency_key": ""}, "The idempotency key cannot be empty", id="key"
        ),
        pytest.param(
            {"max_retries": -1},
            "max_retries must be between 0 and 100, got -1",
            id="retries",
        ),
    ],
)
def test_add_pulse_rejects_bad_fields_and_writes_nothing(db, fields, message):
    fields = {"prompt": "ok", "scheduled_at": LATER, **fields}

    with pytest.raises(InvalidValue) as caught:
        store.add_pulse(db, **fields)

    assert caught.value.message == message
    assert count_rows(db) == 0
    assert count_rows(db, "events") == 0


def test_add_pulse_rejects_unknown_priority(db):
    with pytest.raises(InvalidPriority):
        store.add_pulse(db, prompt="x", scheduled_at=LATER, priority="urgent")

    assert count_rows(db) == 0


def test_get_pulse_unknown_id(db):
    with pytest.raises(PulseNotFound) as caught:
        store.get_pulse(db, 99)

    assert caught.value.message == "No pulse with id 99; see 'reeve pulse list --all'"


def test_list_pulses_orders_by_due_time_then_priority_then_id(db):
    late = add(db, "late", scheduled_at=LATER + timedelta(hours=1))
    low = add(db, "low", priority="low")
    critical = add(db, "critical", priority="critical")
    normal = add(db, "normal")

    pulses = store.list_pulses(db)

    assert [p.id for p in pulses] == [critical.id, normal.id, low.id, late.id]


def test_list_pulses_filters(db):
    mail = add(db, "mail", tags=["mail", "daily"])
    odd = add(db, "odd", tags=["50%_off"])
    high = add(db, "high", priority="high")
    done = add(db, "done", tags=["mail"])
    set_status(db, done.id, "completed", LATER)

    assert [p.id for p in store.list_pulses(db, tag="mail")] == [mail.id]
    assert [p.id for p in store.list_pulses(db, tag="50%_off")] == [odd.id]
    assert store.list_pulses(db, tag="50") == []
    assert store.list_pulses(db, tag="ma") == []
    assert [p.id for p in store.list_pulses(db, priority=Priority.HIGH)] == [high.id]
    assert [p.id for p in store.list_pulses(db, statuses=["completed"])] == [done.id]
    assert len(store.list_pulses(db, statuses=None)) == 4
    assert len(store.list_pulses(db, statuses=None, limit=2)) == 2


def test_list_history_shows_finished_newest_first(db):
    first = add(db, "first")
    second = add(db, "second")
    add(db, "still pending")
    set_status(db, first.id, "failed", LATER + timedelta(minutes=5))
    set_status(db, second.id, "completed", LATER + timedelta(minutes=1))

    history = store.list_history(db)

    assert [p.id for p in history] == [first.id, second.id]


def test_cancel_pulses_is_all_or_nothing(db):
    pending = add(db, "pending")
    finished = add(db, "finished")
    set_status(db, finished.id, "completed", LATER)

    with pytest.raises(PulseNotPending) as caught:
        store.cancel_pulses(db, [pending.id, finished.id])

    assert caught.value.message == (
        f"Pulse {finished.id} is completed; only pending pulses can be cancelled"
    )
    assert store.get_pulse(db, pending.id).status is Status.PENDING


def test_cancel_pulses_with_unknown_id_cancels_nothing(db):
    pending = add(db)

    with pytest.raises(PulseNotFound):
        store.cancel_pulses(db, [pending.id, 42])

    assert store.get_pulse(db, pending.id).status is Status.PENDING


def test_cancel_pulses_sets_finished_and_records_events(db):
    one, two = add(db, "one"), add(db, "two")

    cancelled = store.cancel_pulses(db, [one.id, two.id, one.id])

    assert [(p.id, p.status) for p in cancelled] == [
        (one.id, Status.CANCELLED),
        (two.id, Status.CANCELLED),
    ]
    assert all(p.finished_at is not None for p in cancelled)
    with db.transaction() as conn:
        kinds = [r["kind"] for r in conn.execute("SELECT kind FROM events ORDER BY id")]
    assert kinds == ["pulse.created"] * 2 + ["pulse.cancelled"] * 2


def test_reschedule_moves_a_pending_pulse(db):
    pulse = add(db)

    moved = store.reschedule_pulse(db, pulse.id, LATER + timedelta(days=1))

    assert moved.scheduled_at == LATER + timedelta(days=1)
    assert store.get_pulse(db, pulse.id).scheduled_at == LATER + timedelta(days=1)


def test_reschedule_refuses_a_running_pulse(db):
    pulse = add(db)
    set_status(db, pulse.id, "running")

    with pytest.raises(PulseNotPending) as caught:
        store.reschedule_pulse(db, pulse.id, LATER)

    assert caught.value.message == (
        f"Pulse {pulse.id} is running; only pending pulses can be rescheduled"
    )


def test_count_by_status_includes_zeros(db):
    add(db)

    assert store.count_by_status(db) == {
        "pending": 1,
        "running": 0,
        "completed": 0,
        "failed": 0,
        "cancelled": 0,
    }


WORKER = textwrap.dedent(
    """
    import json, sys, time
    from datetime import UTC, datetime
    from pathlib import Path
    from reeve_cli import store
    from reeve_cli.db import open_database

    url, go, name, count, keyed = sys.argv[1:6]
    db = open_database(url, busy_timeout=60)
    while not Path(go).exists():
        time.sleep(0.005)
    ids = []
    for n in range(int(count)):
        key = f"key-{n}" if keyed == "1" else None
        pulse, _ = store.add_pulse(
            db, prompt=f"{name} {n}", scheduled_at=datetime(2030, 1, 1, tzinfo=UTC),
            source=name, idempotency_key=key,
        )
        ids.append(pulse.id)
    print(json.dumps(ids))
    """
)


def start_workers(db, tmp_path, count, per_worker, keyed):
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, db.url, str(go), f"w{i}",
             str(per_worker), keyed],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(count)
    ]  # fmt: skip
    return go, procs


def finish(procs):
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        outputs.append(json.loads(out))
    return outputs


def test_concurrent_adds_from_several_processes_lose_nothing(db, tmp_path, reeve_env):
    """4 processes x 50 store.add_pulse, plus 2 x 5 `reeve pulse add`, at once."""
    go, procs = start_workers(db, tmp_path, 4, 50, "0")
    script = f'for i in 1 2 3 4 5; do {reeve_bin()} pulse add "cli $1 $i" --json; done'
    go.touch()
    clis = [
        subprocess.Popen(
            ["bash", "-c", script, "bash", str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # A loaded CI machine may keep a writer waiting; losing rows is the
            # failure this test looks for, not waiting.
            env={**os.environ, "REEVE_BUSY_TIMEOUT": "60"},
        )
        for n in range(2)
    ]

    worker_ids = [i for ids in finish(procs) for i in ids]
    cli_ids = []
    for proc in clis:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        cli_ids += [json.loads(line)["id"] for line in out.splitlines()]

    all_ids = worker_ids + cli_ids
    assert len(all_ids) == 210
    assert len(set(all_ids)) == 210
    stored = store.list_pulses(db, statuses=None, limit=None)
    assert sorted(p.id for p in stored) == sorted(all_ids)
    assert sorted(p.prompt for p in stored if p.source == "w2") == sorted(
        f"w2 {n}" for n in range(50)
    )
    assert count_rows(db, "events") == 210


def test_same_keys_from_racing_processes_create_one_pulse_each(db, tmp_path):
    go, procs = start_workers(db, tmp_path, 4, 20, "1")
    go.touch()

    outputs = finish(procs)

    assert count_rows(db) == 20
    assert all(ids == outputs[0] for ids in outputs)
    assert len(set(outputs[0])) == 20


def test_store_works_through_sqlalchemy_for_other_database_urls(tmp_path):
    """A URL naming a driver takes the SQLAlchemy path that PostgreSQL would use."""
    from reeve_cli.db import open_database

    db = open_database(f"sqlite+pysqlite:///{tmp_path}/sa.db")
    assert not db.is_sqlite

    first, created = store.add_pulse(
        db, prompt="one", scheduled_at=LATER, tags=["x"], idempotency_key="k"
    )
    again, created_again = store.add_pulse(
        db, prompt="two", scheduled_at=LATER, idempotency_key="k"
    )
    second = add(db, "second", priority="critical")
    cancelled = store.cancel_pulses(db, [first.id])

    assert created and not created_again and again == first
    assert [p.id for p in store.list_pulses(db)] == [second.id]
    assert [p.id for p in store.list_pulses(db, statuses=None, tag="x")] == [first.id]
    assert cancelled[0].status is Status.CANCELLED
    assert db.current_revision() == "0001"
    db.close()


def test_update_pulse_changes_fields_and_appends_notes(db):
    pulse = add(db, sticky_notes=["first"])

    updated = store.update_pulse(
        db, pulse.id, priority="low", add_notes=["second"], tags=["t"]
    )

    assert updated.priority is Priority.LOW
    assert updated.sticky_notes == ["first", "second"]
    assert updated.tags == ["t"]


def test_update_pulse_with_nothing_to_change(db):
    pulse = add(db)

    with pytest.raises(InvalidValue) as caught:
        store.update_pulse(db, pulse.id)

    assert caught.value.message == (
        "Nothing to change; give a new time, priority or notes"
    )


def test_notes_appended_at_the_same_time_are_all_kept(db):
    """Each append reads and writes in one transaction, so none is lost."""
    import threading

    pulse = add(db)
    barrier = threading.Barrier(8)

    def append(n):
        barrier.wait()
        store.update_pulse(db, pulse.id, add_notes=[f"note {n}"])

    threads = [threading.Thread(target=append, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    notes = store.get_pulse(db, pulse.id).sticky_notes
    assert sorted(notes) == sorted(f"note {n}" for n in range(8))


def test_update_schedule_with_no_changes_is_an_error(db):
    store.add_schedule(
        db, name="daily", prompt="hi", tz="Europe/Berlin", cron="0 9 * * *"
    )

    with pytest.raises(InvalidValue) as caught:
        store.update_schedule(db, "daily")

    assert caught.value.message == "Nothing to change in schedule 'daily'"
