"""`reeve db`: schema status and upgrades."""

from __future__ import annotations

import sys

import typer

from reeve_cli import output
from reeve_cli.cli import context
from reeve_cli.cli.options import JsonFlag

app = typer.Typer(help="Database schema, backups and clean-up.", no_args_is_help=True)


@app.command("status")
def db_status(
    json_: JsonFlag = False,
) -> None:
    """Show the database location and whether its schema is current."""
    from reeve_cli.config import ensure_data_dir
    from reeve_cli.db import SCHEMA_HEAD, Database, check_revision

    settings = context.settings()
    ensure_data_dir(settings)
    db = Database(settings.db_url, settings.busy_timeout)
    exists = db.path is None or db.path.exists()
    revision = db.current_revision() if exists else None
    check_revision(revision)
    state = {
        "database_url": settings.db_url,
        "exists": exists,
        "revision": revision,
        "head": SCHEMA_HEAD,
        "up_to_date": revision == SCHEMA_HEAD,
    }
    if json_:
        output.emit_json(state)
        return
    sys.stdout.write(f"database: {settings.db_url}\n")
    sys.stdout.write(f"schema:   {revision or 'none'} (current: {SCHEMA_HEAD})\n")
    if revision != SCHEMA_HEAD:
        sys.stdout.write("run 'reeve db upgrade' (or any command) to upgrade\n")


@app.command("upgrade")
def db_upgrade() -> None:
    """Create the schema or apply pending migrations (also done on first use)."""
    from reeve_cli.config import ensure_data_dir
    from reeve_cli.db import open_database, upgrade

    settings = context.settings()
    ensure_data_dir(settings)
    db = open_database(settings.db_url, settings.busy_timeout, migrate=False)
    before, after = upgrade(db)
    if before == after:
        sys.stdout.write(f"Schema is current ({after})\n")
    else:
        sys.stdout.write(f"Schema upgraded from {before or 'empty'} to {after}\n")
