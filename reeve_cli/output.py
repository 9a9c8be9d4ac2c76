"""Everything that writes to the terminal: JSON for scripts, rich for people.

Data goes to stdout; errors, warnings and confirmations go to stderr. rich is
imported only when a table is drawn, so `--json` output stays cheap.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


def emit_json(data: Any) -> None:
    """Write one JSON document to stdout: plain, no colour, valid when piped."""
    import json

    sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def emit_json_lines(items: Iterable[Any]) -> None:
    """Write one JSON object per line to stdout (`--nl`)."""
    import json

    for item in items:
        sys.stdout.write(json.dumps(item, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def error(message: str) -> None:
    """Write the one-line `Error: ...` report to stderr."""
    sys.stderr.write(f"Error: {' '.join(message.splitlines())}\n")
    sys.stderr.flush()


def note(message: str) -> None:
    """Write a notice for people (confirmation, warning) to stderr."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def console() -> Console:
    from rich.console import Console

    return Console(highlight=False)


def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def emit_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    title: str | None = None,
    empty: str = "Nothing to show",
    no_wrap: Iterable[str] = (),
) -> None:
    """Draw a table of user text on stdout; every cell is shown literally.

    Columns named in `no_wrap` (short values such as times) never wrap; the
    others give way when the terminal is narrow.
    """
    from rich import box
    from rich.table import Table
    from rich.text import Text

    rows = list(rows)
    if not rows:
        note(empty)
        return
    keep = set(no_wrap)
    table = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    for column in columns:
        table.add_column(column, no_wrap=column in keep)
    for row in rows:
        table.add_row(*(Text("" if cell is None else str(cell)) for cell in row))
    console().print(table)


def emit_fields(fields: Iterable[tuple[str, Any]]) -> None:
    """Print `key: value` lines for one record, user text shown literally."""
    from rich.text import Text

    out = console()
    pairs = list(fields)
    width = max((len(k) for k, _ in pairs), default=0)
    for key, value in pairs:
        line = Text(f"{key:<{width}}  ", style="bold")
        line.append("" if value is None else str(value))
        out.print(line)


def local_time(moment: datetime | None, zone: tzinfo, now: datetime) -> str:
    """Show a time in the user's zone with a relative hint: '... (in 2h)'."""
    from reeve_cli.timefmt import format_local, relative_hint

    if moment is None:
        return ""
    return f"{format_local(moment, zone)} ({relative_hint(moment, now)})"
