"""`reeve mcp serve`: the MCP tools through which the agent manages its own time.

An agent client (Claude Code, Hapi) spawns this server over stdio for each
session. Every tool writes or reads Reeve's own rows through `store`, with the
same validation as the CLI, so it works whether or not the daemon runs; a
running daemon notices the change on its own. Tool results carry readable text
for the model and structured content in the same shape as `--json`.

Only the protocol may reach stdout. Logs go to stderr at WARNING, and expected
failures (`ReeveError`) become tool errors that say what is accepted.

This module imports the MCP SDK (about a second) and is imported only by
`reeve mcp serve`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field, ValidationError

from reeve_cli import __version__, store
from reeve_cli.config import Settings, ensure_data_dir, load_settings
from reeve_cli.current_pulse import Found, find_current, recorded_session
from reeve_cli.db import Database, open_database
from reeve_cli.envfile import env_file_path, read_env_file
from reeve_cli.errors import (
    InvalidValue,
    PulseNotFound,
    ReeveError,
    ScheduleNotFound,
)
from reeve_cli.model import PRIORITY_ORDER, Attempt, Pulse, Schedule, iso_utc, utcnow
from reeve_cli.timefmt import (
    ACCEPTED_FORMS,
    DURATION_FORMS,
    PAST_TOLERANCE,
    format_duration,
    format_local,
    parse_when,
    relative_hint,
)

logger = logging.getLogger(__name__)

SOURCE = "mcp"
_Tool = TypeVar("_Tool", bound=Callable[..., Any])
PRIORITY_NAMES = [p.value for p in PRIORITY_ORDER]

INSTRUCTIONS = """\
Reeve is your wake-up queue: it starts a new session of you at a time you choose,
with a prompt you write. Use schedule_pulse to wake yourself later ("in 20m",
"tomorrow 6:45"), list_upcoming_pulses to see what is planned, and
current_pulse to learn which pulse started this session and its sticky notes.
Times you give are read in the user's time zone; results show times in that
zone and in UTC, together with the current time."""

WHEN_HELP = (
    "When the pulse should run, in the user's time zone unless the text names "
    f"a zone or offset. Accepted: {ACCEPTED_FORMS}."
)


# Settings, database and errors ----------------------------------------------


def load_server_settings(
    flags: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> Settings:
    """Settings as the daemon sees them, even from a client's trimmed environment.

    Agent clients pass MCP servers little of their environment, and the daemon
    scrubs secrets from the agent's. Variables the systemd units get from
    `<config dir>/env` are therefore read from that file too, below real
    environment variables and flags.
    """
    environ = os.environ if environ is None else environ
    first = load_settings(flags, environ)
    from_file = read_env_file(env_file_path(first))
    missing = {k: v for k, v in from_file.items() if k not in environ}
    missing.pop("REEVE_CONFIG", None)
    if not missing:
        return first
    return load_settings(flags, {**missing, **environ})


class Backend:
    """Settings and database for the tools, opened on first use.

    Opening lazily keeps start-up (spawn to tool list) free of database work,
    and lets a broken config reach the model as a tool error instead of a
    server that never starts.
    """

    def __init__(self, flags: Mapping[str, Any]) -> None:
        self._flags = dict(flags)
        self._lock = threading.RLock()
        self._settings: Settings | None = None
        self._db: Database | None = None

    def settings(self) -> Settings:
        with self._lock:
            if self._settings is None:
                self._settings = load_server_settings(self._flags)
            return self._settings

    def db(self) -> Database:
        with self._lock:
            if self._db is None:
                settings = self.settings()
                ensure_data_dir(settings)
                self._db = open_database(settings.db_url, settings.busy_timeout)
            return self._db

    def secrets(self) -> list[str]:
        try:
            return self.settings().secrets()
        except ReeveError:
            return []


def redact(value: Any, secrets: list[str]) -> Any:
    """Replace every secret inside strings of a (nested) value with a mask."""
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in secrets:
            if secret and len(secret) >= 4:
                value = value.replace(secret, "********")
        return value
    if isinstance(value, dict):
        return {k: redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, secrets) for v in value]
    return value


def _message_for_model(exc: ReeveError) -> str:
    """The error's message, with CLI hints swapped for the matching tool."""
    if isinstance(exc, PulseNotFound):
        return (
            f"No pulse with id {exc.pulse_id}; list_upcoming_pulses "
            "(include_finished=true) shows the ids"
        )
    if isinstance(exc, ScheduleNotFound):
        return exc.message.replace("'reeve schedule list'", "list_schedules")
    # Schedule validation names the CLI's options; the tool's are plain names.
    text = exc.message
    for flag in ("cron", "every", "jitter"):
        text = text.replace(f"--{flag}", flag)
    return text


