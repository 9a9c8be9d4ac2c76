"""`reeve daemon` (run the daemon) and `reeve status` (is it running?)."""

from __future__ import annotations

import logging
import sys
from typing import Any

import typer

from reeve_cli import output
from reeve_cli.cli import context
from reeve_cli.cli.options import JsonFlag


def daemon() -> None:
    """Run the daemon in the foreground: fire pulses and schedules, serve the API.

    One daemon per database: a second one exits with status 4 and names the
    first. SIGTERM or Ctrl-C stops it gracefully (running attempts get
    REEVE_STOP_GRACE seconds, then go back to pending). Under systemd it reports
    readiness with sd_notify (Type=notify).

    Examples:

        reeve daemon

        REEVE_MAX_CONCURRENT=2 reeve daemon
    """
    from reeve_cli.errors import ReeveError, StartupError

    try:
        settings = context.settings()
    except ReeveError as exc:
        raise StartupError(exc.message) from None
    from reeve_cli.daemon import run_daemon
    from reeve_cli.logs import setup_logging

    setup_logging(settings.log_level, settings.secrets())
    # One line per state change is ours to write; these libraries repeat it.
    for name in ("alembic", "apscheduler.executors", "apscheduler.scheduler"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        code = run_daemon(settings)
    except StartupError:
        raise
    except ReeveError as exc:
        raise StartupError(exc.message) from None
    raise typer.Exit(code)


def _ago(seconds: float | None) -> str:
    from reeve_cli.timefmt import format_duration

    return "" if seconds is None else format_duration(seconds)


def status(
    json_: JsonFlag = False,
) -> None:
    """Show whether the daemon runs, what is running, and what comes next.

    Exits with status 3 when the daemon is not running (LSB convention).

    Examples:

        reeve status

        reeve status --json | jq .counts
    """
    from reeve_cli.model import utcnow
    from reeve_cli.status import collect_status

    settings = context.settings()
    state = collect_status(settings, context.database())
    daemon_state: dict[str, Any] = state["daemon"]
    if json_:
        output.emit_json(state)
    else:
        zone = settings.zone
        now = utcnow()
        if daemon_state["running"]:
            line = (
                f"daemon:   running (pid {daemon_state['pid']} on "
                f"{daemon_state['host']}, up {_ago(daemon_state['uptime_s'])})"
            )
        else:
            line = "daemon:   not running"
        out = [line]
        if daemon_state["api_url"]:
            out.append(f"api:      {daemon_state['api_url']}")
        counts = state["counts"]
        out.append("pulses:   " + ", ".join(f"{counts[k]} {k}" for k in counts))
        out.append(f"schedules: {state['schedules']}")
        for pulse in state["running"]:
            since = _parse(pulse["started_at"]) if pulse["started_at"] else None
            out.append(
                f"running:  pulse {pulse['id']} ({pulse['priority']}) since "
                + output.local_time(since, zone, now)
            )
        if state["next_due"]:
            nxt = state["next_due"]
            when = _parse(nxt["scheduled_at"])
            out.append(
                f"next:     pulse {nxt['id']} ({nxt['priority']}) "
                + output.local_time(when, zone, now)
            )
        if state["last_failure"]:
            fail = state["last_failure"]
            out.append(f"failure:  pulse {fail['id']}: {fail['error'] or 'failed'}")
        sys.stdout.write("\n".join(out) + "\n")
    if not daemon_state["running"]:
        raise typer.Exit(3)


def _parse(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00"))
