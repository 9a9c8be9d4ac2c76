"""Command-line options that several commands share, defined once."""

from __future__ import annotations

from typing import Annotated

import typer

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]

ConfigOption = Annotated[
    str | None,
    typer.Option(
        "--config", metavar="PATH", help="Config file (TOML). Env: REEVE_CONFIG."
    ),
]
DataDirOption = Annotated[
    str | None,
    typer.Option(
        "--data-dir", metavar="PATH", help="Data directory. Env: REEVE_DATA_DIR."
    ),
]
DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url", metavar="URL", help="Database URL. Env: REEVE_DATABASE_URL."
    ),
]
TimezoneOption = Annotated[
    str | None,
    typer.Option("--timezone", metavar="ZONE", help="Time zone. Env: REEVE_TIMEZONE."),
]