@contextmanager
def reported(backend: Backend, tool: str) -> Iterator[None]:
    """Turn every failure inside a tool into a ToolError the model can read."""
    try:
        yield
    except ToolError as exc:
        raise ToolError(redact(str(exc), backend.secrets())) from None
    except ReeveError as exc:
        raise ToolError(redact(_message_for_model(exc), backend.secrets())) from None
    except Exception as exc:
        logger.exception("MCP tool %s failed unexpectedly", tool)
        raise ToolError(
            f"Reeve hit an unexpected {type(exc).__name__} in {tool}; the "
            "details are in the MCP server's log (stderr). Nothing was changed "
            "unless the result said so."
        ) from None


def result(backend: Backend, text: str, structured: dict[str, Any]) -> CallToolResult:
    """A tool result: readable text for the model, structured data for programs."""
    secrets = backend.secrets()
    return CallToolResult(
        content=[TextContent(type="text", text=redact(text, secrets))],
        structured_content=redact(structured, secrets),
    )


# Showing times and pulses ---------------------------------------------------


def show_time(moment: datetime, settings: Settings, now: datetime) -> str:
    """'2026-12-04 06:45:00 CET (2026-12-04T05:45:00Z, in 13h 58m)'."""
    return (
        f"{format_local(moment, settings.zone)} ({iso_utc(moment)}, "
        f"{relative_hint(moment, now)})"
    )


def show_now(settings: Settings, now: datetime) -> str:
    return (
        f"Current time: {format_local(now, settings.zone)} ({iso_utc(now)}), "
        f"time zone {settings.timezone}."
    )


def describe_pulse(pulse: Pulse, settings: Settings, now: datetime) -> str:
    """Several lines about one pulse, for the model to read."""
    head = (
        f"Pulse {pulse.id} [{pulse.status.value}, {pulse.priority.value}] due "
        f"{show_time(pulse.scheduled_at, settings, now)}"
    )
    lines = [head, f"Prompt: {pulse.prompt}"]
    if pulse.sticky_notes:
        lines.append("Sticky notes:")
        lines.extend(f"- {note}" for note in pulse.sticky_notes)
    if pulse.tags:
        lines.append(f"Tags: {', '.join(pulse.tags)}")
    if pulse.schedule_name:
        lines.append(f"Created by schedule: {pulse.schedule_name}")
    if pulse.session_id:
        lines.append(f"Resumes session: {pulse.session_id}")
    lines.append(
        f"Source: {pulse.source}; attempts so far: {pulse.attempt} "
        f"(retries allowed: {pulse.max_retries})"
    )
    if pulse.started_at:
        lines.append(f"Started: {show_time(pulse.started_at, settings, now)}")
    if pulse.finished_at:
        lines.append(f"Finished: {show_time(pulse.finished_at, settings, now)}")
    if pulse.error:
        lines.append(f"Error: {pulse.error}")
    if pulse.result_session_id:
        lines.append(f"Agent session: {pulse.result_session_id}")
    if pulse.result_text:
        lines.append(f"Result: {pulse.result_text}")
    return "\n".join(lines)


def one_line(pulse: Pulse, settings: Settings, now: datetime) -> str:
    first = pulse.prompt.strip().splitlines()[0] if pulse.prompt.strip() else ""
    if len(first) > 100:
        first = first[:99] + "…"
    tags = f" tags: {', '.join(pulse.tags)}" if pulse.tags else ""
    return (
        f"- {pulse.id} [{pulse.status.value}, {pulse.priority.value}] "
        f"{format_local(pulse.scheduled_at, settings.zone)} "
        f"({relative_hint(pulse.scheduled_at, now)}): {first}{tags}"
    )


