"""Logging: journald priority prefixes, verbosity, and secrets never written."""

from __future__ import annotations

import logging
import re

import pytest

from reeve_cli.errors import ConfigError
from reeve_cli.logs import add_secrets, setup_logging

SECRET = "123456789:AAsecretsecretsecretsecretsecret0"
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (INFO|DEBUG) reeve_cli\.db: ")


@pytest.fixture(autouse=True)
def restore_root_logger():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_under_journald_lines_carry_priority_and_no_timestamp(run_reeve):
    done = run_reeve("-v", "db", "upgrade", env={"JOURNAL_STREAM": "8:12345"})

    lines = done.stderr.splitlines()
    assert done.returncode == 0
    assert all(line.startswith("<6>") for line in lines)
    assert re.fullmatch(
        r"<6>reeve_cli\.db: Database \S+ upgraded to schema 0001", lines[-1]
    )


def test_in_a_terminal_lines_carry_a_timestamp(run_reeve):
    done = run_reeve("-v", "db", "upgrade", env={"JOURNAL_STREAM": ""})

    assert done.returncode == 0
    assert STAMP.match(done.stderr.splitlines()[-1])


def test_without_verbose_info_is_not_logged(run_reeve):
    done = run_reeve("db", "upgrade")

    assert done.returncode == 0
    assert done.stderr == ""


@pytest.mark.parametrize(
    ("level", "expected"),
    [("INFO", logging.INFO), ("DEBUG", logging.DEBUG), ("WARNING", logging.WARNING)],
)
def test_setup_logging_sets_the_level(level, expected):
    setup_logging(level)

    assert logging.getLogger().level == expected
    assert logging.getLogger("urllib3").level == logging.WARNING


def test_reeve_log_level_is_read_and_checked(monkeypatch):
    from reeve_cli.config import load_settings

    monkeypatch.setenv("REEVE_LOG_LEVEL", "debug")
    assert load_settings().log_level == "DEBUG"

    monkeypatch.setenv("REEVE_LOG_LEVEL", "chatty")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.message == (
        "REEVE_LOG_LEVEL: use one of DEBUG, INFO, WARNING, ERROR, got 'chatty'"
    )


def test_journal_prefix_goes_on_every_line_of_a_traceback(capsys, monkeypatch):
    monkeypatch.setenv("JOURNAL_STREAM", "8:1")
    setup_logging("INFO")

    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("reeve_cli.dispatch").exception("Pulse %d failed", 7)

    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "<3>reeve_cli.dispatch: Pulse 7 failed"
    assert len(lines) > 2
    assert all(line.startswith("<3>") for line in lines)


def test_secret_is_never_logged(capsys):
    setup_logging("DEBUG", secrets=[SECRET])
    log = logging.getLogger("reeve_cli.telegram")

    log.info("GET https://api.telegram.org/bot%s/getUpdates", SECRET)
    log.warning("token is " + SECRET)  # noqa: G003 (a careless caller)
    try:
        raise ConnectionError(f"cannot reach /bot{SECRET}/getMe")
    except ConnectionError:
        log.exception("Telegram failed")

    err = capsys.readouterr().err
    assert SECRET not in err
    assert err.count("********") == 3


def test_secrets_learned_later_are_redacted(capsys):
    setup_logging("INFO")
    add_secrets([SECRET])

    logging.getLogger("reeve_cli.api").info("token %s", SECRET)

    assert capsys.readouterr().err.endswith("reeve_cli.api: token ********\n")


def test_a_secret_in_the_environment_is_redacted_from_the_start(capsys, monkeypatch):
    monkeypatch.setenv("REEVE_TELEGRAM_TOKEN", SECRET)
    setup_logging("INFO")

    logging.getLogger("telebot").warning("POST /bot%s/sendMessage", SECRET)
    logging.getLogger("reeve_cli.telegram").info("using %s", SECRET)

    err = capsys.readouterr().err
    assert SECRET not in err
    assert "POST /bot********/sendMessage" in err
