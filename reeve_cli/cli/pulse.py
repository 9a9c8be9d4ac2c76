"""`reeve pulse`: add, list, show, cancel and reschedule pulses."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from reeve_cli import output
from reeve_cli.cli import context
from reeve_cli.cli.options import JsonFlag
from reeve_cli.errors import InvalidValue

app = typer.Typer(
    help="Add, list, show, cancel and reschedule pulses.", no_args_is_help=True
)

AllowPast = Annotated[
    bool,
    typer.Option("--allow-past", help="Accept a past time; the pulse runs at once."),
]


def parse_id(text: str) -> int:
    """Read a pulse id typed by the user."""
    try:
        value = int(text)
    except ValueError:
        raise InvalidValue(
            f"Pulse ids are whole numbers, got '{text}'; see 'reeve pulse list'",
            field="id",
        ) from None
    if value < 1:
        raise InvalidValue(f"Pulse ids start at 1, got '{text}'", field="id")
    return value


def _summary(prompt: str, width: int = 60) -> str:
    first = prompt.strip().splitlines()[0] if prompt.strip() else ""
    return first if len(first) <= width else first[: width - 1] + "…"


def _show_pulse(pulse: Any, attempts: list[Any] | None = None) -> None:
    from reeve_cli.model import utcnow

    zone = context.settings().zone
    now = utcnow()
    fields: list[tuple[str, Any]] = [
        ("id", pulse.id),
        ("status", pulse.status.value),
        ("priority", pulse.priority.value),
        ("due", output.local_time(pulse.scheduled_at, zone, now)),
        ("prompt", pulse.prompt),
    ]
    for note_text in pulse.sticky_notes:
        fields.append(("note", note_text))
    if pulse.tags:
        fields.append(("tags", ", ".join(pulse.tags)))
    fields.append(("source", pulse.source))
    if pulse.session_id:
        fields.append(("session", pulse.session_id))
    if pulse.idempotency_key:
        fields.append(("key", pulse.idempotency_key))
    if pulse.executor:
        fields.append(("executor", pulse.executor))
    fields.append(
        ("attempts", f"{pulse.attempt} (retries allowed: {pulse.max_retries})")
    )
    if pulse.started_at:
        fields.append(("started", output.local_time(pulse.started_at, zone, now)))
    if pulse.finished_at:
        fields.append(("finished", output.local_time(pulse.finished_at, zone, now)))
    if pulse.duration_s is not None:
        fields.append(("duration", f"{pulse.duration_s:.1f}s"))
    if pulse.exit_code is not None:
        fields.append(("exit code", pulse.exit_code))
    if pulse.result_session_id:
        fields.append(("agent session", pulse.result_session_id))
    if pulse.cost_usd is not None:
        fields.append(("cost", f"${pulse.cost_usd:.4f}"))
    if pulse.error:
        fields.append(("error", pulse.error))
    if pulse.result_text:
        fields.append(("result", pulse.result_text))
    fields.extend(
        (
            f"attempt {attempt.number}",
            attempt.status
            + (f", exit {attempt.exit_code}" if attempt.exit_code is not None else "")
            + (f", {attempt.duration_s:.1f}s" if attempt.duration_s is not None else "")
            + (f": {attempt.error}" if attempt.error else ""),
        )
        for attempt in attempts or []
    )
    output.emit_fields(fields)


def _table(pulses: list[Any], empty: str) -> None:
    from reeve_cli.model import utcnow
    from reeve_cli.timefmt import relative_hint

    zone = context.settings().zone
    now = utcnow()
    output.emit_table(
        ["ID", "Due", "When", "Priority", "Status", "Prompt", "Tags"],
        (
            [
                p.id,
                p.scheduled_at.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z"),
                relative_hint(p.scheduled_at, now),
                p.priority.value,
                p.status.value,
                _summary(p.prompt),
                ", ".join(p.tags),
            ]
            for p in pulses
        ),
        empty=empty,
        no_wrap=("Due", "When"),
    )


def _read_prompt(prompt: str) -> str:
    if prompt == "-":
        # `echo text | reeve pulse add -` should not store echo's newline.
        return sys.stdin.read().rstrip("\r\n")
    return prompt


@app.command("add")
def pulse_add(
    prompt: Annotated[
        str,
        typer.Argument(
            metavar="PROMPT", help="What the agent should do; '-' reads stdin."
        ),
    ],
    at: Annotated[
        str,
        typer.Option(
            "--at",
            "-a",
            metavar="WHEN",
            help="When: 'in 20m', 'tomorrow 6:45', ISO 8601 (see docs).",
        ),
    ] = "now",
    priority: Annotated[
        str,
        typer.Option(
            "--priority",
            "-p",
            metavar="PRIORITY",
            help="critical, high, normal, low or deferred.",
        ),
    ] = "normal",
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
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            metavar="KEY",
            help="Idempotency key: a repeat returns the first pulse.",
        ),
    ] = None,
    executor: Annotated[
        str | None,
        typer.Option(
            "--executor", metavar="NAME", help="Executor plugin for this pulse."
        ),
    ] = None,
    allow_past: AllowPast = False,
    json_: JsonFlag = False,
) -> None:
    """Add a pulse: wake the agent at a time with a prompt.

    Examples:

        reeve pulse add "check the flight" --at "tomorrow 6:45" --priority high

        echo "summarise the inbox" | reeve pulse add - --at "in 2h" --tag mail
    """
    from reeve_cli import store
    from reeve_cli.model import Priority
    from reeve_cli.timefmt import parse_when

    settings = context.settings()
    text = _read_prompt(prompt)
    chosen = Priority.parse(priority)
    when = parse_when(at, settings.zone, allow_past=allow_past)
    retries = settings.max_retries if max_retries is None else max_retries

    pulse, created = store.add_pulse(
        context.database(),
        prompt=text,
        scheduled_at=when,
        priority=chosen,
        session_id=session,
        sticky_notes=note or [],
        tags=tag or [],
        source="cli",
        max_retries=retries,
        idempotency_key=key,
        executor=executor,
        max_prompt_bytes=settings.max_prompt_bytes,
    )

    if not created:
        output.note(f"Pulse {pulse.id} already has key '{key}'; nothing added")
    if json_:
        output.emit_json(pulse.to_dict())
        return
    if created:
        from reeve_cli.model import utcnow

        due = output.local_time(pulse.scheduled_at, settings.zone, utcnow())
        sys.stdout.write(
            f"Added pulse {pulse.id} ({pulse.priority.value}), due {due}\n"
        )
    else:
        _show_pulse(pulse)


@app.command("list")
def pulse_list(
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            "-s",
            metavar="STATUS",
            help="Only this status (repeatable); default pending.",
        ),
    ] = None,
    tag: Annotated[
        str | None,
        typer.Option("--tag", "-t", metavar="TAG", help="Only with this tag."),
    ] = None,
    priority: Annotated[
        str | None,
        typer.Option(
            "--priority", "-p", metavar="PRIORITY", help="Only this priority."
        ),
    ] = None,
    limit: Annotated[
        int,
        typer.Option("--limit", "-l", min=1, metavar="N", help="At most this many."),
    ] = 50,
    all_: Annotated[bool, typer.Option("--all", help="Every status.")] = False,
    json_: JsonFlag = False,
) -> None:
    """List pulses, the next due first (pending only unless told otherwise).

    Examples:

        reeve pulse list

        reeve pulse list --all --tag mail --json
    """
    from reeve_cli import store
    from reeve_cli.model import Status

    statuses = None if all_ else [Status.parse(s) for s in (status or ["pending"])]
    # One row more than shown tells whether the limit cut the list.
    pulses = store.list_pulses(
        context.database(),
        statuses=statuses,
        tag=tag,
        priority=priority,
        limit=limit + 1,
    )
    more, pulses = len(pulses) > limit, pulses[:limit]
    if json_:
        output.emit_json([p.to_dict() for p in pulses])
        return
    _table(pulses, empty="No pulses; add one with 'reeve pulse add'")
    if more:
        output.note(f"Showing the first {limit}; raise --limit to see more")


@app.command("show")
def pulse_show(
    pulse_id: Annotated[str, typer.Argument(metavar="ID", help="Pulse id.")],
    json_: JsonFlag = False,
) -> None:
    """Show one pulse with its outcome and attempts."""
    from reeve_cli import store

    db = context.database()
    pulse = store.get_pulse(db, parse_id(pulse_id))
    attempts = store.get_attempts(db, pulse.id)
    if json_:
        output.emit_json(
            dict(pulse.to_dict(), attempts=[a.to_dict() for a in attempts])
        )
        return
    _show_pulse(pulse, attempts)


@app.command("cancel")
def pulse_cancel(
    pulse_ids: Annotated[list[str], typer.Argument(metavar="ID...", help="Pulse ids.")],
    json_: JsonFlag = False,
) -> None:
    """Cancel pending pulses. Nothing is cancelled if any id is wrong.

    Examples:

        reeve pulse cancel 42 43
    """
    from reeve_cli import store

    ids = [parse_id(text) for text in pulse_ids]
    cancelled = store.cancel_pulses(context.database(), ids)

    if json_:
        output.emit_json([p.to_dict() for p in cancelled])
        return
    for pulse in cancelled:
        sys.stdout.write(f"Cancelled pulse {pulse.id}\n")


@app.command("reschedule")
def pulse_reschedule(
    pulse_id: Annotated[str, typer.Argument(metavar="ID", help="Pulse id.")],
    when: Annotated[str, typer.Argument(metavar="WHEN", help="The new time.")],
    allow_past: AllowPast = False,
    json_: JsonFlag = False,
) -> None:
    """Move a pending pulse to a new time.

    Examples:

        reeve pulse reschedule 42 "in 30m"
    """
    from reeve_cli import store
    from reeve_cli.model import utcnow
    from reeve_cli.timefmt import parse_when

    settings = context.settings()
    ident = parse_id(pulse_id)
    moment = parse_when(when, settings.zone, allow_past=allow_past, field="when")
    pulse = store.reschedule_pulse(context.database(), ident, moment)
    if json_:
        output.emit_json(pulse.to_dict())
        return
    due = output.local_time(pulse.scheduled_at, settings.zone, utcnow())
    sys.stdout.write(f"Rescheduled pulse {pulse.id}, due {due}\n")


@app.command("history")
def pulse_history(
    limit: Annotated[
        int,
        typer.Option("--limit", "-l", min=1, metavar="N", help="At most this many."),
    ] = 20,
    json_: JsonFlag = False,
) -> None:
    """List finished pulses (completed, failed, cancelled), newest first."""
    from reeve_cli import store

    pulses = store.list_history(context.database(), limit=limit)
    if json_:
        output.emit_json([p.to_dict() for p in pulses])
        return
    _table(pulses, empty="No finished pulses yet")