def describe_attempt(attempt: Attempt) -> str:
    parts = [f"attempt {attempt.number}: {attempt.status}"]
    if attempt.exit_code is not None:
        parts.append(f"exit {attempt.exit_code}")
    if attempt.duration_s is not None:
        parts.append(f"{attempt.duration_s:.1f}s")
    if attempt.session_id:
        parts.append(f"session {attempt.session_id}")
    text = ", ".join(parts)
    return text + (f" - {attempt.error}" if attempt.error else "")


def describe_schedule(schedule: Schedule) -> str:
    rule = (
        f"cron '{schedule.cron}'"
        if schedule.cron
        else f"every {format_duration(schedule.every_s or 0)}"
    )
    state = "paused" if schedule.paused else "active"
    return (
        f"'{schedule.name}' [{state}, {schedule.priority.value}] {rule} "
        f"in {schedule.tz}: {schedule.prompt.strip().splitlines()[0][:100]}"
    )


# Arguments --------------------------------------------------------------------


def read_when(text: str, settings: Settings, now: datetime) -> datetime:
    """Parse a time like the CLI does; past times are refused with the clock."""
    moment = parse_when(text, settings.zone, now=now, allow_past=True, field="when")
    if moment < now - PAST_TOLERANCE:
        raise InvalidValue(
            f"Time '{text}' ({format_local(moment, settings.zone)}) is in the "
            f"past; the current time is {format_local(now, settings.zone)}. "
            "Give a future time, or 'now' to run it at once",
            field="when",
        )
    return moment


def check_id(pulse_id: int) -> int:
    if pulse_id < 1:
        raise InvalidValue(
            f"Pulse ids are whole numbers from 1, got {pulse_id}; "
            "list_upcoming_pulses shows them",
            field="pulse_id",
        )
    return pulse_id


# The server ---------------------------------------------------------------


def explain_validation(error: ValidationError) -> str:
    """One line per bad argument, without pydantic's internals and links."""
    parts = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "arguments"
        text = f"{where}: {item['msg']}"
        if item["type"] != "missing":
            shown = repr(item["input"])
            if len(shown) > 80:
                shown = shown[:77] + "..."
            text += f" (got {shown})"
        parts.append(text)
    return "Invalid arguments: " + "; ".join(parts)


