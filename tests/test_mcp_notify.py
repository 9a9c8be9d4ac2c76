"""send_notification through the Telegram notifier, against the fake Bot API.

The token lives only in the systemd units' environment file next to the config
file (`~/.config/reeve/env`), where the docs tell users to put it; the server
gets no REEVE_* variable at all, as under an agent client.
"""

import sqlite3

import pytest

from tests.fake_bot_api import CHAT, FakeBotApi
from tests.mcp_helpers import McpServer, bare_env, settings_args


@pytest.fixture(scope="module")
def bot():
    server = FakeBotApi().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def home(tmp_path_factory, bot):
    home = tmp_path_factory.mktemp("notify")
    (home / "env").write_text(
        "# Secrets for Reeve's systemd units\n"
        f"REEVE_TELEGRAM_TOKEN={bot.token}\n"
        f'REEVE_TELEGRAM_CHAT_IDS="{CHAT}"\n'
        f"REEVE_TELEGRAM_API_URL={bot.url}\n"
    )
    return home


@pytest.fixture(scope="module")
def server(home):
    args = settings_args(home / "data", home / "config.toml") + ["mcp", "serve"]
    with McpServer(args, bare_env(), home / "server.err") as running:
        yield running


def test_send_notification_reaches_the_chat(server, bot, home):
    text, data = server.ok(
        "send_notification", message="Flight LH 400 is delayed", priority="high"
    )

    assert [(s.chat_id, s.text) for s in bot.sent] == [
        (CHAT, "Flight LH 400 is delayed")
    ]
    assert data["status"] == "sent"
    assert data["notifier"] == "telegram"
    assert text == "Sent the notification via telegram."
    conn = sqlite3.connect(home / "data" / "reeve.db")
    rows = conn.execute("SELECT status, message FROM notifications").fetchall()
    conn.close()
    assert rows == [("sent", "Flight LH 400 is delayed")]
    assert bot.token not in text + str(data)


def test_failed_notification_is_a_tool_error_without_the_token(server, bot):
    bot.fail("sendMessage", 500, times=3, description=f"boom for {bot.token}")

    text = server.error("send_notification", message="will not arrive")

    assert text.startswith(
        "Error executing tool send_notification: The notification could not be "
        "sent (failed): "
    )
    assert bot.token not in text
    assert bot.token not in server.stderr()


def test_empty_message_is_refused(server):
    text = server.error("send_notification", message="  ")

    assert text == (
        "Error executing tool send_notification: The message is empty; say what "
        "to tell the user"
    )


def test_secrets_are_masked_in_results(server, bot):
    text, data = server.ok(
        "schedule_pulse", when="in 1h", prompt=f"the bot token is {bot.token}"
    )

    assert bot.token not in text + str(data)
    assert data["prompt"] == "the bot token is ********"
