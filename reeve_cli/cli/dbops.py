"""`reeve db backup | restore | prune`: keeping the database safe and small."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from reeve_cli import output
from reeve_cli.cli import context
from reeve_cli.cli.db import app
from reeve_cli.cli.options import JsonFlag

# Databases smaller than this copy in one step; a progress bar would only flicker.
PROGRESS_MIN_BYTES = 32 * 1024 * 1024


@contextmanager
def _progress(
    label: str, size_bytes: int, quiet: bool
) -> Iterator[Callable[[int, int], None] | None]:
    if quiet or size_bytes < PROGRESS_MIN_BYTES:
        yield None
        return
    from rich.progress import Progress

    with Progress(console=output.err_console(), transient=True) as bar:
        task = bar.add_task(label, total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield advance


@app.command("backup")
def db_backup(
    path: Annotated[
        Path | None,
        typer.Argument(
            help="File or directory for the copy; default <data_dir>/backups, "
            "where the newest REEVE_BACKUP_KEEP are kept.",
        ),
    ] = None,
    json_: JsonFlag = False,
) -> None:
    """Copy the database while Reeve runs, and check the copy.

    Uses SQLite's online backup API, so the daemon keeps working meanwhile, and
    runs an integrity check on the copy before giving it its final name.

    Examples:

        reeve db backup

        reeve db backup /srv/backups/reeve.db
    """
    from reeve_cli.backup import backup_database, database_file

    settings = context.settings()
    source = database_file(settings)
    size = source.stat().st_size if source.exists() else 0
    with _progress("Backing up", size, json_) as progress:
        result = backup_database(settings, path, progress)

    if json_:
        output.emit_json(result.to_dict())
        return
    sys.stdout.write(f"{result.path}\n")
    output.note(
        f"Backed up {result.size_bytes / 1024:.0f} KiB (schema {result.revision}); "
        f"integrity ok"
    )
    for removed in result.removed:
        output.note(f"Removed old backup {removed}")


@app.command("restore")
def db_restore(
    path: Annotated[Path, typer.Argument(help="The backup file to restore.")],
    json_: JsonFlag = False,
) -> None:
    """Replace the database with a backup (the daemon must be stopped).

    The backup's integrity and schema revision are checked first; the current
    database is kept in <data_dir>/backups as reeve-before-restore-<time>.db.

    Examples:

        reeve db restore ~/.local/share/reeve/backups/reeve-20261203T000000Z.db
    """
    from reeve_cli.backup import restore_database

    settings = context.settings()
    size = path.stat().st_size if path.is_file() else 0
    with _progress("Restoring", size, json_) as progress:
        result = restore_database(settings, path, progress)

    if json_:
        output.emit_json(result)
        return
    output.note(f"Restored {result['database']} from {result['restored_from']}")
    if result["previous_saved_as"]:
        output.note(f"The replaced database is saved as {result['previous_saved_as']}")


@app.command("prune")
def db_prune(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            help="Remove pulses finished longer ago than this, e.g. 30d, 12h.",
        ),
    ] = "30d",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count what would go.")
    ] = False,
    json_: JsonFlag = False,
) -> None:
    """Remove finished pulses, their attempts, events and attempt log files.

    Pending and running pulses are never removed.

    Examples:

        reeve db prune --older-than 30d

        reeve db prune --older-than 90d --dry-run
    """
    from reeve_cli.model import utcnow
    from reeve_cli.prune import prune_history
    from reeve_cli.timefmt import parse_duration

    cutoff = utcnow() - parse_duration(older_than)
    result = prune_history(
        context.settings(), context.database(), cutoff, dry_run=dry_run
    )

    if json_:
        output.emit_json(result.to_dict())
        return
    verb = "Would remove" if dry_run else "Removed"
    output.note(
        f"{verb} {result.pulses} pulses, {result.attempts} attempts, "
        f"{result.events} events, {result.notifications} notifications and "
        f"{result.log_files} log files ({result.log_bytes / 1024:.0f} KiB)"
    )
