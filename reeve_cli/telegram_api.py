"""A small Telegram Bot API client on top of pyTelegramBotAPI's `apihelper`.

telebot builds the method URLs, checks the `ok` field and raises its exceptions;
this module adds what the bridge and the notifier need around that: a base URL
from the settings, parameters in a form body (the npm emulator reads bodies
only, and Telegram accepts both), and one error type, `BotApiError`, whose text
never contains the bot token. The token travels in every URL, and `requests`
puts URLs into its exception messages, so those messages are never shown.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from reeve_cli.errors import ReeveError

logger = logging.getLogger(__name__)

TEXT_LIMIT = 4096  # characters per message, the Bot API's limit
CONNECT_TIMEOUT = 5.0  # seconds
READ_TIMEOUT = 15.0  # seconds, for every method but a long poll

# apihelper keeps its base URL and request sender in module globals. The sender
# is one function that finds the calling client through a thread-local; the base
# URL is the same for every client of a process (one settings per process).
_local = threading.local()


class BotApiError(Exception):
    """A Bot API call failed; the text is safe to log (no token, no URL).

    Attributes:
        kind: "conflict" (409), "unauthorized" (401/404 for the bot), "rate_limited"
            (429), "server" (5xx), "network" (no answer) or "rejected" (other 4xx).
        status: the HTTP status or Bot API error code, None for network errors.
        retry_after: seconds to wait, from a 429 answer.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        description: str = "",
    ) -> None:
        super().__init__(message)
        self.description = description or message
        self.kind = kind
        self.status = status
        self.retry_after = retry_after

    @property
    def is_transient(self) -> bool:
        return self.kind in {"rate_limited", "server", "network"}


class BotConflict(ReeveError):
    """Another program polls the same bot, or a webhook is set (HTTP 409)."""

    exit_code = 4
    code = "telegram_conflict"

    def __init__(self, description: str) -> None:
        super().__init__(
            f"Telegram refused getUpdates with 409 Conflict ({description}): another "
            "program is polling this bot, or a webhook is set. Stop the other "
            "poller (or delete the webhook) and start 'reeve telegram' again"
        )


class BotUnauthorized(ReeveError):
    """The Bot API does not know the token."""

    exit_code = 4
    code = "telegram_unauthorized"

    def __init__(self) -> None:
        super().__init__(
            "Telegram rejected the bot token (401 Unauthorized); check "
            "REEVE_TELEGRAM_TOKEN (the token @BotFather gave you)"
        )


def redact(text: str, token: str | None) -> str:
    """Remove the token (and the secret half of it) from a piece of text."""
    if token:
        text = text.replace(token, "********")
        secret = token.partition(":")[2]
        if len(secret) >= 8:
            text = text.replace(secret, "********")
    return text


