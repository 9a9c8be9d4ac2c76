"""Which pulse started this agent session?

The daemon starts an agent for each attempt and records the agent's pid on the
attempt row. Agent clients do not reliably pass their environment on to the MCP
servers they spawn (several drop or sanitise it), so a server looks for
`REEVE_PULSE_ID` first, and otherwise walks up its own parent processes to find
a running attempt whose agent is one of them. Stdlib only, cheap to import.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from reeve_cli import store
from reeve_cli.db import Database
from reeve_cli.errors import InvalidValue, PulseNotFound
from reeve_cli.model import Attempt, Pulse

# Parent processes to walk at most (guards against loops and deep trees).
MAX_ANCESTORS = 64
# How much of an attempt's log to read when looking for the agent's init event.
MAX_LOG_SCAN = 256 * 1024


@dataclass(frozen=True, slots=True)
class Found:
    pulse: Pulse
    attempt: Attempt | None
    how: str  # "REEVE_PULSE_ID" or "process ancestry"


def parent_pid(pid: int) -> int | None:
    """The parent of a process, from /proc (Linux) or `ps` elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self").exists():
            return None  # the process is gone
        stat = ""
    except OSError:
        return None
    if stat:
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = stat.rsplit(")", 1)[-1].split()
        try:
            return int(fields[1])
        except (IndexError, ValueError):
            return None
    try:
        out = subprocess.run(
            ["ps", "-o", "ppid=", "-p", str(pid)],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
        return int(out) if out else None
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def ancestors(pid: int | None = None) -> list[int]:
    """This process and its parents, nearest first, up to (not including) init."""
    chain: list[int] = []
    current: int | None = os.getpid() if pid is None else pid
    while current and current > 1 and current not in chain:
        chain.append(current)
        if len(chain) >= MAX_ANCESTORS:
            break
        current = parent_pid(current)
    return chain


def _running_attempt(db: Database, pulse_id: int) -> Attempt | None:
    with db.transaction() as conn:
        rows = conn.execute(
            "SELECT * FROM attempts WHERE pulse_id = :id AND status = 'running' "
            "ORDER BY number DESC LIMIT 1",
            {"id": pulse_id},
        )
    return Attempt.from_row(rows[0]) if rows else None


def _attempt_by_id(db: Database, attempt_id: int, pulse_id: int) -> Attempt | None:
    with db.transaction() as conn:
        rows = conn.execute(
            "SELECT * FROM attempts WHERE id = :id AND pulse_id = :pulse_id",
            {"id": attempt_id, "pulse_id": pulse_id},
        )
    return Attempt.from_row(rows[0]) if rows else None


def _from_env(db: Database) -> tuple[Found | None, str | None]:
    raw = os.environ.get("REEVE_PULSE_ID", "").strip()
    if not raw:
        return None, None
    try:
        pulse = store.get_pulse(db, int(raw))
    except (ValueError, PulseNotFound):
        return None, (
            f"REEVE_PULSE_ID is '{raw}', but this database has no such pulse; "
            "is the MCP server registered with the same --data-dir and "
            "--database-url as the daemon? (see 'reeve mcp config')"
        )
    attempt = None
    raw_attempt = os.environ.get("REEVE_ATTEMPT_ID", "").strip()
    if raw_attempt.isdigit():
        attempt = _attempt_by_id(db, int(raw_attempt), pulse.id)
    if attempt is None:
        attempt = _running_attempt(db, pulse.id)
    return Found(pulse, attempt, "REEVE_PULSE_ID"), None


def _from_ancestry(db: Database) -> Found | None:
    chain = ancestors()
    if not chain:
        return None
    params = {f"p{i}": pid for i, pid in enumerate(chain)}
    placeholders = ", ".join(f":{name}" for name in params)
    with db.transaction() as conn:
        rows = conn.execute(
            f"SELECT * FROM attempts WHERE status = 'running' "
            f"AND pid IN ({placeholders}) ORDER BY id DESC",
            params,
        )
    if not rows:
        return None
    attempts = [Attempt.from_row(row) for row in rows]
    # The nearest ancestor wins: an agent started inside another agent's run.
    attempts.sort(key=lambda a: chain.index(a.pid) if a.pid in chain else len(chain))
    attempt = attempts[0]
    return Found(store.get_pulse(db, attempt.pulse_id), attempt, "process ancestry")


def find_current(db: Database) -> Found | None:
    """The pulse this server's session was started for, or None.

    Agent clients do not reliably pass their environment to MCP servers, so
    `REEVE_PULSE_ID` is used when present, and otherwise the running attempt
    whose agent process is an ancestor of this server.

    Raises:
        InvalidValue: REEVE_PULSE_ID names a pulse this database lacks, and no
            ancestor is a running attempt (the server points at another
            database).
    """
    found, problem = _from_env(db)
    if found is not None:
        return found
    found = _from_ancestry(db)
    if found is None and problem:
        raise InvalidValue(problem, field="REEVE_PULSE_ID")
    return found


def recorded_session(found: Found, logs_dir: Path | None) -> tuple[str | None, str]:
    """The session id the daemon recorded for the current pulse, and its origin.

    In order: the session id stored on the running attempt (the daemon stores
    it as soon as the executor reports the agent's `system`/`init` event); the
    one in that event in the attempt's log (a fallback for executors that do not
    report it early, or the instant before the daemon's write); the session
    this pulse resumes (Claude Code keeps the id on resume); the pulse's last
    recorded session.
    """
    attempt = found.attempt
    if attempt is not None and attempt.session_id:
        return attempt.session_id, f"attempt {attempt.number}"
    if attempt is not None:
        if attempt.log_path:
            log: Path | None = Path(attempt.log_path)
        elif logs_dir is not None:
            log = logs_dir / f"pulse-{attempt.pulse_id}-{attempt.number}.log"
        else:
            log = None
        session = session_from_log(log) if log is not None else None
        if session:
            return session, f"the agent's init event in attempt {attempt.number}"
    if found.pulse.session_id:
        return found.pulse.session_id, "the session this pulse resumes"
    if found.pulse.result_session_id:
        return found.pulse.result_session_id, "the pulse's last attempt"
    return None, ""


def session_from_log(path: Path) -> str | None:
    """The session id of the first stream-json `system`/`init` event in a log."""
    try:
        with path.open("rb") as handle:
            head = handle.read(MAX_LOG_SCAN)
    except OSError:
        return None
    for raw in head.splitlines():
        line = raw.strip()
        if not line.startswith(b"{"):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if (
            isinstance(event, dict)
            and event.get("type") == "system"
            and event.get("subtype") == "init"
            and isinstance(event.get("session_id"), str)
            and event["session_id"]
        ):
            return str(event["session_id"])
    return None
