"""Removing old history: finished pulses, their attempts, events and log files.

Pending and running pulses are never touched. Rows go in batches, each its own
short write transaction, so a large prune never holds SQLite's single write
lock for long while the daemon works.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from reeve_cli.config import Settings
from reeve_cli.db import Database
from reeve_cli.model import FINAL_STATUSES, db_time, iso_utc

logger = logging.getLogger(__name__)

# Pulses removed per write transaction.
BATCH = 500
_FINAL = ", ".join(f"'{s.value}'" for s in sorted(FINAL_STATUSES))


@dataclass(slots=True)
class PruneResult:
    """How much a prune removed (or would remove, on a dry run)."""

    cutoff: datetime
    dry_run: bool
    pulses: int = 0
    attempts: int = 0
    events: int = 0
    notifications: int = 0
    log_files: int = 0
    log_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "cutoff": iso_utc(self.cutoff),
            "dry_run": self.dry_run,
            "pulses": self.pulses,
            "attempts": self.attempts,
            "events": self.events,
            "notifications": self.notifications,
            "log_files": self.log_files,
            "log_bytes": self.log_bytes,
        }


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def prune_history(
    settings: Settings, db: Database, cutoff: datetime, dry_run: bool = False
) -> PruneResult:
    """Remove pulses that finished before `cutoff`, and what belongs to them.

    Also removes attempt log files under `settings.logs_path` last written before
    the cutoff, unless an attempt still running uses them.
    """
    result = PruneResult(cutoff=cutoff, dry_run=dry_run)
    edge = db_time(cutoff)
    finished = f"status IN ({_FINAL}) AND COALESCE(finished_at, updated_at) < :edge"
    doomed_logs: set[Path] = set()

    while True:
        with db.transaction(write=not dry_run) as conn:
            ids = [
                int(row["id"])
                for row in conn.execute(
                    f"SELECT id FROM pulses WHERE {finished} ORDER BY id LIMIT :n "
                    "OFFSET :skip",
                    {"edge": edge, "n": BATCH, "skip": result.pulses if dry_run else 0},
                )
            ]
            if not ids:
                break
            marks = ",".join(str(i) for i in ids)
            attempts = conn.execute(
                f"SELECT log_path FROM attempts WHERE pulse_id IN ({marks})"
            )
            doomed_logs.update(
                Path(row["log_path"]) for row in attempts if row["log_path"]
            )
            events = conn.execute(
                f"SELECT count(*) AS n FROM events WHERE pulse_id IN ({marks})"
            )[0]["n"]
            if not dry_run:
                conn.execute(f"DELETE FROM events WHERE pulse_id IN ({marks})")
                conn.execute(f"DELETE FROM attempts WHERE pulse_id IN ({marks})")
                conn.execute(f"DELETE FROM pulses WHERE id IN ({marks})")
        result.pulses += len(ids)
        result.attempts += len(attempts)
        result.events += int(events)

    with db.transaction(write=not dry_run) as conn:
        where = "WHERE status != 'pending' AND created_at < :edge"
        result.notifications = int(
            conn.execute(
                f"SELECT count(*) AS n FROM notifications {where}", {"edge": edge}
            )[0]["n"]
        )
        loose = "WHERE pulse_id IS NULL AND at < :edge"
        result.events += int(
            conn.execute(f"SELECT count(*) AS n FROM events {loose}", {"edge": edge})[
                0
            ]["n"]
        )
        if not dry_run:
            conn.execute(f"DELETE FROM notifications {where}", {"edge": edge})
            conn.execute(f"DELETE FROM events {loose}", {"edge": edge})
        in_use = {
            Path(row["log_path"])
            for row in conn.execute(
                "SELECT log_path FROM attempts "
                "WHERE status = 'running' AND log_path IS NOT NULL"
            )
        }

    _prune_logs(settings.logs_path, cutoff, doomed_logs, in_use, result)
    logger.info(
        "Pruned %d pulses, %d attempts, %d log files finished before %s",
        result.pulses,
        result.attempts,
        result.log_files,
        iso_utc(cutoff),
    )
    return result


def _prune_logs(
    logs: Path,
    cutoff: datetime,
    doomed: set[Path],
    in_use: set[Path],
    result: PruneResult,
) -> None:
    if not logs.is_dir():
        return
    edge = cutoff.timestamp()
    candidates = {p for p in doomed if _inside(p, logs)}
    candidates.update(
        p for p in logs.rglob("*") if p.is_file() and p.stat().st_mtime < edge
    )
    emptied: set[Path] = set()
    for path in sorted(candidates - in_use):
        try:
            size = path.stat().st_size
            if not result.dry_run:
                path.unlink()
                emptied.add(path.parent)
        except FileNotFoundError:
            continue
        result.log_files += 1
        result.log_bytes += size

    # Directories this prune emptied, deepest first; never the logs dir itself.
    for directory in sorted(emptied, key=lambda p: -len(p.parts)):
        if directory != logs and _inside(directory, logs):
            try:
                directory.rmdir()
            except OSError:  # not empty: a live attempt's, or another file
                continue
