"""`reeve telegram`: run the Telegram bridge, or check its configuration."""

from __future__ import annotations

import logging
import sys
from typing import Annotated, Any

import typer

from reeve_cli.cli import context
from reeve_cli.errors import ConfigError

app = typer.Typer(invoke_without_command=True)


def _require_config(settings: Any) -> None:
    if not settings.telegram_token:
        raise ConfigError(
            "REEVE_TELEGRAM_TOKEN is not set; create a bot with @BotFather and "
            "set its token (see docs/telegram.md)"
        )
    if not settings.telegram_chat_ids:
        raise ConfigError(
            "REEVE_TELEGRAM_CHAT_IDS is not set; list the chats the bot serves, "
            "e.g. REEVE_TELEGRAM_CHAT_IDS=123456789 (see docs/telegram.md)"
        )


def _setup_logging(settings: Any) -> None:
    from reeve_cli.logs import RedactingFilter, add_secrets, setup_logging
    from reeve_cli.telegram_api import quiet_http_loggers

    root = logging.getLogger()
    has_filter = any(
        isinstance(f, RedactingFilter) for h in root.handlers for f in h.filters
    )
    if has_filter:  # `reeve -v` set logging up already; teach it the secrets
        add_secrets(settings.secrets())
    else:
        setup_logging(settings.log_level, secrets=settings.secrets())
    quiet_http_loggers()


@app.callback()
def telegram_run(
    ctx: typer.Context,
    poll_timeout: Annotated[
        float,
        typer.Option(
            "--poll-timeout",
            min=1.0,
            max=50.0,
            help="Seconds one getUpdates call waits for news.",
        ),
    ] = 25.0,
) -> None:
    """Run the Telegram bridge: each message in an allowed chat wakes the agent.

    Long-polls the Bot API until stopped (SIGTERM or Ctrl-C). Messages from chats
    not in REEVE_TELEGRAM_CHAT_IDS are dropped. Exits with status 4 when another
    program polls the same bot (HTTP 409) or the token is refused.

    Examples:

        reeve telegram

        reeve telegram check
    """
    if ctx.invoked_subcommand is not None:
        return
    import signal

    from reeve_cli.telegram import Bridge, BridgeStopped

    settings = context.settings()
    _require_config(settings)
    _setup_logging(settings)
    bridge = Bridge(settings, context.database(), poll_timeout=poll_timeout)

    def _stop(signum: int, frame: Any) -> None:
        bridge.stop()
        if bridge.polling:  # end the long poll now; nothing is half-stored there
            raise BridgeStopped()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    bridge.run()


@app.command("check")
def telegram_check() -> None:
    """Check the bot token and chat list against the Bot API (getMe).

    Prints the bot's name and the chats it serves; nothing is sent.
    """
    from reeve_cli.errors import PluginError
    from reeve_cli.telegram_api import BotApi, BotApiError, quiet_http_loggers

    settings = context.settings()
    _require_config(settings)
    quiet_http_loggers()
    api = BotApi(settings.telegram_token, settings.telegram_api_url)
    try:
        me = api.get_me()
    except BotApiError as exc:
        raise PluginError(f"Telegram bot check failed: {exc}") from None
    finally:
        api.close()
    name = me.get("username") or me.get("first_name") or api.bot_id
    chats = ", ".join(str(c) for c in settings.telegram_chat_ids)
    sys.stdout.write(f"Bot @{name} (id {me.get('id', api.bot_id)}) answers\n")
    sys.stdout.write(f"Allowed chats: {chats}\n")
    sys.stdout.write(f"Bot API: {settings.telegram_api_url}\n")
