"""`reeve schedule`: recurring schedules that create pulses."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from reeve_cli import output
from reeve_cli.cli import context
from reeve_cli.cli.options import JsonFlag

app = typer.Typer(
    help="Add, list, pause and remove recurring schedules.", no_args_is_help=True
)

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The schedule's name.")]


def _rule(schedule: Any) -> str:
    from reeve_cli.timefmt import format_duration

    if schedule.cron:
        return f"cron '{schedule.cron}' ({schedule.tz})"
    return f"every {format_duration(schedule.every_s)}"


def _next(schedule: Any, n: int) -> list[Any]:
    from reeve_cli.model import utcnow
    from reeve_cli.schedule import next_fire_times

    if schedule.paused:
        return []
    return next_fire_times(schedule, n, utcnow())


def _with_next(schedule: Any, n: int = 3) -> dict[str, Any]:
    from reeve_cli.model import iso_utc

    data: dict[str, Any] = schedule.to_dict()
    data["next_fire_times"] = [iso_utc(t) for t in _next(schedule, n)]
    return data


@app.command("add")
def schedule_add(
    name: NameArg,
    prompt: Annotated[
        str,
        typer.Argument(
            metavar="PROMPT", help="What the agent should do; '-' reads stdin."
        ),
    ],
    cron: Annotated[
        str | None,
        typer.Option(
            "--cron", metavar="EXPR", help="Crontab expression, e.g. '0 9 * * 1-5'."
        ),
    ] = None,
    every: Annotated[
        str | None,
        typer.Option("--every", metavar="DURATION", help="Interval, e.g. '15m', '2h'."),
    ] = None,
    tz: Annotated[
        str | None,
        typer.Option(
            "--tz",
            metavar="ZONE",
            help="Zone of the cron times; default REEVE_TIMEZONE.",
        ),
    ] = None,
    priority: Annotated[
        str,
        typer.Option(
            "--priority",
            "-p",
            metavar="PRIORITY",
            help="critical, high, normal, low or deferred.",
        ),
    ] = "normal",
    jitter: Annotated[
        str | None,
        typer.Option(
            "--jitter",
            metavar="DURATION",
            help="Random delay added to each fire, e.g. '5m'.",
        ),
    ] = None,
    session: Annotated[
        str | None,
        typer.Option("--session", metavar="ID", help="Agent session id to resume."),
    ] = None,
    note: Annotated[
        list[str] | None,
        typer.Option("--note", "-n", metavar="TEXT", help="Sticky note (repeatable)."),
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", "-t", metavar="TAG", help="Tag (repeatable)."),
    ] = None,
    max_retries: Annotated[
        int | None,
        typer.Option(
            "--max-retries",
            metavar="N",
            help="Retries after a failure; default REEVE_MAX_RETRIES.",
        ),
    ] = None,
    json_: JsonFlag = False,
) -> None:
    """Add a recurring schedule; each fire creates a pulse.

    A fire while the previous pulse of the schedule is still pending or running
    is skipped (and counted). Fires missed while the daemon was down coalesce
    into one.

    Examples:

        reeve schedule add morning --cron '45 6 * * 1-5' 'Plan my day'

        reeve schedule add inbox --every 30m 'Check the inbox' --jitter 2m
    """
    from reeve_cli.errors import InvalidValue
    from reeve_cli.schedule import create_schedule

    if prompt == "-":
        prompt = sys.stdin.read()
    if cron is not None and every is not None:
        raise InvalidValue("--cron and --every cannot be used together")
    settings = context.settings()
    schedule = create_schedule(
        settings,
        context.database(),
        name=name,
        prompt=prompt,
        cron=cron,
        every=every,
        tz=tz,
        priority=priority,
        jitter=jitter,
        session_id=session,
        sticky_notes=note or [],
        tags=tag or [],
        max_retries=max_retries,
    )
    if json_:
        output.emit_json(_with_next(schedule))
        return
    upcoming = _next(schedule, 1)
    when = (
        output.local_time(upcoming[0], settings.zone, upcoming[0]).split(" (")[0]
        if upcoming
        else "never"
    )
    output.note(f"Schedule {schedule.name} added ({_rule(schedule)}); next: {when}")


@app.command("list")
def schedule_list(json_: JsonFlag = False) -> None:
    """List schedules with their next three fire times in local time.

    Examples:

        reeve schedule list

        reeve schedule list --json
    """
    from reeve_cli import store
    from reeve_cli.timefmt import format_local

    settings = context.settings()
    schedules = store.list_schedules(context.database())
    if json_:
        output.emit_json([_with_next(s) for s in schedules])
        return
    zone = settings.zone
    output.emit_table(
        ["Name", "Rule", "Priority", "State", "Next fires", "Fired", "Skipped"],
        (
            [
                s.name,
                _rule(s),
                s.priority.value,
                "paused" if s.paused else "active",
                "\n".join(format_local(t, zone) for t in _next(s, 3)) or "-",
                s.fire_count,
                s.skip_count,
            ]
            for s in schedules
        ),
        empty="No schedules; add one with 'reeve schedule add'",
    )


@app.command("show")
def schedule_show(name: NameArg, json_: JsonFlag = False) -> None:
    """Show one schedule, its counters and its next fire times.

    Examples:

        reeve schedule show morning
    """
    from reeve_cli import store
    from reeve_cli.timefmt import format_local

    settings = context.settings()
    schedule = store.get_schedule(context.database(), name)
    if json_:
        output.emit_json(_with_next(schedule, 5))
        return
    zone = settings.zone
    fields: list[tuple[str, Any]] = [
        ("name", schedule.name),
        ("rule", _rule(schedule)),
        ("priority", schedule.priority.value),
        ("state", "paused" if schedule.paused else "active"),
        ("prompt", schedule.prompt),
    ]
    if schedule.jitter_s:
        fields.append(("jitter", f"{schedule.jitter_s:g}s"))
    if schedule.session_id:
        fields.append(("session", schedule.session_id))
    for note_text in schedule.sticky_notes:
        fields.append(("note", note_text))
    if schedule.last_fire_at:
        fields.append(("last fire", format_local(schedule.last_fire_at, zone)))
    fields.append(("fired", schedule.fire_count))
    fields.append(("skipped", schedule.skip_count))
    fields.append(("failure streak", schedule.failure_streak))
    for moment in _next(schedule, 5):
        fields.append(("next", format_local(moment, zone)))
    output.emit_fields(fields)


def _set_paused(name: str, paused: bool, json_: bool) -> None:
    from reeve_cli import store

    schedule = store.set_schedule_paused(context.database(), name, paused)
    if json_:
        output.emit_json(_with_next(schedule))
        return
    output.note(f"Schedule {name} {'paused' if paused else 'resumed'}")


@app.command("pause")
def schedule_pause(name: NameArg, json_: JsonFlag = False) -> None:
    """Stop a schedule from firing until it is resumed.

    Examples:

        reeve schedule pause morning
    """
    _set_paused(name, True, json_)


@app.command("resume")
def schedule_resume(name: NameArg, json_: JsonFlag = False) -> None:
    """Let a paused schedule fire again (also resets its failure streak).

    Examples:

        reeve schedule resume morning
    """
    _set_paused(name, False, json_)


@app.command("remove")
def schedule_remove(name: NameArg, json_: JsonFlag = False) -> None:
    """Delete a schedule; pulses it already created stay.

    Examples:

        reeve schedule remove morning
    """
    from reeve_cli import store

    schedule = store.remove_schedule(context.database(), name)
    if json_:
        output.emit_json(schedule.to_dict())
        return
    output.note(f"Schedule {name} removed")


@app.command("run")
def schedule_run(name: NameArg, json_: JsonFlag = False) -> None:
    """Fire a schedule now: create its pulse, due at once.

    Skipped (exit 0, pulse null) while the schedule's previous pulse is still
    pending or running.

    Examples:

        reeve schedule run morning
    """
    from reeve_cli.schedule import fire_schedule_now

    pulse = fire_schedule_now(context.settings(), context.database(), name)
    if json_:
        output.emit_json({"pulse": pulse.to_dict() if pulse else None})
        return
    if pulse is None:
        output.note(
            f"Schedule {name} skipped: its previous pulse is still pending or running"
        )
        return
    output.note(f"Schedule {name} fired: pulse {pulse.id}")


@app.command("next")
def schedule_next(
    name: NameArg,
    count: Annotated[
        int,
        typer.Option(
            "-n", "--count", metavar="N", min=1, max=1000, help="How many fire times."
        ),
    ] = 5,
    json_: JsonFlag = False,
) -> None:
    """Preview the next fire times of a schedule in local time.

    Examples:

        reeve schedule next morning -n 10
    """
    from reeve_cli import store
    from reeve_cli.model import iso_utc, utcnow
    from reeve_cli.schedule import next_fire_times
    from reeve_cli.timefmt import format_local

    settings = context.settings()
    schedule = store.get_schedule(context.database(), name)
    times = next_fire_times(schedule, count, utcnow())
    if json_:
        output.emit_json([iso_utc(t) for t in times])
        return
    for moment in times:
        sys.stdout.write(format_local(moment, settings.zone) + "\n")
