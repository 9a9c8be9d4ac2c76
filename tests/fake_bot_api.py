"""A fake Telegram Bot API on 127.0.0.1 for the tests, with fault injection.

Faithful where Reeve depends on it:
- getUpdates: an `offset` confirms (and forgets for good) every update with a
  smaller id; `timeout` is a real long poll that returns as soon as an update
  arrives; `limit` caps the batch.
- sendMessage: text of 1-4096 characters, `disable_notification` and
  `parse_mode` recorded as sent; a Message comes back.
- Parameters are read from the query string and from a form or JSON body, for
  every method and HTTP verb, as the real server does.
- An unknown token gets 401.

Faults: `fail(method, status, times=..., retry_after=...)` answers the next
calls of a method with an error (409, 429 with retry_after, 5xx, ...), and
`outage()` stops the server (connections refused) and starts it again on the
same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.daemon_helpers import wait_for  # noqa: F401  (re-exported for the tests)

TOKEN = "123456789:AAFakeSecretTokenPart_abcdefghijklmnop"
CHAT = 4242  # an allowed private chat
OTHER_CHAT = -100777  # a second allowed chat (a group)
STRANGER = 999  # a chat that is not allowed


@dataclass
class Fault:
    method: str
    status: int
    times: int
    retry_after: float | None = None
    description: str | None = None
    html: bool = False


@dataclass
class Sent:
    chat_id: int
    text: str
    disable_notification: bool | None
    parse_mode: str | None
    params: dict[str, str] = field(default_factory=dict)


def _flag(value: str | None) -> bool | None:
    if value is None:
        return None
    return value.strip().lower() in {"true", "1", "yes"}


class FakeBotApi:
    """The fake server and the "user" side of it; thread-safe."""

    def __init__(self, token: str = TOKEN, bot_username: str = "reeve_test_bot"):
        self.token = token
        self.bot_id = int(token.partition(":")[0])
        self.bot_username = bot_username
        self.lock = threading.Lock()
        self.updates: list[dict[str, Any]] = []
        self.next_update_id = 1000
        self.message_ids: dict[int, int] = {}
        self.sent: list[Sent] = []
        self.calls: list[tuple[float, str, dict[str, str]]] = []
        self.faults: list[Fault] = []
        self.confirmed_below = 0
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._closing = False
        self.release_polls = False  # set to end every waiting long poll at once

    # The user's side ---------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def user_says(
        self,
        chat_id: int,
        text: str,
        *,
        user_id: int | None = None,
        first_name: str = "Ann",
        username: str | None = "ann",
    ) -> dict[str, Any]:
        """Queue a message from a person in `chat_id`; return the update."""
        with self.lock:
            message_id = self.message_ids.get(chat_id, 0) + 1
            self.message_ids[chat_id] = message_id
            sender: dict[str, Any] = {
                "id": user_id or abs(chat_id),
                "is_bot": False,
                "first_name": first_name,
            }
            if username:
                sender["username"] = username
            update = {
                "update_id": self.next_update_id,
                "message": {
                    "message_id": message_id,
                    "from": sender,
                    "chat": {"id": chat_id, "type": "private"},
                    "date": int(time.time()),
                    "text": text,
                },
            }
            self.next_update_id += 1
            self.updates.append(update)
            return update

    def fail(
        self,
        method: str,
        status: int,
        *,
        times: int = 1,
        retry_after: float | None = None,
        description: str | None = None,
        html: bool = False,
    ) -> None:
        """Answer the next `times` calls of `method` with an error."""
        with self.lock:
            self.faults.append(
                Fault(method.lower(), status, times, retry_after, description, html)
            )

    def calls_of(self, method: str) -> list[tuple[float, dict[str, str]]]:
        with self.lock:
            return [(at, p) for at, m, p in self.calls if m == method.lower()]

    def pending_updates(self) -> list[dict[str, Any]]:
        """Updates not yet confirmed by an offset."""
        with self.lock:
            return list(self.updates)

    # Server lifecycle ----------------------------------------------------------

    def start(self) -> FakeBotApi:
        app = Starlette(
            routes=[
                Route(
                    "/bot{token}/{method}",
                    self._endpoint,
                    methods=["GET", "POST"],
                )
            ]
        )
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._closing = False
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="fake-bot-api", daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("fake Bot API did not start")
            time.sleep(0.01)
        self.port = server.servers[0].sockets[0].getsockname()[1]
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._closing = True
        self._server.should_exit = True
        self._thread.join(timeout=20)
        self._server = self._thread = None

    @contextlib.contextmanager
    def outage(self):
        """Refuse connections inside the block; serve again on the same port."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    # HTTP ------------------------------------------------------------------------

    async def _endpoint(self, request: Request) -> Response:
        token = request.path_params["token"]
        method = request.path_params["method"].lower()
        params = dict(request.query_params)
        body = await request.body()
        content_type = request.headers.get("content-type", "")
        if body and "json" in content_type:
            params.update({k: str(v) for k, v in json.loads(body).items()})
        elif body:
            params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))

        with self.lock:
            self.calls.append((time.monotonic(), method, params))
            fault = self._take_fault(method)
        if token != self.token:
            return _error(401, "Unauthorized")
        if fault is not None:
            return _fault_response(fault)

        if method == "getme":
            return _ok(
                {
                    "id": self.bot_id,
                    "is_bot": True,
                    "first_name": "Reeve test",
                    "username": self.bot_username,
                }
            )
        if method == "getupdates":
            return await self._get_updates(params)
        if method == "sendmessage":
            return self._send_message(params)
        return _error(404, "Not Found: method not found")

    def _take_fault(self, method: str) -> Fault | None:
        for fault in self.faults:
            if fault.method == method and fault.times > 0:
                fault.times -= 1
                return fault
        return None

    async def _get_updates(self, params: dict[str, str]) -> Response:
        try:
            offset = int(params["offset"]) if params.get("offset") else None
            limit = int(params.get("limit") or 100)
            timeout = float(params.get("timeout") or 0)
        except ValueError:
            return _error(400, "Bad Request: wrong parameter")
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if offset is not None and offset > 0:
                    self.confirmed_below = max(self.confirmed_below, offset)
                    self.updates = [u for u in self.updates if u["update_id"] >= offset]
                batch = self.updates[:limit]
            done = self._closing or self.release_polls
            if batch or time.monotonic() >= deadline or done:
                return _ok(batch)
            await asyncio.sleep(0.01)

    def _send_message(self, params: dict[str, str]) -> Response:
        text = params.get("text", "")
        if "chat_id" not in params:
            return _error(400, "Bad Request: chat_id is empty")
        if not text.strip():
            return _error(400, "Bad Request: message text is empty")
        if len(text) > 4096:
            return _error(400, "Bad Request: message is too long")
        chat_id = int(params["chat_id"])
        with self.lock:
            self.sent.append(
                Sent(
                    chat_id=chat_id,
                    text=text,
                    disable_notification=_flag(params.get("disable_notification")),
                    parse_mode=params.get("parse_mode"),
                    params=dict(params),
                )
            )
            message_id = self.message_ids.get(chat_id, 0) + 1
            self.message_ids[chat_id] = message_id
        return _ok(
            {
                "message_id": message_id,
                "from": {"id": self.bot_id, "is_bot": True, "first_name": "Reeve"},
                "chat": {"id": chat_id, "type": "private"},
                "date": int(time.time()),
                "text": text,
            }
        )


