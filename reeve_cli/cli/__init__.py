"""The `reeve` command: a root Typer app with one sub-app per noun.

Modules imported here must stay light: `reeve --help` and every TAB completion
import them. Heavy libraries are imported inside the commands that need them.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from reeve_cli import __version__
from reeve_cli.cli import context
from reeve_cli.cli.lazy import LazyGroup, TreeBuilder
from reeve_cli.cli.options import (
    ConfigOption,
    DatabaseUrlOption,
    DataDirOption,
    TimezoneOption,
)
from reeve_cli.errors import ReeveError
from reeve_cli.output import error


class ReeveGroup(LazyGroup):
    """Root group: one `Error:` line per `ReeveError`; commands built on use."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ReeveError as exc:
            error(exc.message)
            raise typer.Exit(exc.exit_code) from None


def build_command() -> ReeveGroup:
    """Return the root Click group with every command deferred until used."""
    root = TreeBuilder(app).root(app)
    assert isinstance(root, ReeveGroup)
    return root


app = typer.Typer(
    cls=ReeveGroup,
    name="reeve",
    help="Reeve: the wake-up queue of a proactive AI agent.",
    no_args_is_help=True,
    # Plain Click help and errors: usage errors stay two short lines on stderr
    # (no rich box), and `--help` does not import rich.
    rich_markup_mode=None,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"reeve {__version__}\n")
        raise typer.Exit()


def _parse_sets(values: list[str]) -> dict[str, str]:
    from reeve_cli.config import SETTINGS_BY_NAME

    parsed: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        key = key.strip().lower().replace("-", "_")
        if not sep or key not in SETTINGS_BY_NAME:
            raise typer.BadParameter(
                f"'{item}' is not KEY=VALUE with a known key; see 'reeve config show'",
                param_hint="--set",
            )
        parsed[key] = value
    return parsed


@app.callback()
def root(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
    timezone: TimezoneOption = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", metavar="KEY=VALUE", help="Any setting, e.g. --set api_port=9000."
        ),
    ] = None,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            show_default=False,
            help="Log more (-vv: debug).",
        ),
    ] = 0,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version."
        ),
    ] = False,
) -> None:
    """Reeve: the wake-up queue of a proactive AI agent."""
    flags: dict[str, Any] = _parse_sets(set_ or [])
    flags.update(
        config=config, data_dir=data_dir, database_url=database_url, timezone=timezone
    )
    context.set_flags(flags)
    if verbose:
        from reeve_cli.logs import setup_logging

        setup_logging("DEBUG" if verbose > 1 else "INFO")


def _register() -> None:
    # Typer lists plain commands before groups, each in the order added here.
    from reeve_cli.cli import api as api_cli
    from reeve_cli.cli import config, db, pulse
    from reeve_cli.cli import daemon as daemon_cli
    from reeve_cli.cli import mcp as mcp_cli
    from reeve_cli.cli import plugins as plugins_cli
    from reeve_cli.cli import schedule as schedule_cli
    from reeve_cli.cli import telegram as telegram_cli

    app.command("daemon")(daemon_cli.daemon)
    app.command("status")(daemon_cli.status)
    # These modules add their commands to the root app (or `db`) when imported.
    from reeve_cli.cli import dbops, doctor, service  # noqa: F401

    app.add_typer(pulse.app, name="pulse")
    app.add_typer(schedule_cli.app, name="schedule")
    app.add_typer(telegram_cli.app, name="telegram")
    app.add_typer(mcp_cli.app, name="mcp")
    app.add_typer(api_cli.app, name="api")
    app.add_typer(config.app, name="config")
    app.add_typer(db.app, name="db")
    app.add_typer(plugins_cli.app, name="plugins")


_register()


def main() -> None:
    """Entry point of the `reeve` console script.

    Unexpected exceptions keep Python's plain traceback (no locals shown).
    """
    build_command()()
