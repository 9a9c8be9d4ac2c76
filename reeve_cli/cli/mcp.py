"""`reeve mcp`: serve the MCP tools over stdio, and print a client registration."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from reeve_cli.cli import context
from reeve_cli.cli.options import (
    ConfigOption,
    DatabaseUrlOption,
    DataDirOption,
    TimezoneOption,
)
from reeve_cli.errors import InvalidValue

app = typer.Typer(
    help="The MCP server through which the agent schedules its own pulses.",
    no_args_is_help=True,
)

CLIENTS = ("claude", "hapi", "json")
# Settings with a flag of their own on the root command; the rest go as --set.
OWN_FLAGS = ("config", "data_dir", "database_url", "timezone")


@app.command("serve")
def mcp_serve(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
    timezone: TimezoneOption = None,
) -> None:
    """Serve Reeve's MCP tools on stdin/stdout (an agent client starts this).

    Settings may come before 'mcp' (reeve --data-dir X mcp serve) or as options
    here; agent clients often drop environment variables, so registrations pass
    them as arguments. See 'reeve mcp config'.
    """
    flags = context.flags()
    flags.update(
        {
            k: v
            for k, v in {
                "config": config,
                "data_dir": data_dir,
                "database_url": database_url,
                "timezone": timezone,
            }.items()
            if v is not None
        }
    )

    from reeve_cli.mcp_server import serve

    serve(flags)


def reeve_command() -> list[str]:
    """The absolute command that starts this same `reeve`."""
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0 and Path(argv0).name == "reeve" and Path(argv0).exists():
        return [os.path.abspath(argv0)]
    if argv0.endswith(("reeve_cli/__main__.py", "reeve_cli")):
        return [os.path.abspath(sys.executable), "-m", "reeve_cli"]
    beside = Path(sys.executable).with_name("reeve")
    if beside.exists():
        return [os.path.abspath(beside)]
    import shutil

    found = shutil.which("reeve")
    if found:
        return [os.path.abspath(found)]
    return [os.path.abspath(sys.executable), "-m", "reeve_cli"]


def server_args() -> tuple[list[str], list[str]]:
    """Arguments that give `mcp serve` this invocation's settings.

    Returns:
        The arguments, and the names of secret settings that were left out
        because they would show in process lists, and that the server will not
        find in the units' environment file either.
    """
    from reeve_cli.config import SETTINGS
    from reeve_cli.envfile import env_file_path, read_env_file

    settings = context.settings()
    in_env_file = read_env_file(env_file_path(settings))
    flags = context.flags()
    args: list[str] = []
    chosen_config = "config" in flags or os.environ.get("REEVE_CONFIG")
    if settings.config_file_exists or chosen_config:
        args += ["--config", str(settings.config_file)]
    args += ["--data-dir", str(settings.data_path)]
    if settings.sources.get("database_url", "default") != "default":
        args += ["--database-url", settings.db_url]
    args += ["--timezone", str(settings.timezone)]

    left_out: list[str] = []
    for setting in SETTINGS:
        if setting.name in OWN_FLAGS:
            continue
        source = settings.sources.get(setting.name)
        if source == "env":
            raw = os.environ.get(setting.env, "")
        elif source == "flag":
            raw = str(flags.get(setting.name, ""))
        else:
            continue
        if setting.secret:
            if setting.env not in in_env_file:
                left_out.append(setting.env)
            continue
        args += ["--set", f"{setting.name}={raw}"]
    return args + ["mcp", "serve"], left_out


def registration(client: str) -> tuple[str, list[str]]:
    """The text to print for a client, and the secrets left out of it."""
    command = reeve_command()
    args, left_out = server_args()
    full = command + args
    if client == "json":
        block = {
            "mcpServers": {
                "reeve": {"type": "stdio", "command": full[0], "args": full[1:]}
            }
        }
        return json.dumps(block, indent=2) + "\n", left_out
    line = "claude mcp add --scope user reeve -- " + shlex.join(full)
    if client == "hapi":
        return (
            "# Hapi runs Claude Code, which reads Claude Code's own MCP "
            "registrations:\n" + line + "\n",
            left_out,
        )
    return line + "\n", left_out


@app.command("config")
def mcp_config(
    client: Annotated[
        str,
        typer.Option(
            "--client",
            "-c",
            metavar="CLIENT",
            help="claude, hapi or json (mcpServers).",
        ),
    ] = "claude",
) -> None:
    """Print a ready registration of this Reeve's MCP server for an agent client.

    The command is the absolute path of this 'reeve', and the settings go as
    command-line arguments, because clients do not reliably pass environment
    variables (or a config's env block) to MCP servers.

    Examples:

        reeve mcp config | sh

        reeve --data-dir /srv/reeve mcp config --client json
    """
    chosen = client.strip().lower()
    if chosen not in CLIENTS:
        raise InvalidValue(
            f"Unknown client '{client}'; use one of {', '.join(CLIENTS)}",
            field="client",
        )
    text, left_out = registration(chosen)
    sys.stdout.write(text)
    if left_out:
        from reeve_cli.envfile import env_file_path
        from reeve_cli.output import note

        env_file = env_file_path(context.settings())
        note(
            "Not included (secrets would show in process lists): "
            + ", ".join(left_out)
            + f". Put them in {env_file} or the config file; the MCP server "
            "reads both."
        )
