"""Telegram bridge and notifier latency against the fake Bot API (loopback).

Starts tests/fake_bot_api.py in this process and `reeve telegram` as a
subprocess with a private data dir, then measures:
- bridge start (process spawn) -> first getUpdates call;
- a user's message -> its pulse row committed (one message at a time, each in
  its own chat, so every message makes a new pulse);
- notify() -> sendMessage answered, in this process (one chat).

    .venv/bin/python bench/telegram.py [--messages 40]
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fake_bot_api import FakeBotApi  # noqa: E402


def _quantiles(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[int(0.9 * (len(ordered) - 1))]
    return (
        f"{statistics.median(ordered) * 1000:.1f} ms | {p90 * 1000:.1f} ms | "
        f"{ordered[-1] * 1000:.1f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=40)
    args = parser.parse_args()

    fake = FakeBotApi().start()
    chats = list(range(5001, 5001 + args.messages))
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REEVE_")} | {
            "REEVE_DATA_DIR": f"{tmp}/data",
            "REEVE_CONFIG": f"{tmp}/config.toml",
            "REEVE_TIMEZONE": "UTC",
            "REEVE_TELEGRAM_TOKEN": fake.token,
            "REEVE_TELEGRAM_CHAT_IDS": ",".join(str(c) for c in chats),
            "REEVE_TELEGRAM_API_URL": fake.url,
        }
        os.environ.update(env)
        reeve = str(Path(sys.executable).with_name("reeve"))
        started = time.monotonic()
        proc = subprocess.Popen(
            [reeve, "telegram", "--poll-timeout", "20"],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        while not fake.calls_of("getUpdates"):
            time.sleep(0.005)
        start_up = fake.calls_of("getUpdates")[0][0] - started

        db = sqlite3.connect(f"{tmp}/data/reeve.db")
        latencies = []
        for chat in chats:
            sent = time.monotonic()
            fake.user_says(chat, f"hello from {chat}")
            key = f"telegram:{chat}:1"
            while not db.execute(
                "SELECT 1 FROM pulses WHERE idempotency_key = ?", (key,)
            ).fetchone():
                time.sleep(0.001)
            latencies.append(time.monotonic() - sent)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)

        from reeve_cli.config import load_settings
        from reeve_cli.db import open_database
        from reeve_cli.notify import notify

        os.environ["REEVE_TELEGRAM_CHAT_IDS"] = str(chats[0])
        settings = load_settings()
        database = open_database(settings.db_url)
        notify(settings, database, "warm-up")
        sends = []
        for n in range(20):
            begin = time.monotonic()
            notify(settings, database, f"notification {n}")
            sends.append(time.monotonic() - begin)
    fake.stop()

    print("| step | median | p90 | max |")
    print("|---|---|---|---|")
    print(
        f"| `reeve telegram` spawn -> first getUpdates | {start_up * 1000:.0f} ms | | |"
    )
    count = len(latencies)
    print(f"| message -> pulse stored ({count} messages) | {_quantiles(latencies)} |")
    print(f"| notify() -> sent and recorded (20 calls) | {_quantiles(sends)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
