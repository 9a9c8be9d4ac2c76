"""Reeve's `telegram` notifier: messages to the chats of REEVE_TELEGRAM_CHAT_IDS.

Critical and high priority messages make a sound; the others arrive silently
(`disable_notification`). Text goes out plain, with no parse mode, so nothing a
user or an agent writes can break the formatting, and text longer than one
Telegram message (4096 characters) is split on line breaks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from reeve_cli import hookimpl
from reeve_cli.config import Settings
from reeve_cli.model import Priority
from reeve_cli.telegram_api import BotApi, BotApiError, quiet_http_loggers, split_text

logger = logging.getLogger(__name__)

LOUD = frozenset({Priority.CRITICAL, Priority.HIGH})
MAX_RATE_WAIT = 10.0  # seconds: wait out a 429 this long, else fail the try


class TelegramNotifier:
    """Send notifications as Telegram bot messages."""

    name = "telegram"
    description = "Telegram bot messages to REEVE_TELEGRAM_CHAT_IDS"

    def is_configured(self, settings: Settings) -> bool:
        return bool(settings.telegram_token and settings.telegram_chat_ids)

    def send(self, settings: Settings, message: str, priority: Priority) -> None:
        """Send `message` to every configured chat; raise BotApiError on failure."""
        if not self.is_configured(settings):
            raise RuntimeError(
                "Telegram is not configured; set REEVE_TELEGRAM_TOKEN and "
                "REEVE_TELEGRAM_CHAT_IDS"
            )
        quiet_http_loggers()
        silent = Priority.parse(str(priority)) not in LOUD
        api = BotApi(settings.telegram_token, settings.telegram_api_url)
        try:
            for chat_id in settings.telegram_chat_ids:
                for chunk in split_text(message):
                    _send_waiting(api, int(chat_id), chunk, silent)
        finally:
            api.close()


def _send_waiting(api: BotApi, chat_id: int, text: str, silent: bool) -> Any:
    """Send one message, waiting out a short rate limit (429 retry_after) once."""
    try:
        return api.send_message(chat_id, text, silent=silent)
    except BotApiError as exc:
        wait = exc.retry_after
        if exc.kind != "rate_limited" or wait is None or wait > MAX_RATE_WAIT:
            raise
        logger.info("Telegram asked to wait %.1fs before sending", wait)
        time.sleep(wait)
        return api.send_message(chat_id, text, silent=silent)


@hookimpl
def register_notifiers(register: Callable[[TelegramNotifier], None]) -> None:
    register(TelegramNotifier())