class ReeveServer(MCPServer):
    """MCPServer whose argument errors read as one plain sentence."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Any = None
    ) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, ValidationError) and str(exc).startswith(
                f"Error executing tool {name}:"
            ):
                message = f"Error executing tool {name}: {explain_validation(cause)}"
                raise ToolError(message) from cause
            raise


def build_server(backend: Backend) -> MCPServer:
    """Create the MCP server with every Reeve tool registered."""
    server = ReeveServer(
        "reeve",
        instructions=INSTRUCTIONS,
        version=__version__,
        log_level="WARNING",
    )
    writes = ToolAnnotations(read_only_hint=False, destructive_hint=False)
    reads = ToolAnnotations(read_only_hint=True)

    def tool(annotations: ToolAnnotations) -> Callable[[_Tool], _Tool]:
        """Register a tool; its docstring, as one paragraph, is the description."""

        def register(fn: _Tool) -> _Tool:
            description = " ".join((fn.__doc__ or "").split())
            server.add_tool(fn, description=description, annotations=annotations)
            return fn

        return register

    @tool(writes)
    def schedule_pulse(
        when: Annotated[str, Field(description=WHEN_HELP)],
        prompt: Annotated[
            str,
            Field(
                description="What you (the agent) should do when woken. Write "
                "it for a fresh session that remembers nothing of this one."
            ),
        ],
        priority: Annotated[
            str,
            Field(
                description="How urgent: critical, high, normal, low or deferred. "
                "Among due pulses the most urgent runs first.",
                json_schema_extra={"enum": PRIORITY_NAMES},
            ),
        ] = "normal",
        sticky_notes: Annotated[
            list[str] | None,
            Field(
                description="Short facts the woken session should see "
                "(e.g. 'flight LH 400 departs 9:10')."
            ),
        ] = None,
        tags: Annotated[
            list[str] | None,
            Field(description="Labels for filtering, e.g. ['travel']."),
        ] = None,
        session_id: Annotated[
            str | None,
            Field(description="An agent session id to resume instead of a new one."),
        ] = None,
        resume_current_session: Annotated[
            bool,
            Field(
                description="Resume this very session when the pulse runs "
                "(only in a session Reeve started; uses the session id the "
                "daemon recorded)."
            ),
        ] = False,
        idempotency_key: Annotated[
            str | None,
            Field(
                description="A key unique to this request; calling again with "
                "the same key returns the first pulse instead of adding another."
            ),
        ] = None,
    ) -> CallToolResult:
        """Schedule a pulse: Reeve will wake you (start a new agent session) at
        `when` with `prompt`. Use it whenever you need to act later: follow up,
        check again, remind the user. Examples of `when`: "in 20m", "+90s",
        "at 18:30", "tomorrow 6:45", "tomorrow at 9am", "next monday 14:00",
        "tonight", "2026-09-01 06:45", "2026-09-01T06:45:00Z". The result
        states the resolved time in the user's zone and in UTC, the current
        time, and the pulse id (needed to cancel or reschedule it)."""
        with reported(backend, "schedule_pulse"):
            settings = backend.settings()
            now = utcnow()
            moment = read_when(when, settings, now)
            if resume_current_session and session_id:
                raise InvalidValue(
                    "Give either session_id or resume_current_session=true, not both",
                    field="session_id",
                )
            session = session_id
            db = backend.db()
            if resume_current_session:
                found = find_current(db)
                if found is None:
                    raise InvalidValue(
                        "resume_current_session needs a session that Reeve "
                        "started, and this one was not (current_pulse says "
                        "so); pass session_id instead, or leave both out for "
                        "a new session",
                        field="resume_current_session",
                    )
                session, _origin = recorded_session(found, settings.logs_path)
                if session is None:
                    raise InvalidValue(
                        f"Reeve has not recorded a session id for pulse "
                        f"{found.pulse.id} yet, so this session cannot be "
                        "resumed; leave resume_current_session out for a new "
                        "session, or put what the next session needs in "
                        "sticky_notes",
                        field="resume_current_session",
                    )
            pulse, created = store.add_pulse(
                db,
                prompt=prompt,
                scheduled_at=moment,
                priority=priority,
                session_id=session,
                sticky_notes=sticky_notes or [],
                tags=tags or [],
                source=SOURCE,
                max_retries=settings.max_retries,
                idempotency_key=idempotency_key,
                max_prompt_bytes=settings.max_prompt_bytes,
            )
            if created:
                head = (
                    f"Scheduled pulse {pulse.id} ({pulse.priority.value}) for "
                    f"{show_time(pulse.scheduled_at, settings, now)}."
                )
            else:
                head = (
                    f"Pulse {pulse.id} already has idempotency key "
                    f"'{idempotency_key}'; nothing new was added. It is "
                    f"{pulse.status.value}, due "
                    f"{show_time(pulse.scheduled_at, settings, now)}."
                )
            lines = [head, show_now(settings, now)]
            if pulse.session_id:
                lines.append(f"It resumes session {pulse.session_id}.")
            return result(backend, "\n".join(lines), pulse.to_dict())

    @tool(reads)
    def list_upcoming_pulses(
        limit: Annotated[
            int, Field(ge=1, le=500, description="At most this many pulses.")
        ] = 20,
        include_finished: Annotated[
            bool,
            Field(
                description="Also list recently finished pulses (completed, "
                "failed, cancelled), newest first."
            ),
        ] = False,
        tag: Annotated[
            str | None, Field(description="Only pulses with this tag.")
        ] = None,
    ) -> CallToolResult:
        """List pulses that are waiting or running, the next due first, with
        their ids, times, priorities and prompts. Use it to see what is already
        planned before scheduling more, or to find an id to cancel or
        reschedule. Set include_finished to see what ran recently."""
        with reported(backend, "list_upcoming_pulses"):
            settings = backend.settings()
            db = backend.db()
            now = utcnow()
            pulses = store.list_pulses(
                db, statuses=["running", "pending"], tag=tag, limit=limit
            )
            finished: list[Pulse] = []
            if include_finished:
                finished = store.list_pulses(
                    db,
                    statuses=["completed", "failed", "cancelled"],
                    tag=tag,
                    limit=limit,
                    newest_first=True,
                )
            lines = [show_now(settings, now)]
            if pulses:
                lines.append(f"Upcoming and running pulses ({len(pulses)}):")
                lines.extend(one_line(p, settings, now) for p in pulses)
            else:
                lines.append("No upcoming pulses.")
            if include_finished:
                if finished:
                    lines.append(f"Recently finished ({len(finished)}):")
                    lines.extend(one_line(p, settings, now) for p in finished)
                else:
                    lines.append("No finished pulses.")
            data: dict[str, Any] = {
                "now": iso_utc(now),
                "pulses": [p.to_dict() for p in pulses],
            }
            if include_finished:
                data["finished"] = [p.to_dict() for p in finished]
            return result(backend, "\n".join(lines), data)

    @tool(reads)
    def get_pulse(
        pulse_id: Annotated[int, Field(description="The pulse id, e.g. 42.")],
    ) -> CallToolResult:
        """Show one pulse in full: its time, prompt, sticky notes, status, and
        for a pulse that ran, each attempt and the outcome (error, result,
        agent session id)."""
        with reported(backend, "get_pulse"):
            settings = backend.settings()
            db = backend.db()
            now = utcnow()
            pulse = store.get_pulse(db, check_id(pulse_id))
            attempts = store.get_attempts(db, pulse.id)
            lines = [describe_pulse(pulse, settings, now)]
            lines.extend(describe_attempt(a) for a in attempts)
            lines.append(show_now(settings, now))
            data = dict(pulse.to_dict(), attempts=[a.to_dict() for a in attempts])
            return result(backend, "\n".join(lines), data)

    @tool(ToolAnnotations(destructive_hint=True))
    def cancel_pulse(
        pulse_id: Annotated[int, Field(description="The pulse id, e.g. 42.")],
    ) -> CallToolResult:
        """Cancel a pending pulse so it never runs. Only pending pulses can be
        cancelled; one that is running or finished is reported as such."""
        with reported(backend, "cancel_pulse"):
            settings = backend.settings()
            now = utcnow()
            pulse = store.cancel_pulse(backend.db(), check_id(pulse_id))
            text = (
                f"Cancelled pulse {pulse.id}; it was due "
                f"{show_time(pulse.scheduled_at, settings, now)}.\n"
                f"{show_now(settings, now)}"
            )
            return result(backend, text, pulse.to_dict())

    @tool(writes)
    def reschedule_pulse(
        pulse_id: Annotated[int, Field(description="The pulse id, e.g. 42.")],
        when: Annotated[str, Field(description=WHEN_HELP)],
    ) -> CallToolResult:
        """Move a pending pulse to a new time, keeping its prompt and notes.
        Examples of `when`: "in 2h", "tomorrow 9:00", "2026-09-01 06:45"."""
        with reported(backend, "reschedule_pulse"):
            settings = backend.settings()
            now = utcnow()
            ident = check_id(pulse_id)
            moment = read_when(when, settings, now)
            pulse = store.reschedule_pulse(backend.db(), ident, moment)
            text = (
                f"Rescheduled pulse {pulse.id} to "
                f"{show_time(pulse.scheduled_at, settings, now)}.\n"
                f"{show_now(settings, now)}"
            )
            return result(backend, text, pulse.to_dict())

    @tool(reads)
    def list_schedules() -> CallToolResult:
        """List the recurring schedules (cron or interval rules that create
        pulses on their own): name, rule, time zone, paused or not, and when
        each fires next."""
        with reported(backend, "list_schedules"):
            settings = backend.settings()
            now = utcnow()
            schedules = store.list_schedules(backend.db())
            lines = [show_now(settings, now)]
            data = []
            if not schedules:
                lines.append("No schedules.")
            for schedule in schedules:
                upcoming = next_fires(schedule, now)
                line = "- " + describe_schedule(schedule)
                if upcoming:
                    line += f" (next {show_time(upcoming[0], settings, now)})"
                lines.append(line)
                data.append(schedule_data(schedule, upcoming))
            return result(backend, "\n".join(lines), {"schedules": data})

    @tool(writes)
    def create_schedule(
        name: Annotated[
            str, Field(description="A short unique name, e.g. 'morning-brief'.")
        ],
        prompt: Annotated[
            str, Field(description="What the agent should do each time.")
        ],
        cron: Annotated[
            str | None,
            Field(
                description="A crontab rule 'minute hour day month weekday', "
                "e.g. '0 7 * * *' (7:00 daily) or '30 9 * * mon-fri'. Give cron "
                "or every, not both."
            ),
        ] = None,
        every: Annotated[
            str | None,
            Field(description=f"An interval instead of cron: {DURATION_FORMS}."),
        ] = None,
        tz: Annotated[
            str | None,
            Field(
                description="IANA time zone of the cron rule, e.g. "
                "'Europe/Berlin'; default the user's zone."
            ),
        ] = None,
        priority: Annotated[
            str,
            Field(
                description="critical, high, normal, low or deferred.",
                json_schema_extra={"enum": PRIORITY_NAMES},
            ),
        ] = "normal",
    ) -> CallToolResult:
        """Create a recurring schedule that wakes you with the same prompt on a
        cron rule or at a fixed interval: a heartbeat such as a morning brief
        ('0 7 * * *') or a check every 2h (every='2h')."""
        with reported(backend, "create_schedule"):
            from reeve_cli import schedule as schedule_rules

            settings = backend.settings()
            now = utcnow()
            created = schedule_rules.create_schedule(
                settings,
                backend.db(),
                name=name,
                prompt=prompt,
                cron=cron,
                every=every,
                tz=tz,
                priority=priority,
            )
            upcoming = next_fires(created, now)
            text = f"Created schedule {describe_schedule(created)}."
            text += next_text(upcoming, settings, now) + "\n" + show_now(settings, now)
            return result(backend, text, schedule_data(created, upcoming))

    def set_paused(name: str, paused: bool, tool: str) -> CallToolResult:
        with reported(backend, tool):
            settings = backend.settings()
            now = utcnow()
            changed = store.set_schedule_paused(backend.db(), name, paused)
            upcoming = next_fires(changed, now)
            text = f"Schedule {describe_schedule(changed)}."
            text += next_text(upcoming, settings, now)
            return result(backend, text, schedule_data(changed, upcoming))

    @tool(writes)
    def pause_schedule(
        name: Annotated[str, Field(description="The schedule's name.")],
    ) -> CallToolResult:
        """Pause a recurring schedule: it creates no pulses until resumed.
        Pulses it already created stay."""
        return set_paused(name, True, "pause_schedule")

    @tool(writes)
    def resume_schedule(
        name: Annotated[str, Field(description="The schedule's name.")],
    ) -> CallToolResult:
        """Resume a paused schedule; it fires again from its next due time."""
        return set_paused(name, False, "resume_schedule")

    @tool(writes)
    def send_notification(
        message: Annotated[
            str, Field(description="The text to send the user, e.g. on Telegram.")
        ],
        priority: Annotated[
            str,
            Field(
                description="critical, high, normal, low or deferred.",
                json_schema_extra={"enum": PRIORITY_NAMES},
            ),
        ] = "normal",
    ) -> CallToolResult:
        """Send the user a message through the configured notifier (Telegram).
        Use it to tell the user something they should see now, e.g. 'Your
        flight LH 400 is delayed by 40 minutes'."""
        with reported(backend, "send_notification"):
            settings = backend.settings()
            if not message.strip():
                raise InvalidValue("The message is empty; say what to tell the user")
            from reeve_cli.model import Priority
            from reeve_cli.notify import notify

            chosen = Priority.parse(priority)
            row = notify(settings, backend.db(), message, chosen)
            status = str(row.get("status", "sent"))
            if status != "sent":
                raise InvalidValue(
                    f"The notification could not be sent ({status}): "
                    f"{row.get('last_error') or 'no reason given'}"
                )
            text = f"Sent the notification via {row.get('notifier', 'the notifier')}."
            return result(backend, text, dict(row))

    @tool(reads)
    def current_pulse() -> CallToolResult:
        """Tell which pulse started this session: its id, prompt, sticky notes,
        priority, times, schedule and recorded session id; or that this
        session was not started by Reeve. Call it first when you woke up and
        need the context of your pulse."""
        with reported(backend, "current_pulse"):
            settings = backend.settings()
            db = backend.db()
            now = utcnow()
            found = find_current(db)
            if found is None:
                text = (
                    "This session was not started by Reeve: REEVE_PULSE_ID is "
                    "not set and no running Reeve attempt is an ancestor of "
                    "this MCP server.\n" + show_now(settings, now)
                )
                return result(
                    backend,
                    text,
                    {"started_by_reeve": False, "pulse": None, "now": iso_utc(now)},
                )
            return result(backend, *current_result(found, settings, db, now))

    return server


