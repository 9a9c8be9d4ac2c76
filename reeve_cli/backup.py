"""Backups and restores of the SQLite database, safe while the daemon writes.

A backup uses SQLite's online backup API from a connection that holds one read
transaction for the whole copy: in WAL mode writers carry on, and the copy is the
snapshot taken when the transaction began (without it, every write by another
process would restart the copy from the first page). The copy is checked with
`PRAGMA integrity_check` before it gets its final name.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reeve_cli.config import Settings
from reeve_cli.db import check_revision, sqlite_path
from reeve_cli.errors import Conflict, DatabaseError, InvalidValue
from reeve_cli.model import utcnow

logger = logging.getLogger(__name__)

# Pages copied per step (4 MiB with 4 KiB pages): small enough for a smooth
# progress bar, large enough that a 1 GiB database takes only 256 steps.
BACKUP_STEP_PAGES = 1024
BACKUP_PREFIX = "reeve-"
BACKUP_SUFFIX = ".db"

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class BackupResult:
    """Where a backup went and what it holds."""

    path: Path
    size_bytes: int
    revision: str | None
    removed: tuple[Path, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "revision": self.revision,
            "removed": [str(p) for p in self.removed],
        }


def database_file(settings: Settings) -> Path:
    """Return the SQLite file of these settings, or explain why there is none."""
    path = sqlite_path(settings.db_url)
    if path is None:
        raise DatabaseError(
            "reeve db backup and restore work on SQLite files only; back up "
            f"{settings.db_url.split('://', 1)[0]} with its own tools (pg_dump)"
        )
    return path


def backup_name() -> str:
    return f"{BACKUP_PREFIX}{utcnow().strftime('%Y%m%dT%H%M%S%fZ')}{BACKUP_SUFFIX}"


def _connect_ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


def copy_database(source: Path, target: Path, progress: Progress | None) -> None:
    """Copy `source` to a new file `target` with the online backup API."""
    src = sqlite3.connect(source, isolation_level=None, timeout=30)
    dst = sqlite3.connect(target)
    try:
        # One read transaction for the whole copy: a consistent snapshot, and no
        # restart when another process commits meanwhile.
        src.execute("BEGIN")
        src.execute("SELECT count(*) FROM sqlite_master").fetchone()

        def step(_status: int, remaining: int, total: int) -> None:
            if progress is not None:
                progress(total - remaining, total)

        src.backup(dst, pages=BACKUP_STEP_PAGES, progress=step)
        src.execute("COMMIT")
        # A backup is one self-contained file: no -wal beside it.
        dst.execute("PRAGMA journal_mode=DELETE")
    finally:
        dst.close()
        src.close()


def inspect_database(path: Path) -> str | None:
    """Check a database file's integrity; return its schema revision.

    Raises:
        DatabaseError: the file is not a sound SQLite database.
    """
    if not path.is_file():
        raise DatabaseError(f"Backup {path} does not exist")
    try:
        conn = _connect_ro(path)
        try:
            result = [row[0] for row in conn.execute("PRAGMA integrity_check")]
            tables = {
                row[0]
                for row in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type='table'"
                )
            }
            revision = None
            if "alembic_version" in tables:
                row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
                revision = str(row[0]) if row else None
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(f"{path} is not a SQLite database: {exc}") from None
    if result != ["ok"]:
        raise DatabaseError(
            f"{path} failed its integrity check: {'; '.join(result[:3])}"
        )
    return revision


def prune_backups(directory: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` backups in `directory`."""
    backups = sorted(
        p
        for p in directory.glob(f"{BACKUP_PREFIX}*{BACKUP_SUFFIX}")
        if p.is_file() and not p.name.startswith(f"{BACKUP_PREFIX}before-restore")
    )
    doomed = backups[: max(0, len(backups) - keep)]
    for path in doomed:
        path.unlink()
        logger.info("Backup %s removed (keeping %d)", path, keep)
    return doomed


