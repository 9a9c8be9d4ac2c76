"""Daemon parts that need no daemon process: lock, status, logs, sd_notify."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time

import pytest

from reeve_cli import status
from reeve_cli.daemon import DaemonLock, _bind, is_loopback, prune_logs
from reeve_cli.errors import StartupError
from reeve_cli.systemd import sd_notify, watchdog_interval


def test_stale_daemon_json_without_lock_means_not_running(settings):
    settings.data_path.mkdir(parents=True, exist_ok=True)
    status.info_path(settings).write_text(
        json.dumps({"pid": 1, "host": "h", "started_at": None, "api_url": "x"})
    )

    assert status.daemon_info(settings) is None


def test_held_lock_is_reported_with_its_owner(settings):
    lock = DaemonLock(status.lock_path(settings))
    lock.acquire("2026-12-03T17:00:00Z")
    try:
        info = status.daemon_info(settings)
    finally:
        lock.release()

    assert info == {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started_at": "2026-12-03T17:00:00Z",
        "api_url": None,
    }
    assert status.daemon_info(settings) is None


def test_second_lock_names_the_owner(settings):
    first = DaemonLock(status.lock_path(settings))
    first.acquire("2026-12-03T17:00:00Z")
    try:
        with pytest.raises(StartupError) as caught:
            DaemonLock(status.lock_path(settings)).acquire("later")
    finally:
        first.release()

    assert caught.value.exit_code == 4
    assert str(caught.value) == (
        f"Another Reeve daemon is running for this database (pid {os.getpid()} "
        f"on host {socket.gethostname()}); stop it first, e.g. "
        "'systemctl --user stop reeve-daemon'"
    )


def test_unit_named_in_the_hint_exists():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    assert os.path.exists(os.path.join(root, "systemd", "reeve-daemon.service"))


def test_api_socket_connections_have_nagle_off():
    """Connections accepted on the daemon's API socket answer without ~40 ms delays.

    A plain asyncio server (not the API app, which could patch connections
    itself) shows what every accepted connection gets from `_bind`.
    """
    listener = _bind("127.0.0.1", 0)
    assert listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0

    async def main():
        seen = []

        async def handle(reader, writer):
            sock = writer.get_extra_info("socket")
            seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(handle, sock=listener)
        port = listener.getsockname()[1]
        async with server:
            for _ in range(3):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                await reader.read()
                writer.close()
        return seen

    seen = asyncio.run(main())
    assert len(seen) == 3
    assert all(value != 0 for value in seen)


def test_collect_status_counts_and_next_due(settings, db):
    from datetime import timedelta

    from reeve_cli import store
    from reeve_cli.model import utcnow

    store.add_pulse(db, prompt="a", scheduled_at=utcnow() + timedelta(hours=2))
    soon, _ = store.add_pulse(
        db, prompt="b", scheduled_at=utcnow() + timedelta(hours=1)
    )

    state = status.collect_status(settings, db)

    assert state["daemon"]["running"] is False
    assert state["counts"]["pending"] == 2
    assert state["next_due"]["id"] == soon.id
    assert state["running"] == [] and state["last_failure"] is None
    assert state["schedules"] == 0


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.168.1.5", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_prune_logs_removes_only_old_files(monkeypatch):
    monkeypatch.setenv("REEVE_LOG_RETENTION", "1d")
    from reeve_cli.config import load_settings

    settings = load_settings()
    settings.logs_path.mkdir(parents=True)
    old = settings.logs_path / "pulse-1-1.log"
    new = settings.logs_path / "pulse-2-1.log"
    old.write_text("old")
    new.write_text("new")
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))

    assert prune_logs(settings) == 1
    assert not old.exists() and new.exists()


def test_sd_notify_reaches_abstract_socket(monkeypatch):
    name = f"reeve-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)

        sent = sd_notify("READY=1")

        assert sent is True
        assert sock.recv(100) == b"READY=1"


def test_sd_notify_without_systemd_is_a_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)

    assert sd_notify("READY=1") is False


def test_watchdog_interval_is_half_of_watchdog_sec(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))

    assert watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert watchdog_interval() is None
