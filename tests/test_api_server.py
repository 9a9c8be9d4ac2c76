"""The app under a real uvicorn server on 127.0.0.1, without the daemon."""

from __future__ import annotations

import asyncio
import http.client
import socket
import threading

import pytest
import uvicorn

from reeve_cli.api import create_app
from reeve_cli.api_token import ensure_api_token


class ThreadedServer:
    """uvicorn in a thread with its own loop, on an ephemeral loopback port."""

    def __init__(self, app):
        # A listening socket made like this (proto 0) gets no TCP_NODELAY from
        # asyncio; the app must still answer keep-alive requests promptly.
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(
            app, log_config=None, lifespan="on", timeout_graceful_shutdown=30
        )
        self.server = uvicorn.Server(config)
        self.server.install_signal_handlers = lambda: None  # not the main thread
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def __enter__(self):
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            self.thread.join(0.01)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture
def token(settings):
    return ensure_api_token(settings)


def test_server_shutdown_ends_open_event_streams(settings, db, token):
    with ThreadedServer(create_app(settings, db)) as running:
        conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=30)
        conn.request("GET", "/api/events", headers={"Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        assert response.readline() == b"retry: 2000\n"

        running.server.should_exit = True
        rest = response.read()
        # Far less than timeout_graceful_shutdown (30 s): the stream ended itself.
        running.thread.join(10)
        stopped = not running.thread.is_alive()

    assert stopped
    assert rest in (b"\n", b"")
    conn.close()


def test_keep_alive_requests_are_answered_on_one_connection(settings, db, token):
    with ThreadedServer(create_app(settings, db)) as running:
        conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=30)
        statuses = []
        for _ in range(20):
            conn.request("GET", "/api/health")
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
        conn.close()

    assert statuses == [200] * 20
