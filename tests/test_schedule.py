"""Schedules: crontab semantics, DST, the CLI, and firing in a real daemon."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from reeve_cli import store
from reeve_cli.model import Status, utcnow
from reeve_cli.schedule import (
    create_schedule,
    fire_schedule,
    fire_schedule_now,
    next_fire_times,
    validate_cron,
)
from tests.daemon_helpers import start_daemon, wait_for

BERLIN = "Europe/Berlin"
HOUR = timedelta(hours=1)


def utc(*args):
    return datetime(*args, tzinfo=UTC)


def fires(settings, db, cron, after, n, tz=BERLIN, name="s"):
    schedule = create_schedule(settings, db, name=name, prompt="p", cron=cron, tz=tz)
    return next_fire_times(schedule, n, after)


@pytest.mark.parametrize(
    ("cron", "weekday"),
    [
        pytest.param("0 9 * * 0", "Sunday", id="zero-is-sunday"),
        pytest.param("0 9 * * 7", "Sunday", id="seven-is-sunday"),
        pytest.param("0 9 * * 1", "Monday", id="one-is-monday"),
        pytest.param("0 9 * * 6", "Saturday", id="six-is-saturday"),
        pytest.param("0 9 * * sun", "Sunday", id="name"),
    ],
)
def test_cron_day_of_week_follows_crontab(settings, db, cron, weekday):
    times = fires(settings, db, cron, utc(2026, 12, 3), 3)

    assert {t.astimezone(settings.zone).strftime("%A") for t in times} == {weekday}


def test_cron_weekday_range_wrapping_sunday(settings, db):
    times = fires(settings, db, "0 9 * * 5-7", utc(2026, 12, 3), 4)

    names = [t.astimezone(settings.zone).strftime("%a") for t in times]
    assert names == ["Fri", "Sat", "Sun", "Fri"]


def test_cron_day_of_month_or_day_of_week(settings, db):
    """crontab(5): with both fields restricted, either one matching fires."""
    times = fires(settings, db, "0 9 13 * 5", utc(2026, 11, 1), 3)

    local = [t.astimezone(settings.zone).strftime("%a %d") for t in times]
    assert local == ["Fri 06", "Fri 13", "Fri 20"]


def test_cron_keeps_wall_time_across_spring_forward(settings, db):
    times = fires(settings, db, "0 9 * * *", utc(2026, 3, 28), 2)

    assert times == [utc(2026, 3, 28, 8), utc(2026, 3, 29, 7)]


def test_cron_time_in_dst_gap_fires_right_after_the_jump(settings, db):
    times = fires(settings, db, "30 2 * * *", utc(2026, 3, 28, 12), 2)

    # 02:30 does not exist on 29 March in Berlin: it fires at 03:30 CEST.
    assert times == [utc(2026, 3, 29, 1, 30), utc(2026, 3, 30, 0, 30)]


def test_cron_time_repeated_at_fall_back_fires_once(settings, db):
    times = fires(settings, db, "30 2 * * *", utc(2026, 10, 24, 12), 2)

    assert times == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]


def test_hourly_cron_fires_in_both_repeated_hours(settings, db):
    times = fires(settings, db, "30 * * * *", utc(2026, 10, 24, 23, 0), 3)

    assert times == [
        utc(2026, 10, 24, 23, 30),
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 25, 1, 30),
    ]


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        pytest.param("* * *", "it has 3 fields, not 5", id="fields"),
        pytest.param("0 9 * * 8", "day of week '8' is outside 0-7", id="dow"),
        pytest.param(
            "61 * * * *",
            "Error validating expression '61': the last value (61) is higher "
            "than the maximum value (59)",
            id="minute",
        ),
    ],
)
def test_bad_cron_is_refused_with_the_reason(cli, expr, reason):
    result = cli("schedule", "add", "x", "prompt", "--cron", expr)

    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: Cannot read cron expression '{expr}': {reason}; use five fields "
        "'minute hour day-of-month month day-of-week', e.g. '0 9 * * 1-5', or "
        "@hourly, @daily, @weekly, @monthly, @yearly\n"
    )


def test_cron_that_never_fires_is_refused():
    from reeve_cli.errors import InvalidValue

    with pytest.raises(InvalidValue, match="never fires"):
        validate_cron("0 9 31 2 *", BERLIN)


def test_schedule_add_needs_exactly_one_rule(cli):
    neither = cli("schedule", "add", "x", "prompt")
    both = cli("schedule", "add", "x", "prompt", "--cron", "@daily", "--every", "1h")

    assert (neither.exit_code, neither.stderr) == (
        1,
        "Error: Give exactly one of --cron or --every\n",
    )
    assert (both.exit_code, both.stderr) == (
        1,
        "Error: --cron and --every cannot be used together\n",
    )


def test_schedule_add_rejects_unknown_zone(cli):
    result = cli("schedule", "add", "x", "p", "--cron", "@daily", "--tz", "Mars/Base")

    assert result.exit_code == 1
    assert result.stderr == (
        "Error: Unknown time zone 'Mars/Base'; use an IANA name such as "
        "'Europe/Berlin'\n"
    )


def test_schedule_add_duplicate_name_conflicts(cli):
    cli("schedule", "add", "x", "p", "--every", "1h")

    result = cli("schedule", "add", "x", "p", "--every", "1h")

    assert result.exit_code == 1
    assert result.stderr == (
        "Error: A schedule named 'x' exists; remove it first or pick another name\n"
    )


def test_schedule_list_json_shows_next_three_fires(cli):
    cli("schedule", "add", "morning", "Plan the day", "--cron", "45 6 * * 1-5")

    result = cli("schedule", "list", "--json")

    assert result.exit_code == 0
    (item,) = json.loads(result.stdout)
    assert item["name"] == "morning" and item["cron"] == "45 6 * * 1-5"
    assert item["tz"] == BERLIN and item["paused"] is False
    assert len(item["next_fire_times"]) == 3
    for text in item["next_fire_times"]:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        berlin = moment.astimezone(ZoneInfo(BERLIN))
        assert (berlin.hour, berlin.minute) == (6, 45) and berlin.weekday() < 5


def test_schedule_list_table_shows_local_times(cli):
    cli("schedule", "add", "daily", "p", "--cron", "0 9 * * *")

    result = cli("schedule", "list")

    assert result.exit_code == 0
    assert "daily" in result.stdout and "09:00:00 CET" in result.stdout


def test_schedule_next_previews_n_fires(cli):
    cli("schedule", "add", "hourly", "p", "--cron", "@hourly")

    result = cli("schedule", "next", "hourly", "-n", "4", "--json")

    times = [
        datetime.fromisoformat(t.replace("Z", "+00:00"))
        for t in json.loads(result.stdout)
    ]
    assert len(times) == 4
    assert all(t.minute == 0 and t.second == 0 for t in times)
    assert [b - a for a, b in zip(times, times[1:], strict=False)] == [HOUR] * 3


def test_schedule_pause_resume_remove(cli):
    cli("schedule", "add", "x", "p", "--every", "10m")

    paused = json.loads(cli("schedule", "pause", "x", "--json").stdout)
    resumed = json.loads(cli("schedule", "resume", "x", "--json").stdout)
    removed = cli("schedule", "remove", "x")
    missing = cli("schedule", "show", "x")

    assert paused["paused"] is True and paused["next_fire_times"] == []
    assert resumed["paused"] is False and len(resumed["next_fire_times"]) == 3
    assert removed.exit_code == 0
    assert (missing.exit_code, missing.stderr) == (
        1,
        "Error: No schedule named 'x'; see 'reeve schedule list'\n",
    )


def test_schedule_run_creates_pulse_then_skips_while_it_is_pending(cli, db):
    cli("schedule", "add", "x", "hello", "--every", "1h", "--priority", "high")

    first = json.loads(cli("schedule", "run", "x", "--json").stdout)["pulse"]
    second = json.loads(cli("schedule", "run", "x", "--json").stdout)["pulse"]

    assert first["source"] == "schedule:x" and first["schedule_name"] == "x"
    assert first["priority"] == "high" and first["prompt"] == "hello"
    assert second is None
    assert store.get_schedule(db, "x").skip_count == 1


def test_same_fire_never_makes_two_pulses(settings, db):
    create_schedule(settings, db, name="x", prompt="p", every="1h")
    fire = utc(2026, 12, 3, 17)

    one = fire_schedule(settings, db, "x", fire)
    store.cancel_pulse(db, one.id)
    again = fire_schedule(settings, db, "x", fire)

    assert again.id == one.id
    assert store.get_schedule(db, "x").fire_count == 1


def test_jitter_delays_the_pulse_within_bounds(settings, db):
    create_schedule(settings, db, name="x", prompt="p", every="1h", jitter="30s")
    fire = utc(2026, 12, 3, 17)

    pulse = fire_schedule(settings, db, "x", fire)

    assert fire <= pulse.scheduled_at <= fire + timedelta(seconds=30)


@pytest.mark.e2e
def test_daemon_fires_interval_schedule_and_counts_skips(settings, db, tmp_path):
    create_schedule(settings, db, name="tick", prompt="tick [sleep 1.6]", every="1s")

    with start_daemon({"FAKE_AGENT_LOG": str(tmp_path / "agent.log")}):
        wait_for(lambda: store.get_schedule(db, "tick").skip_count >= 1, timeout=20)
        pulses = store.list_pulses(db, statuses=None)

    assert pulses[0].source == "schedule:tick"
    assert pulses[0].idempotency_key.startswith("schedule:tick:")
    # while one pulse of the schedule is active, no second one exists
    active = [p for p in pulses if p.status in (Status.PENDING, Status.RUNNING)]
    assert len(active) <= 1


def _fire_time(pulse):
    return datetime.fromisoformat(
        pulse.idempotency_key.split(":", 2)[2][:-1] + "+00:00"
    )


@pytest.mark.e2e
def test_fires_missed_during_downtime_coalesce_into_one(settings, db, tmp_path):
    create_schedule(settings, db, name="tick", prompt="tick", every="1s")
    with start_daemon({"FAKE_AGENT_LOG": str(tmp_path / "agent.log")}):
        wait_for(lambda: store.get_schedule(db, "tick").fire_count >= 1)
    for pulse in store.list_pulses(db):  # a requeued pulse would make it skip
        store.cancel_pulse(db, pulse.id)
    stopped = utcnow()
    time.sleep(2.5)  # two or more fires come due while nothing runs

    with start_daemon({"FAKE_AGENT_LOG": str(tmp_path / "agent.log")}):
        wait_for(lambda: store.get_schedule(db, "tick").last_fire_at > stopped)
        pulses = store.list_pulses(db, statuses=None, limit=None)

    after = sorted((p for p in pulses if p.created_at > stopped), key=lambda p: p.id)
    first = after[0]
    caught_up = [p for p in after if _fire_time(p) < first.created_at]
    assert caught_up == [first]
    assert _fire_time(first) >= stopped + timedelta(seconds=1.5)


@pytest.mark.e2e
def test_schedule_added_while_daemon_runs_is_mirrored(
    settings, db, tmp_path, run_reeve
):
    with start_daemon({"FAKE_AGENT_LOG": str(tmp_path / "agent.log")}):
        result = run_reeve("schedule", "add", "soon", "tick", "--every", "1s")
        assert result.returncode == 0, result.stderr

        wait_for(lambda: store.list_pulses(db, statuses=[Status.COMPLETED]), timeout=15)


def test_fire_schedule_now_unknown_name(settings, db):
    from reeve_cli.errors import ScheduleNotFound

    with pytest.raises(ScheduleNotFound):
        fire_schedule_now(settings, db, "nope")


@pytest.mark.e2e
def test_paused_schedule_stops_firing_in_running_daemon(settings, db, tmp_path):
    create_schedule(settings, db, name="tick", prompt="tick", every="1s")
    with start_daemon({"FAKE_AGENT_LOG": str(tmp_path / "agent.log")}):
        wait_for(lambda: store.get_schedule(db, "tick").fire_count >= 1)

        store.update_schedule(db, "tick", paused=True)
        time.sleep(0.3)  # the daemon notices within 50 ms
        fired = store.get_schedule(db, "tick").fire_count
        time.sleep(2.2)  # two or more fire times pass

        assert store.get_schedule(db, "tick").fire_count == fired
