"""The `reeve` command: a root Typer app with one sub-app per noun.

Modules imported here must stay light: `reeve --help` and every TAB completion
import them. Heavy libraries are imported inside the commands that need them.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from reeve_cli import __version__
from reeve_cli.cli import context
from reeve_cli.errors import ReeveError
from reeve_cli.output import error


class ReeveGroup(TyperGroup):
    """Root group: one `Error:` line per `ReeveError`, sub-apps built on first use.

    Typer turns every command into Click objects before running anything, and
    that costs about 1 ms per parameter (it evaluates each annotation). `main`
    instead leaves each sub-app as a `_Deferred` stub until it is looked up, so
    `reeve --help` and `reeve pulse <TAB>` convert only what they show.
    """

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ReeveError as exc:
            error(exc.message)
            raise typer.Exit(exc.exit_code) from None

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = self.commands.get(cmd_name)
        if isinstance(command, _Deferred):
            command = self.commands[cmd_name] = command.build()
        return command

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = [
            (name, command)
            for name, command in self.commands.items()
            if not command.hidden
        ]
        if not rows:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in rows)
        with formatter.section("Commands"):
            formatter.write_dl(
                [(name, command.get_short_help_str(limit)) for name, command in rows]
            )

    def shell_complete(self, ctx: Any, incomplete: str) -> list[Any]:
        from typer._click.shell_completion import CompletionItem

        items = [
            CompletionItem(name, help=command.get_short_help_str())
            for name, command in self.commands.items()
            if name.startswith(incomplete) and not command.hidden
        ]
        return items + super(TyperGroup, self).shell_complete(ctx, incomplete)


class _Deferred(TyperCommand):
    """Stands in for a sub-app (name and short help) until it is used."""

    def __init__(self, info: Any) -> None:
        from typer.main import solve_typer_info_defaults, solve_typer_info_help

        solved = solve_typer_info_defaults(info)
        super().__init__(
            name=solved.name,
            help=solve_typer_info_help(info),
            short_help=solved.short_help,
            hidden=bool(solved.hidden),
        )
        self.info = info

    def build(self) -> TyperGroup:
        from typer.main import get_group_from_info

        return get_group_from_info(
            self.info,
            pretty_exceptions_short=app.pretty_exceptions_short,
            suggest_commands=app.suggest_commands,
            rich_markup_mode=app.rich_markup_mode,
        )


def build_command() -> ReeveGroup:
    """Return the root Click group with every named sub-app deferred."""
    from typer.main import get_command

    groups = list(app.registered_groups)
    app.registered_groups = [info for info in groups if not info.name]
    try:
        root = get_command(app)
        assert isinstance(root, ReeveGroup)
    finally:
        app.registered_groups = groups
    for info in groups:
        if info.name:
            root.commands[info.name] = _Deferred(info)
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
    config: Annotated[
        str | None,
        typer.Option(
            "--config", metavar="PATH", help="Config file (TOML). Env: REEVE_CONFIG."
        ),
    ] = None,
    data_dir: Annotated[
        str | None,
        typer.Option(
            "--data-dir", metavar="PATH", help="Data directory. Env: REEVE_DATA_DIR."
        ),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            metavar="URL",
            help="Database URL. Env: REEVE_DATABASE_URL.",
        ),
    ] = None,
    timezone: Annotated[
        str | None,
        typer.Option(
            "--timezone", metavar="ZONE", help="Time zone. Env: REEVE_TIMEZONE."
        ),
    ] = None,
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
    from reeve_cli.cli import config, db, pulse

    app.add_typer(pulse.app, name="pulse")
    app.add_typer(config.app, name="config")
    app.add_typer(db.app, name="db")
    from reeve_cli.cli import plugins as plugins_cli

    app.add_typer(plugins_cli.app, name="plugins")
    from reeve_cli.cli import telegram as telegram_cli

    app.add_typer(telegram_cli.app, name="telegram")
    from reeve_cli.cli import mcp as mcp_cli

    app.add_typer(mcp_cli.app, name="mcp")
    from reeve_cli.cli import daemon as daemon_cli
    from reeve_cli.cli import dbops, doctor, service  # noqa: F401  (attach commands)
    from reeve_cli.cli import schedule as schedule_cli

    app.command("daemon")(daemon_cli.daemon)
    app.command("status")(daemon_cli.status)
    app.add_typer(schedule_cli.app, name="schedule")
    from reeve_cli.cli import api as api_cli

    app.add_typer(api_cli.app, name="api")


_register()


def main() -> None:
    """Entry point of the `reeve` console script.

    Unexpected exceptions keep Python's plain traceback (no locals shown).
    """
    build_command()()
