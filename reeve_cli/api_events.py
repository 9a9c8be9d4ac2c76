"""`GET /api/events`: the `events` table as a Server-Sent Events stream.

Every state change of a pulse or schedule writes an `events` row in the same
transaction (see `store.record_event`), so the stream misses nothing: the SSE
`id` is the row id, and a client that reconnects with `Last-Event-ID` (or
`?after=`) gets every event after it. The table is read by primary key every
`POLL_INTERVAL`, and at once after a write through this API.

uvicorn waits for open responses before it stops, so a stream ends as soon as
the server begins to shut down: when `api.close_streams` is called, when the
app's lifespan ends, or when uvicorn marks the connection as closing.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from reeve_cli.api_input import check_query, query_int
from reeve_cli.errors import InvalidValue
from reeve_cli.model import iso_utc, parse_db_time

if TYPE_CHECKING:
    from reeve_cli.api import ApiContext
    from reeve_cli.db import Database

POLL_INTERVAL = 0.25  # seconds between reads of the events table
KEEPALIVE_INTERVAL = 15.0  # seconds of silence before a comment line is sent
BATCH = 200
RETRY_MS = 2000  # how long browsers wait before reconnecting
EVENTS_QUERY = frozenset({"after", "limit", "timeout"})


def event_dict(row: Any) -> dict[str, Any]:
    """Return one events row in its JSON shape."""
    return {
        "id": row["id"],
        "at": iso_utc(parse_db_time(row["at"])),
        "kind": row["kind"],
        "pulse_id": row["pulse_id"],
        "schedule_name": row["schedule_name"],
        "data": json.loads(row["data"]) if row["data"] else {},
    }


def _latest_id(db: Database) -> int:
    with db.transaction() as conn:
        rows = conn.execute("SELECT COALESCE(MAX(id), 0) AS n FROM events")
    return int(rows[0]["n"])


def _events_after(db: Database, after: int, limit: int) -> list[dict[str, Any]]:
    with db.transaction() as conn:
        rows = conn.execute(
            "SELECT * FROM events WHERE id > :after ORDER BY id LIMIT :limit",
            {"after": after, "limit": limit},
        )
    return [event_dict(row) for row in rows]


def format_event(event: dict[str, Any]) -> str:
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return f"id: {event['id']}\nevent: {event['kind']}\ndata: {data}\n\n"


def _start_id(request: Request) -> int | None:
    header = request.headers.get("last-event-id")
    query = request.query_params.get("after")
    if header is not None and query is not None:
        raise InvalidValue(
            "Give either the Last-Event-ID header or ?after=, not both", field="after"
        )
    text = header if header is not None else query
    if text is None:
        return None
    text = text.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise InvalidValue(
            f"An event id is a whole number, got '{text[:40]}'", field="after"
        )
    return int(text)


def _server_closing(send: Any) -> Any:
    """Return a probe telling whether uvicorn began a graceful shutdown.

    uvicorn's HTTP protocols set `keep_alive = False` on the request cycle (whose
    bound `send` the app receives) when the server shuts down. This is read only
    when the cycle started with keep-alive on, so a client's own
    `Connection: close` is not mistaken for a shutdown.
    """
    cycle = getattr(send, "__self__", None)
    if getattr(cycle, "keep_alive", None) is not True:
        return lambda: False
    return lambda: getattr(cycle, "keep_alive", True) is False


async def events(request: Request) -> Response:
    from reeve_cli.api import api_context

    ctx = api_context(request)
    check_query(request, EVENTS_QUERY)
    start = _start_id(request)
    limit = query_int(request, "limit", 0, 0, 100_000)
    timeout = query_int(request, "timeout", 0, 0, 86_400)
    if start is None:
        start = await ctx.run(_latest_id, ctx.db)
    closing = _server_closing(request.scope.get("reeve.server_send"))

    stream = _stream(ctx, start, limit, timeout, closing)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)


async def _stream(
    ctx: ApiContext, after: int, limit: int, timeout: int, closing: Any
) -> AsyncIterator[str]:
    """Yield events after `after`; stop at `limit` events or `timeout` seconds."""
    deadline = time.monotonic() + timeout if timeout else None
    sent = 0
    last_write = time.monotonic()
    yield f"retry: {RETRY_MS}\n\n"

    while not ctx.closing.is_set() and not closing():
        changed = ctx.changed
        batch = await ctx.run(_events_after, ctx.db, after, BATCH)
        for event in batch:
            yield format_event(event)
            after = event["id"]
            sent += 1
            last_write = time.monotonic()
            if limit and sent >= limit:
                return
        if len(batch) == BATCH:
            continue

        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return
        if now - last_write >= KEEPALIVE_INTERVAL:
            yield ": keep-alive\n\n"
            last_write = now
        wait = POLL_INTERVAL if deadline is None else min(POLL_INTERVAL, deadline - now)
        try:
            await asyncio.wait_for(changed.wait(), timeout=max(wait, 0.0))
        except TimeoutError:
            pass
