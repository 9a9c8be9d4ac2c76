"""The bridge and the notifier against the npm Bot API emulator telegram-test-api.

The emulator is a third-party implementation, so these tests check that Reeve
works with more than our own fake. It is installed from tests/emulator's lock
file (`npm ci`, also the Makefile target tests/emulator/node_modules/.installed).
Its quirks (LIBRARIES.md 4.1): it ignores `offset` and the long-poll `timeout`,
and marks updates read on delivery.
"""

import json
import shutil
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from reeve_cli import notify as notify_module
from reeve_cli import plugins, store
from reeve_cli.config import ensure_data_dir, load_settings
from reeve_cli.db import open_database
from reeve_cli.telegram import Backoff, Bridge
from tests.fake_bot_api import wait_for

pytestmark = pytest.mark.node

EMULATOR_DIR = Path(__file__).parent / "emulator"
USER_CHAT = 4711


def _install_emulator() -> None:
    marker = EMULATOR_DIR / "node_modules" / ".installed"
    if marker.exists():
        return
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=EMULATOR_DIR,
        check=True,
        timeout=300,
    )
    marker.touch()


@pytest.fixture(scope="module")
def emulator_url():
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm not installed: the telegram-test-api emulator needs them")
    _install_emulator()
    proc = subprocess.Popen(
        ["node", "start_emulator.js", "0"],
        cwd=EMULATOR_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line, "the emulator exited before listening"
        yield json.loads(line)["url"]
    finally:
        proc.terminate()
        proc.wait(timeout=15)


_tokens = iter(range(1000, 9999))


@pytest.fixture
def emulated(emulator_url, monkeypatch):
    """Reeve set up against the emulator with a token of its own."""
    token = f"{next(_tokens)}:EmulatorToken{time.monotonic_ns()}"
    monkeypatch.setenv("REEVE_TELEGRAM_TOKEN", token)
    monkeypatch.setenv("REEVE_TELEGRAM_CHAT_IDS", str(USER_CHAT))
    monkeypatch.setenv("REEVE_TELEGRAM_API_URL", emulator_url)
    settings = load_settings()
    ensure_data_dir(settings)
    db = open_database(settings.db_url)
    plugins.reset()
    yield emulator_url, token, settings, db
    db.close()
    plugins.reset()


def _client(url: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_message_from_emulated_user_becomes_pulse(emulated):
    url, token, settings, db = emulated
    bridge = Bridge(
        settings, db, poll_timeout=1, backoff=Backoff(0.05, 0.3), idle_pause=0.1
    )
    thread = threading.Thread(target=bridge.run, daemon=True)
    thread.start()

    try:
        _client(
            url,
            "/sendMessage",
            {
                "botToken": token,
                "date": int(time.time()),
                "text": "Remind me to call mum at six",
                "from": {"id": USER_CHAT, "first_name": "Emu", "is_bot": False},
                "chat": {"id": USER_CHAT, "type": "private"},
            },
        )
        (pulse,) = wait_for(lambda: store.list_pulses(db, limit=None))
    finally:
        bridge.stop()
        thread.join(timeout=15)

    assert "Remind me to call mum at six" in pulse.prompt
    assert pulse.source == "telegram"
    assert pulse.priority.value == "critical"
    assert pulse.idempotency_key.startswith(f"telegram:{USER_CHAT}:")


def test_notification_appears_in_emulated_chat(emulated):
    url, token, settings, db = emulated

    row = notify_module.notify(settings, db, "Your flight leaves at 06:45", "normal")
    seen = _client(url, "/getUpdates", {"token": token, "chatId": USER_CHAT})

    assert row["status"] == "sent"
    (delivered,) = seen["result"]
    assert delivered["message"]["text"] == "Your flight leaves at 06:45"
    assert delivered["message"]["disable_notification"] == "True"
    assert "parse_mode" not in delivered["message"]
