"""Build the Click command tree on demand, so start-up pays only for what it runs.

Typer converts every command into Click objects before it runs anything, and
that costs about 1 ms per parameter: it evaluates each string annotation. A TAB
press or `reeve pulse list` needs one path through the tree, so here each
sub-app and each command stays a `Deferred` stub (its name and help only) until
a lookup reaches it. `tests/test_cli_root.py` checks that the result matches
Typer's eager tree.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from typer.core import TyperCommand, TyperGroup


class Deferred(TyperCommand):
    """Stands in for a command or sub-app until it is looked up."""

    def __init__(
        self,
        *,
        name: str,
        help: str | None,
        short_help: str | None,
        hidden: bool,
        build: Callable[[], Any],
    ) -> None:
        super().__init__(name=name, help=help, short_help=short_help, hidden=hidden)
        self.build = build


class LazyGroup(TyperGroup):
    """A group whose commands may be `Deferred` stubs, built on first lookup."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = self.commands.get(cmd_name)
        if isinstance(command, Deferred):
            command = self.commands[cmd_name] = command.build()
        return command

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = [(n, c) for n, c in self.commands.items() if not c.hidden]
        if not rows:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in rows)
        with formatter.section("Commands"):
            formatter.write_dl([(n, c.get_short_help_str(limit)) for n, c in rows])

    def shell_complete(self, ctx: Any, incomplete: str) -> list[Any]:
        from typer._click.shell_completion import CompletionItem

        items = [
            CompletionItem(name, help=command.get_short_help_str())
            for name, command in self.commands.items()
            if name.startswith(incomplete) and not command.hidden
        ]
        # Skip TyperGroup's version, which would build every command.
        return items + super(TyperGroup, self).shell_complete(ctx, incomplete)


class TreeBuilder:
    """Converts Typer apps with the settings of the root app."""

    def __init__(self, root: Any) -> None:
        self.options = {
            "pretty_exceptions_short": root.pretty_exceptions_short,
            "rich_markup_mode": root.rich_markup_mode,
        }
        self.suggest_commands = root.suggest_commands

    def root(self, typer_app: Any) -> Any:
        """Convert the root app: its callback now, everything below deferred."""
        from typer.main import get_command

        return self._with_stubs(typer_app, lambda: get_command(typer_app))

    def _with_stubs(self, typer_app: Any, convert: Callable[[], Any]) -> Any:
        commands = list(typer_app.registered_commands)
        groups = list(typer_app.registered_groups)
        if any(not info.name for info in groups):  # merged sub-apps: build eagerly
            return convert()

        typer_app.registered_commands, typer_app.registered_groups = [], []
        try:
            group = convert()
        finally:
            typer_app.registered_commands = commands
            typer_app.registered_groups = groups
        if type(group) is TyperGroup:
            group.__class__ = LazyGroup

        for command_info in commands:
            stub = self._command_stub(command_info)
            group.commands[stub.name] = stub
        for info in groups:
            group.commands[info.name] = self._group_stub(info)
        return group

    def _command_stub(self, info: Any) -> Deferred:
        from typer.main import get_command_from_info, get_command_name

        help_text = info.help
        help_text = (
            inspect.getdoc(info.callback)
            if help_text is None
            else inspect.cleandoc(help_text)
        )
        return Deferred(
            name=info.name or get_command_name(info.callback.__name__),
            help=help_text,
            short_help=info.short_help,
            hidden=bool(info.hidden),
            build=lambda: get_command_from_info(info, **self.options),
        )

    def _group_stub(self, info: Any) -> Deferred:
        from typer.main import (
            get_group_from_info,
            solve_typer_info_defaults,
            solve_typer_info_help,
        )

        solved = solve_typer_info_defaults(info)

        def build() -> Any:
            return self._with_stubs(
                info.typer_instance,
                lambda: get_group_from_info(
                    info, suggest_commands=self.suggest_commands, **self.options
                ),
            )

        return Deferred(
            name=str(solved.name),
            help=solve_typer_info_help(info),
            short_help=solved.short_help,
            hidden=bool(solved.hidden),
            build=build,
        )
