"""What every command shares: the global flags, settings and database handle.

`reeve_cli.config` and `reeve_cli.db` are imported on first use, so `--help` and
TAB completion do not pay for tomllib and sqlite3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reeve_cli.config import Settings
    from reeve_cli.db import Database

_flags: dict[str, Any] = {}
_settings: Settings | None = None
_database: Database | None = None


def set_flags(flags: dict[str, Any]) -> None:
    """Record the global command-line flags (called by the root callback)."""
    global _settings, _database
    _flags.clear()
    _flags.update({k: v for k, v in flags.items() if v is not None})
    _settings = None
    if _database is not None:
        _database.close()
    _database = None


def flags() -> dict[str, Any]:
    return dict(_flags)


def settings() -> Settings:
    """Return the effective settings for this invocation (read once)."""
    global _settings
    if _settings is None:
        from reeve_cli.config import load_settings

        _settings = load_settings(_flags)
    return _settings


def database() -> Database:
    """Open the database (creating and migrating it on first use)."""
    global _database
    if _database is None:
        from reeve_cli.config import ensure_data_dir
        from reeve_cli.db import open_database

        current = settings()
        ensure_data_dir(current)
        _database = open_database(current.db_url, current.busy_timeout)
    return _database