def current_result(
    found: Found, settings: Settings, db: Database, now: datetime
) -> tuple[str, dict[str, Any]]:
    pulse = found.pulse
    session, origin = recorded_session(found, settings.logs_path)
    schedule: Schedule | None = None
    if pulse.schedule_name:
        try:
            schedule = store.get_schedule(db, pulse.schedule_name)
        except ScheduleNotFound:
            schedule = None
    head = f"This session was started by Reeve for pulse {pulse.id} "
    lines = [head + f"(found via {found.how}).", describe_pulse(pulse, settings, now)]
    if found.attempt is not None:
        lines.append(
            f"Current attempt: {found.attempt.number} of at most "
            f"{pulse.max_retries + 1}, started "
            f"{show_time(found.attempt.started_at, settings, now)}"
        )
    if schedule is not None:
        lines.append(f"Schedule: {describe_schedule(schedule)}")
    elif pulse.schedule_name:
        lines.append(f"Schedule: '{pulse.schedule_name}' (since removed)")
    if session:
        lines.append(f"Recorded session id: {session} (from {origin})")
    lines.append(show_now(settings, now))
    data = {
        "started_by_reeve": True,
        "found_by": found.how,
        "pulse": pulse.to_dict(),
        "attempt": found.attempt.to_dict() if found.attempt else None,
        "schedule": schedule.to_dict() if schedule else None,
        "session_id": session,
        "now": iso_utc(now),
    }
    return "\n".join(lines), data


