"""Is the daemon running, and what is the queue doing?

Cheap to import (stdlib only): `reeve status`, the HTTP API and the MCP server
call these functions. The daemon holds an exclusive `fcntl.flock` on
`<data_dir>/daemon.lock` for its whole life, so "running" means "the lock is
held"; a daemon killed with SIGKILL releases it with its file descriptors, so a
stale `daemon.json` never makes a dead daemon look alive.
"""

from __future__ import annotations

import fcntl
import json
import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reeve_cli.model import utcnow

if TYPE_CHECKING:
    from reeve_cli.config import Settings
    from reeve_cli.db import Database

LOCK_NAME = "daemon.lock"
INFO_NAME = "daemon.json"


def lock_path(settings: Settings) -> Path:
    return settings.data_path / LOCK_NAME


def info_path(settings: Settings) -> Path:
    return settings.data_path / INFO_NAME


def is_lock_held(path: Path) -> bool:
    """Tell whether some process holds the daemon lock file at `path`.

    The probe takes the lock for an instant when it is free; the daemon retries
    its own attempt for a second, so a probe never makes a starting daemon fail.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def daemon_info(settings: Settings) -> dict[str, Any] | None:
    """Describe the running daemon for this database, or return None.

    Returns:
        {"pid", "host", "started_at", "api_url"}; `api_url` is None while the
        daemon is still starting, or when it runs without the HTTP API.
    """
    lock = lock_path(settings)
    if not is_lock_held(lock):
        return None
    owner = _read_json(lock)
    info = _read_json(info_path(settings))
    if owner.get("pid") is not None and info.get("pid") != owner.get("pid"):
        info = {}  # daemon.json of an earlier daemon; this one is starting
    return {
        "pid": info.get("pid", owner.get("pid")),
        "host": info.get("host", owner.get("host")),
        "started_at": info.get("started_at", owner.get("started_at")),
        "api_url": info.get("api_url"),
    }


def _uptime(started_at: str | None) -> float | None:
    if not started_at:
        return None
    try:
        started = datetime.fromisoformat(started_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    return round(max(0.0, (utcnow() - started).total_seconds()), 1)


def collect_status(settings: Settings, db: Database) -> dict[str, Any]:
    """Return what `reeve status --json` prints and GET /api/status returns."""
    from reeve_cli import store
    from reeve_cli.model import Pulse

    info = daemon_info(settings)
    daemon: dict[str, Any] = {
        "running": info is not None,
        "pid": info["pid"] if info else None,
        "host": info["host"] if info else None,
        "started_at": info["started_at"] if info else None,
        "uptime_s": _uptime(info["started_at"]) if info else None,
        "api_url": info["api_url"] if info else None,
    }
    with db.transaction() as conn:
        running = [
            Pulse.from_row(row).to_dict()
            for row in conn.execute(
                "SELECT * FROM pulses WHERE status = 'running' ORDER BY started_at, id"
            )
        ]
        schedules = conn.execute("SELECT COUNT(*) AS n FROM schedules")[0]["n"]
    next_pulse = store.next_due(db)
    failure = store.last_failure(db)
    return {
        "daemon": daemon,
        "counts": store.count_by_status(db),
        "running": running,
        "next_due": next_pulse.to_dict() if next_pulse else None,
        "last_failure": failure.to_dict() if failure else None,
        "schedules": int(schedules),
    }