def quiet_http_loggers() -> None:
    """Keep the loggers that print request URLs (with the token) at WARNING.

    telebot also installs its own stderr handler, which would bypass the
    redaction filter of `reeve_cli.logs`; its records go to the root handlers.
    """
    for name in ("urllib3", "requests", "TeleBot", "telebot"):
        logging.getLogger(name).setLevel(logging.WARNING)
    import telebot  # noqa: F401  (its import adds the handler removed below)

    telebot_logger = logging.getLogger("TeleBot")
    telebot_logger.handlers.clear()
    telebot_logger.propagate = True


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Split text into messages of at most `limit` characters, on line breaks.

    Lengths are counted in UTF-16 code units, as Telegram counts them, so a
    message full of emoji stays within the limit. A single line longer than the
    limit is cut at the last space before it, or hard at the limit.
    """
    chunks: list[str] = []
    current = ""
    for line in _lines(text, limit):
        if current and _units(current) + _units(line) > limit:
            chunks.append(current.rstrip("\n"))
            current = ""
        current += line
    if current.strip() or not chunks:
        chunks.append(current.rstrip("\n"))
    return [chunk for chunk in chunks if chunk.strip()] or [text[:limit]]


def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _lines(text: str, limit: int) -> Iterator[str]:
    for line in text.splitlines(keepends=True):
        while _units(line) > limit:
            cut = _cut_point(line, limit)
            yield line[:cut]
            line = line[cut:]
        if line:
            yield line


def _cut_point(line: str, limit: int) -> int:
    cut = limit
    while _units(line[:cut]) > limit:
        cut -= 1
    space = line.rfind(" ", 0, cut)
    return space + 1 if space > cut // 2 else cut


@dataclass
class BotApi:
    """Calls to one bot's Bot API; blocking, one HTTP session per client."""

    token: str
    base_url: str = "https://api.telegram.org"

    def __post_init__(self) -> None:
        import requests

        self._session = requests.Session()
        self.base_url = self.base_url.rstrip("/")

    @property
    def bot_id(self) -> str:
        """The public numeric part of the token (the bot's user id)."""
        return self.token.partition(":")[0]

    def close(self) -> None:
        self._session.close()

    def get_me(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("get_me")
        return result

    def get_updates(self, offset: int | None, timeout: float) -> list[dict[str, Any]]:
        """Long-poll for updates from `offset` on, waiting up to `timeout` seconds."""
        result = self._call(
            "get_updates",
            offset=offset,
            limit=100,
            allowed_updates=["message"],
            long_polling_timeout=max(int(timeout), 1) if timeout else 0,
        )
        return list(result or [])

    def send_message(self, chat_id: int, text: str, *, silent: bool) -> dict[str, Any]:
        """Send plain text (no parse mode: user text cannot break formatting)."""
        result: dict[str, Any] = self._call(
            "send_message",
            chat_id,
            text,
            disable_notification=silent,
            timeout=READ_TIMEOUT,
        )
        return result

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        import requests
        from telebot import apihelper

        # telebot declares both globals as None; they accept a format / callable.
        apihelper.API_URL = f"{self.base_url}/bot{{0}}/{{1}}"  # type: ignore[assignment]
        apihelper.CUSTOM_REQUEST_SENDER = _send_form  # type: ignore[assignment]
        _local.session = self._session
        try:
            try:
                return getattr(apihelper, name)(self.token, *args, **kwargs)
            except apihelper.ApiTelegramException as exc:
                raise self._api_error(exc.error_code, exc.description, exc) from None
            except apihelper.ApiHTTPException as exc:
                status = getattr(exc.result, "status_code", None)
                raise self._api_error(status, "no JSON in the answer", exc) from None
            except apihelper.ApiInvalidJSONException:
                raise BotApiError(
                    "server", "the Bot API answered with invalid JSON"
                ) from None
            except requests.Timeout:
                raise BotApiError(
                    "network", "the Bot API did not answer in time"
                ) from None
            except requests.RequestException as exc:
                raise BotApiError(
                    "network", f"cannot reach the Bot API ({type(exc).__name__})"
                ) from None
        finally:
            _local.session = None

    def _api_error(self, status: int | None, description: str, exc: Any) -> Exception:
        description = redact(str(description), self.token)
        if status == 409:
            return BotApiError(
                "conflict",
                f"409 Conflict: {description}",
                status=409,
                description=description,
            )
        if status == 401:
            return BotApiError("unauthorized", "401 Unauthorized", status=401)
        if status == 429:
            retry_after = _retry_after(exc)
            return BotApiError(
                "rate_limited",
                f"429 Too Many Requests: retry after {retry_after:g}s",
                status=429,
                retry_after=retry_after,
            )
        if status is not None and status >= 500:
            return BotApiError("server", f"HTTP {status}: {description}", status=status)
        return BotApiError("rejected", f"HTTP {status}: {description}", status=status)


def _send_form(
    method: str,
    url: str,
    params: dict[str, Any] | None = None,
    files: Any = None,
    timeout: Any = None,
    proxies: Any = None,
) -> Any:
    """Send every call as a POST with a form body (apihelper's request sender)."""
    if isinstance(timeout, tuple):
        timeout = (min(timeout[0], CONNECT_TIMEOUT), timeout[1])
    return _local.session.request(
        "post", url, data=params, files=files, timeout=timeout, proxies=proxies
    )


def _retry_after(exc: Any) -> float:
    parameters = (getattr(exc, "result_json", None) or {}).get("parameters") or {}
    try:
        return max(float(parameters.get("retry_after", 1)), 0.0)
    except (TypeError, ValueError):
        return 1.0
