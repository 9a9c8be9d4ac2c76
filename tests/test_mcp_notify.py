"""send_notification through the Telegram notifier, against the fake Bot API.

The token lives only in the config file, as `reeve mcp config` advises: the
server gets no REEVE_* variable at all.
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
    (home / "config.toml").write_text(
        f'telegram_token = "{bot.token}"\n'
        f'telegram_chat_ids = "{CHAT}"\n'
        f'telegram_api_url = "{bot.url}"\n'
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