def next_fires(schedule: Schedule, now: datetime, n: int = 3) -> list[datetime]:
    """When a schedule fires next (none while paused, or for a broken rule)."""
    # Imported here: reeve_cli.schedule loads APScheduler (~0.2 s of start-up).
    from reeve_cli.schedule import next_fire_times

    if schedule.paused:
        return []
    try:
        return next_fire_times(schedule, n, now)
    except Exception:  # a rule the daemon would refuse too; listing must not fail
        logger.warning("Schedule %s: cannot compute its next fire", schedule.name)
        return []


def schedule_data(schedule: Schedule, upcoming: list[datetime]) -> dict[str, Any]:
    """The shape of `reeve schedule show --json`: the schedule and next fires."""
    return dict(schedule.to_dict(), next_fire_times=[iso_utc(t) for t in upcoming])


def next_text(upcoming: list[datetime], settings: Settings, now: datetime) -> str:
    if not upcoming:
        return ""
    return f" It fires next {show_time(upcoming[0], settings, now)}."


# Entry point ------------------------------------------------------------------


def serve(flags: Mapping[str, Any]) -> None:
    """Run the MCP server on stdin/stdout until the client closes stdin.

    Args:
        flags: settings given on the command line, by setting name.
    """
    from reeve_cli.logs import setup_logging

    backend = Backend(flags)
    setup_logging("WARNING")
    try:
        secrets = backend.settings().secrets()
    except ReeveError as exc:
        logger.warning("Settings cannot be read, every tool will say so: %s", exc)
    else:
        setup_logging("WARNING", secrets)
    build_server(backend).run("stdio")
