"""Generators for the cog blocks in docs/*.md (run `make docs` to refresh).

Everything here reads the live app and settings, so a command or setting added
anywhere appears in the docs on the next `make docs`, and `cog --check` (a test)
fails until it does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

# Help text must not depend on the terminal of whoever runs `make docs`.
os.environ["COLUMNS"] = "88"
os.environ["TERM"] = "unknown"
os.environ["NO_COLOR"] = "1"


def _walk(command: Any, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        if not sub.hidden:
            yield from _walk(sub, (*path, name))


def command_paths() -> list[tuple[str, ...]]:
    """Every command path of the app, root first, in the order `--help` lists them."""
    import typer.main

    from reeve_cli.cli import app

    return list(_walk(typer.main.get_command(app), ()))


def help_text(path: tuple[str, ...]) -> str:
    from typer.testing import CliRunner

    from reeve_cli.cli import app

    result = CliRunner().invoke(app, [*path, "--help"], prog_name="reeve")
    if result.exit_code != 0:
        raise RuntimeError(f"reeve {' '.join(path)} --help failed: {result.output}")
    return result.stdout.rstrip() + "\n"


def cli_reference() -> str:
    """Markdown: one section per command with its `--help` output."""
    parts = []
    for path in command_paths():
        title = " ".join(("reeve", *path))
        level = "#" * min(2 + len(path), 4)
        parts.append(f"{level} {title}\n\n```\n{help_text(path)}```\n")
    return "\n".join(parts)


# Defaults worked out at start-up rather than written in SETTINGS.
DERIVED_DEFAULTS = {
    "data_dir": "the platform's user data dir (`~/.local/share/reeve` on Linux)",
    "database_url": "`sqlite:///<data_dir>/reeve.db`",
    "timezone": "the system's zone (`TZ`, `/etc/timezone`, `/etc/localtime`), else UTC",
    "desk": "`$HOME`",
    "agent_command": "none: `claude` or `hapi` on `PATH`",
    "api_token": "generated into `<data_dir>/api_token`",
    "notifier": "`telegram` when a bot token is set",
}


def _default(setting: Any) -> str:
    from reeve_cli.timefmt import format_duration

    value = setting.default
    if value is None:
        return DERIVED_DEFAULTS.get(setting.name, "none")
    if value == ():
        return "none"
    if isinstance(value, float):
        text = f"`{value:g}`" if value < 1e5 else f"`{int(value)}`"
        return f"{text} s ({format_duration(value)})" if value >= 60 else f"{text} s"
    return f"`{value}`"


def _markdown(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def settings_table() -> str:
    """Markdown table of every setting: TOML key, env var, default, meaning."""
    from reeve_cli.config import SETTINGS

    rows = [
        "| TOML key | Environment variable | Default | Meaning |",
        "|---|---|---|---|",
    ]
    for setting in SETTINGS:
        meaning = _markdown(setting.help)
        if setting.secret:
            meaning += " Secret: masked in `reeve config show`, never logged."
        rows.append(
            f"| `{setting.name}` | `{setting.env}` | {_default(setting)} | {meaning} |"
        )
    return "\n".join(rows) + "\n"
