"""Database access: connections, short transactions and schema migrations.

SQLite files are opened with the standard library's `sqlite3` (WAL, busy timeout,
foreign keys on); importing SQLAlchemy costs about 0.3 s, which a CLI command
cannot afford (docs/performance.md). Any other database URL goes through a
SQLAlchemy engine, so callers never see the difference. The schema itself is
defined and upgraded by Alembic migrations in `reeve_cli/migrations`.
"""

from __future__ import annotations

import fcntl
import logging
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from reeve_cli.errors import DatabaseError

logger = logging.getLogger(__name__)

# Every schema revision this Reeve knows, oldest first. A database stamped with a
# revision not listed here was written by a newer Reeve and is refused.
SCHEMA_REVISIONS: tuple[str, ...] = ("0001",)
SCHEMA_HEAD = SCHEMA_REVISIONS[-1]

Row = Mapping[str, Any]


class Connection(Protocol):
    """What the store needs from a connection inside one transaction."""

    def execute(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> list[Row]: ...

    def executemany(self, sql: str, params: Sequence[Mapping[str, Any]]) -> None: ...


def sqlite_path(url: str) -> Path | None:
    """Return the file path of a `sqlite:///` URL, or None for other databases.

    Only the plain `sqlite:///` form takes the standard-library fast path; a URL
    naming a driver (`sqlite+pysqlite:///...`, `postgresql+psycopg://...`) goes
    through SQLAlchemy.
    """
    if not url.startswith("sqlite:"):
        return None
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise DatabaseError(
            f"Database URL '{url}' is not a SQLite file; "
            "use sqlite:////absolute/path/reeve.db"
        )
    return Path(url[len(prefix) :].split("?", 1)[0])


class _SqliteConnection:
    def __init__(self, raw: sqlite3.Connection) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        cursor = self.raw.execute(sql, params or {})
        rows = cursor.fetchall()
        return rows  # sqlite3.Row supports row["name"]

    def executemany(self, sql: str, params: Sequence[Mapping[str, Any]]) -> None:
        self.raw.executemany(sql, params)


class _SqlAlchemyConnection:
    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        from sqlalchemy import text

        result = self.raw.execute(text(sql), dict(params or {}))
        if not result.returns_rows:
            return []
        return [dict(row) for row in result.mappings().all()]

    def executemany(self, sql: str, params: Sequence[Mapping[str, Any]]) -> None:
        from sqlalchemy import text

        self.raw.execute(text(sql), [dict(p) for p in params])


class Database:
    """A handle on Reeve's database; cheap to create, connections per thread."""

    def __init__(self, url: str, busy_timeout: float = 5.0) -> None:
        self.url = url
        self.busy_timeout = busy_timeout
        self.path = sqlite_path(url)
        self._local = threading.local()
        self._engine: Any = None

    def __repr__(self) -> str:
        return f"Database({self.path or 'external'})"

    @property
    def is_sqlite(self) -> bool:
        return self.path is not None

    def _sqlite(self) -> sqlite3.Connection:
        raw: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if raw is None:
            assert self.path is not None
            try:
                raw = sqlite3.connect(
                    self.path,
                    timeout=self.busy_timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
                raw.row_factory = sqlite3.Row
                raw.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
                raw.execute("PRAGMA foreign_keys=ON")
                raw.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as exc:
                raise DatabaseError(
                    f"Cannot open database {self.path}: {exc}"
                ) from None
            self._local.conn = raw
        return raw

    def engine(self) -> Any:
        """Return a SQLAlchemy engine for this database (migrations, job store)."""
        if self._engine is None:
            from sqlalchemy import create_engine, event

            engine = create_engine(self.url)
            if self.is_sqlite:
                timeout_ms = int(self.busy_timeout * 1000)

                @event.listens_for(engine, "connect")
                def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                    cursor = dbapi_conn.cursor()
                    cursor.execute("PRAGMA journal_mode=WAL")
                    cursor.execute(f"PRAGMA busy_timeout={timeout_ms}")
                    cursor.execute("PRAGMA foreign_keys=ON")
                    cursor.execute("PRAGMA synchronous=NORMAL")
                    cursor.close()

            self._engine = engine
        return self._engine

    @contextmanager
    def transaction(self, write: bool = False) -> Iterator[Connection]:
        """Run one short transaction; commit on success, roll back on error.

        A write transaction on SQLite starts with BEGIN IMMEDIATE, so it waits for
        the write lock up front (up to the busy timeout) instead of failing midway.
        """
        if not self.is_sqlite:
            with self.engine().begin() as raw_sa:
                yield _SqlAlchemyConnection(raw_sa)
            return

        raw = self._sqlite()
        try:
            raw.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.OperationalError as exc:
            raise _busy(exc, self.path) from None
        try:
            yield _SqliteConnection(raw)
        except BaseException:
            # SQLite may already have rolled back (disk full, I/O error).
            if raw.in_transaction:
                raw.execute("ROLLBACK")
            raise
        try:
            raw.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if raw.in_transaction:
                raw.execute("ROLLBACK")
            raise _busy(exc, self.path) from None

    def close(self) -> None:
        raw = getattr(self._local, "conn", None)
        if raw is not None:
            raw.close()
            self._local.conn = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def current_revision(self) -> str | None:
        """Return the schema revision stamped in the database, or None if empty."""
        if not self.is_sqlite:
            from sqlalchemy import inspect

            if not inspect(self.engine()).has_table("alembic_version"):
                return None
        with self.transaction() as conn:
            if self.is_sqlite:
                found = conn.execute(
                    "SELECT name FROM sqlite_master "
                    "WHERE type='table' AND name='alembic_version'"
                )
                if not found:
                    return None
            rows = conn.execute("SELECT version_num FROM alembic_version")
        return str(rows[0]["version_num"]) if rows else None


def _busy(exc: sqlite3.OperationalError, path: Path | None) -> DatabaseError:
    if "locked" in str(exc) or "busy" in str(exc):
        return DatabaseError(
            f"Database {path} is busy (locked by another writer); try again, or "
            "raise REEVE_BUSY_TIMEOUT"
        )
    return DatabaseError(f"Database {path}: {exc}")


@contextmanager
def _migration_lock(db: Database) -> Iterator[None]:
    """Serialise schema upgrades between processes that start at the same time."""
    if db.path is None:
        yield
        return
    lock_path = db.path.with_name(db.path.name + ".lock")
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_revision(revision: str | None) -> None:
    """Refuse a database stamped by a newer Reeve, before anything touches it."""
    if revision is not None and revision not in SCHEMA_REVISIONS:
        raise DatabaseError(
            f"Database schema revision '{revision}' was written by a newer Reeve "
            f"(this one knows up to '{SCHEMA_HEAD}'); upgrade Reeve, or restore a "
            "backup. The database was not changed"
        )


def upgrade(db: Database) -> tuple[str | None, str]:
    """Apply pending migrations; return the revisions before and after."""
    with _migration_lock(db):
        before = _revision_or_error(db)
        check_revision(before)
        if before != SCHEMA_HEAD:
            _run_alembic_upgrade(db)
        return before, SCHEMA_HEAD


def _revision_or_error(db: Database) -> str | None:
    try:
        return db.current_revision()
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(f"Database {db.path} cannot be read: {exc}") from None


def _run_alembic_upgrade(db: Database) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option(
        "script_location", str(Path(__file__).with_name("migrations"))
    )
    with db.engine().begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    logger.info("Database %s upgraded to schema %s", db.path or "", SCHEMA_HEAD)


def open_database(
    url: str, busy_timeout: float = 5.0, migrate: bool = True
) -> Database:
    """Open the database, creating or upgrading its schema on first use.

    Raises:
        DatabaseError: the file cannot be opened, or it was written by a newer Reeve.
    """
    db = Database(url, busy_timeout)
    if db.path is not None:
        if not db.path.parent.exists():
            db.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not db.path.exists():
            # WAL is a property of the file: set it once, at creation.
            raw = sqlite3.connect(db.path)
            raw.execute("PRAGMA journal_mode=WAL")
            raw.close()
            db.path.chmod(0o600)
    if not migrate:
        return db
    revision = _revision_or_error(db)
    check_revision(revision)
    if revision != SCHEMA_HEAD:
        upgrade(db)
    return db
