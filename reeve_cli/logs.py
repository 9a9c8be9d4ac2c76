"""Logging set-up for entry points; library modules only call getLogger.

Under systemd (JOURNAL_STREAM set) lines carry no timestamp of their own and start
with a `<N>` syslog priority that journald reads; elsewhere they carry a local
timestamp. Every known secret is replaced by `********` in every record.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable

# syslog priorities journald understands as a "<N>" line prefix.
_JOURNAL_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}

# Third-party loggers that print request URLs; the Telegram token is in them.
_NOISY = ("httpx", "httpcore", "urllib3", "requests", "aiohttp", "TeleBot", "telebot")


class RedactingFilter(logging.Filter):
    """Replace every known secret in a record's final text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len)[::-1]

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "********")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            redacted = self.redact(message)
            if redacted != message:
                record.msg, record.args = redacted, None
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = self.redact(
                    logging.Formatter().formatException(record.exc_info)
                )
                record.exc_info = None
        return True


class JournalFormatter(logging.Formatter):
    """Prefix each line with its syslog priority for journald."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_JOURNAL_PRIORITY.get(record.levelno, 6)}>"
        text = super().format(record)
        return "\n".join(prefix + line for line in text.splitlines())


def under_journal() -> bool:
    return bool(os.environ.get("JOURNAL_STREAM"))


def environment_secrets() -> list[str]:
    """Return secret settings given in the environment (REEVE_API_TOKEN, ...).

    Entry points call `setup_logging` before the config file is read; these are
    redacted from the first record on, the config file's via `add_secrets`.
    """
    from reeve_cli.config import SETTINGS

    return [os.environ.get(s.env, "") for s in SETTINGS if s.secret]


def setup_logging(level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    """Send log records to stderr, formatted for journald or a terminal."""
    handler = logging.StreamHandler(sys.stderr)
    if under_journal():
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"
            )
        )
    handler.addFilter(RedactingFilter([*secrets, *environment_secrets()]))

    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)


def add_secrets(secrets: Iterable[str]) -> None:
    """Teach the installed handlers more secrets to redact."""
    for handler in logging.getLogger().handlers:
        for flt in handler.filters:
            if isinstance(flt, RedactingFilter):
                flt.secrets = sorted(
                    set(flt.secrets) | {s for s in secrets if s and len(s) >= 4},
                    key=len,
                )[::-1]
