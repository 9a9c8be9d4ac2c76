"""`reeve config`: show the effective settings and where they live."""

from __future__ import annotations

import sys

import typer

from reeve_cli import output
from reeve_cli.cli import context
from reeve_cli.cli.options import JsonFlag

app = typer.Typer(
    help="Show the effective settings and their sources.", no_args_is_help=True
)


@app.command("show")
def config_show(
    json_: JsonFlag = False,
) -> None:
    """Print every setting, its value and where it came from; secrets masked.

    Sources: flag, env (REEVE_<NAME>), file (the TOML config), default.
    """
    from reeve_cli.config import SETTINGS

    settings = context.settings()
    shown = settings.redacted()
    if json_:
        output.emit_json(
            {
                s.name: {
                    "value": list(v) if isinstance(v := shown[s.name], tuple) else v,
                    "source": settings.sources[s.name],
                    "env": s.env,
                }
                for s in SETTINGS
            }
        )
        return
    output.emit_table(
        ["Setting", "Value", "Source", "Environment variable"],
        (
            [
                s.name,
                ", ".join(map(str, shown[s.name]))
                if isinstance(shown[s.name], tuple)
                else shown[s.name],
                settings.sources[s.name],
                s.env,
            ]
            for s in SETTINGS
        ),
    )


@app.command("path")
def config_path(
    json_: JsonFlag = False,
) -> None:
    """Print the config file and data directory in use."""
    settings = context.settings()
    paths = {
        "config_file": str(settings.config_file),
        "config_file_exists": settings.config_file_exists,
        "data_dir": str(settings.data_path),
        "database_url": settings.db_url,
    }
    if json_:
        output.emit_json(paths)
        return
    sys.stdout.write(f"config file: {paths['config_file']}")
    sys.stdout.write("\n" if settings.config_file_exists else " (not present)\n")
    sys.stdout.write(f"data dir:    {paths['data_dir']}\n")