def backup_database(
    settings: Settings,
    target: Path | None = None,
    progress: Progress | None = None,
) -> BackupResult:
    """Back up the database, check the copy, and keep the newest N backups.

    Args:
        target: a file or directory; default `<data_dir>/backups/reeve-<time>.db`,
            where only the newest `backup_keep` backups are kept.

    Raises:
        DatabaseError: no database yet, or the copy failed its integrity check.
        Conflict: the target file exists.
    """
    source = database_file(settings)
    if not source.exists():
        raise DatabaseError(f"No database at {source} yet; nothing to back up")

    keep_in: Path | None = None
    if target is None:
        keep_in = settings.backups_path
        keep_in.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = keep_in / backup_name()
    elif target.is_dir():
        target = target / backup_name()
    target = target.absolute()
    if target.exists():
        raise Conflict(f"{target} exists; choose another path or remove it")
    if not target.parent.is_dir():
        raise InvalidValue(f"Directory {target.parent} does not exist")

    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        copy_database(source, partial, progress)
        revision = inspect_database(partial)
        partial.rename(target)
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise DatabaseError(f"Backup of {source} failed: {exc}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise

    removed = prune_backups(keep_in, settings.backup_keep) if keep_in else []
    logger.info("Database backed up to %s", target)
    return BackupResult(target, target.stat().st_size, revision, tuple(removed))


@contextmanager
def daemon_stopped(settings: Settings) -> Iterator[None]:
    """Hold the daemon's lock so no daemon starts; refuse if one runs.

    Raises:
        Conflict: a daemon holds the lock on `<data_dir>/daemon.lock`.
    """
    lock_path = settings.data_path / "daemon.lock"
    lock_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            # The daemon holds flock() on this file for its whole life
            # (reeve_cli.status); holding it here keeps one from starting.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise Conflict(_running_message(settings)) from None
        yield
    finally:
        os.close(fd)


def _running_message(settings: Settings) -> str:
    pid = ""
    try:
        from reeve_cli.status import daemon_info

        info = daemon_info(settings)
        if info and info.get("pid"):
            pid = f" (pid {info['pid']})"
    except Exception:  # status is optional here; the lock already answered
        logger.debug("daemon_info failed", exc_info=True)
    return (
        f"The daemon is running{pid}; stop it first "
        "(systemctl --user stop reeve-daemon, or Ctrl-C), then restore"
    )


def restore_database(
    settings: Settings, backup: Path, progress: Progress | None = None
) -> dict[str, Any]:
    """Replace the database with a checked backup; keep the replaced one.

    Raises:
        DatabaseError: the backup is damaged, or from a newer Reeve.
        Conflict: the daemon is running.
    """
    target = database_file(settings)
    backup = backup.absolute()
    if backup.exists() and target.exists() and backup.samefile(target):
        raise InvalidValue(f"{backup} is the database itself; give a backup file")
    revision = inspect_database(backup)
    if revision is None:
        raise DatabaseError(f"{backup} is not a Reeve database (no schema revision)")
    check_revision(revision)

    with daemon_stopped(settings):
        kept: Path | None = None
        if target.exists():
            settings.backups_path.mkdir(mode=0o700, parents=True, exist_ok=True)
            kept = settings.backups_path / (
                f"{BACKUP_PREFIX}before-restore-{backup_name()[len(BACKUP_PREFIX) :]}"
            )
            copy_database(target, kept, None)
            kept.chmod(0o600)
        else:
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            conn = sqlite3.connect(target)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.close()
            target.chmod(0o600)

        # Copy into the live file through SQLite, which locks it and rewrites its
        # WAL correctly; replacing the file on disk would not.
        src = _connect_ro(backup)
        dst = sqlite3.connect(target, timeout=30)
        try:

            def step(_status: int, remaining: int, total: int) -> None:
                if progress is not None:
                    progress(total - remaining, total)

            src.backup(dst, pages=BACKUP_STEP_PAGES, progress=step)
            dst.execute("PRAGMA journal_mode=WAL")
        except sqlite3.Error as exc:
            raise DatabaseError(
                f"Restore of {target} failed: {exc}; the previous database is "
                f"saved as {kept}"
            ) from None
        finally:
            src.close()
            dst.close()
        inspect_database(target)

    logger.info("Database %s restored from %s", target, backup)
    return {
        "database": str(target),
        "restored_from": str(backup),
        "revision": revision,
        "previous_saved_as": str(kept) if kept else None,
    }