def _ok(result: Any) -> JSONResponse:
    return JSONResponse({"ok": True, "result": result})


def _error(status: int, description: str, **parameters: Any) -> JSONResponse:
    body: dict[str, Any] = {
        "ok": False,
        "error_code": status,
        "description": description,
    }
    if parameters:
        body["parameters"] = parameters
    return JSONResponse(body, status_code=status)


_DESCRIPTIONS = {
    409: "Conflict: terminated by other getUpdates request; make sure that only "
    "one bot instance is running",
    429: "Too Many Requests: retry after {retry_after}",
    500: "Internal Server Error",
    502: "Bad Gateway",
}


def _fault_response(fault: Fault) -> Response:
    if fault.html:
        return PlainTextResponse(
            "<html><body>502 Bad Gateway</body></html>", status_code=fault.status
        )
    description = fault.description or _DESCRIPTIONS.get(fault.status, "Error")
    if fault.retry_after is not None:
        retry = fault.retry_after
        shown = int(retry) if float(retry).is_integer() else retry
        return _error(
            fault.status,
            description.format(retry_after=shown),
            retry_after=shown,
        )
    return _error(fault.status, description)


# Fixtures shared by the Telegram tests (imported by each test module) -----------


@pytest.fixture
def fake_bot(monkeypatch):
    """A running fake Bot API, with Reeve's Telegram settings pointing at it."""
    server = FakeBotApi().start()
    monkeypatch.setenv("REEVE_TELEGRAM_TOKEN", server.token)
    monkeypatch.setenv("REEVE_TELEGRAM_CHAT_IDS", f"{CHAT},{OTHER_CHAT}")
    monkeypatch.setenv("REEVE_TELEGRAM_API_URL", server.url)
    yield server
    server.stop()
