"""`reeve api`: the HTTP API's token and address."""

from __future__ import annotations

import sys

import typer

from reeve_cli import output
from reeve_cli.cli import context

app = typer.Typer(help="The HTTP API's token and address.", no_args_is_help=True)


@app.command("token")
def api_token() -> None:
    """Print the API's bearer token, generating it on first use.

    The token is REEVE_API_TOKEN when set, else the one stored in
    <data_dir>/api_token (mode 0600), which the daemon creates on first start.

    Examples:

        curl -H "Authorization: Bearer $(reeve api token)" \\
            http://127.0.0.1:8765/api/status
    """
    from reeve_cli.api_token import ensure_api_token

    sys.stdout.write(ensure_api_token(context.settings()) + "\n")


@app.command("url")
def api_url() -> None:
    """Print the API's base URL: the running daemon's, else the configured one."""
    from reeve_cli.status import daemon_info

    settings = context.settings()
    info = daemon_info(settings)
    if info and info.get("api_url"):
        sys.stdout.write(f"{info['api_url']}\n")
        return
    host = str(settings.api_host)
    shown = f"[{host}]" if ":" in host else host
    sys.stdout.write(f"http://{shown}:{settings.api_port}\n")
    output.note("The daemon is not running; this is the configured address")
