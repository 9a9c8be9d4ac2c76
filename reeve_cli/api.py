"""The HTTP API: a Starlette app the daemon serves with uvicorn in its own loop.

Routes are thin adapters over `store`, `schedule` and `status`; they return the
same `to_dict()` shapes as `--json` and MCP. Every route but `/api/health` needs
the bearer token. Creates are written on the event loop, batched per turn of the
loop, on a connection that never waits for SQLite's lock (`ApiContext.write`);
other database work, and a create that finds the lock taken, runs on one worker
thread, so a write waiting for the lock never stalls the daemon's scheduler.
After each write the daemon's runtime is woken, so it sees the change at once.

The endpoints are described in `docs/http-api.md` and `GET /openapi.json`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
import socket
import sqlite3
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from typing import Any, Protocol, TypeVar

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reeve_cli import store
from reeve_cli.api_input import (
    MAX_TIME_TEXT,
    check_query,
    decode_cursor,
    encode_cursor,
    parse_pulse_id,
    query_int,
    query_str,
    read_json,
    reject_unknown,
    take_bool,
    take_int,
    take_str,
    take_str_list,
)
from reeve_cli.api_token import ensure_api_token as ensure_api_token
from reeve_cli.api_token import read_api_token as read_api_token
from reeve_cli.config import Settings
from reeve_cli.db import Connection, Database
from reeve_cli.errors import DatabaseError, InvalidTime, InvalidValue, ReeveError
from reeve_cli.model import Priority, Pulse, Status, utcnow

logger = logging.getLogger(__name__)

T = TypeVar("T")

OPEN_PATHS = frozenset({"/api/health"})
# Bad tokens one client address may send per window before it gets 429.
BAD_TOKEN_LIMIT = 10
BAD_TOKEN_WINDOW = 60.0  # seconds
MAX_LIST_LIMIT = 1000
# Seconds between two wakes of the daemon during a burst of writes.
WAKE_INTERVAL = 0.02
# Writes on the event loop between two WAL checkpoints on the worker thread (a
# create adds ~8 pages to the log; SQLite's own default is every 1,000 pages).
CHECKPOINT_EVERY = 100


class Runtime(Protocol):
    """What the daemon hands to the app (see CONTRACTS.md)."""

    def wake(self) -> None: ...

    def health(self) -> dict[str, Any]: ...

    async def run_schedule(self, name: str) -> Pulse | None: ...


class Unauthorized(ReeveError):
    http_status = 401
    code = "unauthorized"

    def __init__(self) -> None:
        super().__init__(
            "Missing or wrong bearer token; send 'Authorization: Bearer <token>' "
            "(the token is printed by 'reeve api token')"
        )


class RateLimited(ReeveError):
    http_status = 429
    code = "rate_limited"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Too many requests with a wrong token from this address; "
            f"retry in {retry_after} s with the right token"
        )
        self.retry_after = retry_after


class _Retry(Exception):
    """A batched write could not run on the loop; run it alone on the thread."""


class _Rollback(Exception):
    """Roll back a batch of one whose write was refused."""


# Context shared by the handlers --------------------------------------------


class ApiContext:
    """Settings, database, runtime and the worker thread the routes share."""

    def __init__(
        self, settings: Settings, db: Database, runtime: Runtime | None
    ) -> None:
        self.settings = settings
        self.db = db
        self.runtime = runtime
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="reeve-api-db")
        # For short writes on the event loop itself: a SQLite handle that never
        # waits for the write lock (see `write`). None for other databases.
        self.loop_db = Database(db.url, busy_timeout=0) if db.is_sqlite else None
        self._loop_db_ready = False
        # Writes waiting for the next turn of the loop (see `write`).
        self._batch: list[tuple[Callable[[Connection], Any], asyncio.Future[Any]]] = []
        # Writes on the loop since the last WAL checkpoint was started.
        self._unchecked_writes = 0
        self._checkpointing = False
        # Set when the app stops: open event streams end.
        self.closing = asyncio.Event()
        # Set after every write through this app: event streams look at once.
        self.changed = asyncio.Event()
        self._wake_handle: asyncio.TimerHandle | None = None
        self._last_wake = float("-inf")

    async def run(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking work (SQLite, time parsing) on the database thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, partial(func, *args, **kwargs))

    async def write(
        self,
        in_transaction: Callable[[Connection], T],
        alone: Callable[[Database], T],
        on_loop: bool = True,
    ) -> T:
        """Write on the event loop when SQLite's lock is free, else on the thread.

        A create is ~0.3 ms of work; handing it to the worker thread costs about
        as much again (future, thread wake-up, GIL hand-over) and makes the loop
        wait for the GIL behind it. So `in_transaction(conn)` runs here, in a
        write transaction shared with the other writes that arrived in the same
        turn of the loop (one commit for all, each in its own savepoint), on a
        connection with a busy timeout of 0: if another process holds the lock,
        SQLite refuses at once, the transaction is rolled back, and `alone(db)`
        is run on the worker thread instead, which may wait the full busy
        timeout without stalling the daemon. Both must be safe to run after a
        rolled-back attempt.
        """
        if not on_loop or self.loop_db is None:
            return await self.run(alone, self.db)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._batch.append((in_transaction, future))
        if len(self._batch) == 1:
            loop.call_soon(self._flush)
        try:
            return await future  # type: ignore[no-any-return]
        except _Retry:
            return await self.run(alone, self.db)

    def _flush(self) -> None:
        """Run the queued writes in one transaction on the loop's connection."""
        batch, self._batch = self._batch, []
        batch = [(func, future) for func, future in batch if not future.cancelled()]
        if not batch:
            return
        assert self.loop_db is not None
        done: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            if not self._loop_db_ready:
                self._prepare_loop_db(self.loop_db)
            with self.loop_db.transaction(write=True) as conn:
                if len(batch) == 1:
                    func, future = batch[0]
                    try:
                        done.append((future, func(conn), None))
                    except DatabaseError:
                        raise
                    except ReeveError as exc:
                        done.append((future, None, exc))
                        raise _Rollback() from None
                else:
                    for func, future in batch:
                        conn.execute("SAVEPOINT api_write")
                        try:
                            done.append((future, func(conn), None))
                        except DatabaseError:
                            raise
                        except ReeveError as exc:
                            conn.execute("ROLLBACK TO api_write")
                            done.append((future, None, exc))
                        conn.execute("RELEASE api_write")
        except _Rollback:
            pass
        except Exception as exc:
            # Busy (another process writes), or the database failed: each write
            # is tried again alone on the worker thread, which reports errors.
            if not isinstance(exc, DatabaseError | sqlite3.OperationalError):
                logger.warning("API batch write failed (%s); retrying each alone", exc)
            for _, future in batch:
                if not future.done():
                    future.set_exception(_Retry())
            return
        for future, result, error in done:
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
        self._unchecked_writes += len(batch)
        if self._unchecked_writes >= CHECKPOINT_EVERY:
            self._start_checkpoint()

    def _prepare_loop_db(self, loop_db: Database) -> None:
        """Keep WAL checkpoints (and their fsync) off the event loop.

        With SQLite's default, the commit that pushes the write-ahead log past
        1,000 pages copies it into the database and syncs the file, ~10 ms every
        ~120 creates, on the loop. The loop's connection never checkpoints; the
        worker thread runs a passive checkpoint every `CHECKPOINT_EVERY` writes.
        """
        with loop_db.transaction() as conn:
            conn.execute("PRAGMA wal_autocheckpoint=0")
        self._loop_db_ready = True

    def _start_checkpoint(self) -> None:
        if self._checkpointing:
            return
        try:
            future = self.executor.submit(self._checkpoint)
        except RuntimeError:  # the app is stopping; SQLite checkpoints on close
            return
        self._checkpointing = True
        self._unchecked_writes = 0
        future.add_done_callback(self._checkpoint_done)

    def _checkpoint(self) -> None:
        """Copy the write-ahead log into the database (worker thread)."""
        assert self.db.path is not None
        try:
            conn = sqlite3.connect(self.db.path, timeout=self.db.busy_timeout)
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            finally:
                conn.close()
        except sqlite3.Error as exc:
            logger.warning("WAL checkpoint after API writes failed: %s", exc)

    def _checkpoint_done(self, future: Any) -> None:
        self._checkpointing = False

    def wrote(self) -> None:
        """Tell the daemon and the event streams that rows changed.

        The daemon is woken at once after a quiet spell, and at most once per
        `WAKE_INTERVAL` during a burst (the last write of a burst always gets a
        wake), because each wake re-reads the queue on the daemon's loop.
        """
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()
        if self.runtime is None or self._wake_handle is not None:
            return
        loop = asyncio.get_running_loop()
        delay = self._last_wake + WAKE_INTERVAL - loop.time()
        if delay <= 0:
            self._wake()
        else:
            self._wake_handle = loop.call_later(delay, self._wake)

    def _wake(self) -> None:
        self._wake_handle = None
        self._last_wake = asyncio.get_running_loop().time()
        assert self.runtime is not None
        try:
            self.runtime.wake()
        except Exception:
            logger.exception("Daemon runtime failed to wake after an API write")

    def parse_time(self, text: str, field: str, allow_past: bool = False) -> datetime:
        from reeve_cli.timefmt import parse_when

        if len(text) > MAX_TIME_TEXT:
            raise InvalidTime(
                f"Field '{field}' is longer than {MAX_TIME_TEXT} characters",
                field=field,
            )
        try:
            return parse_when(
                text, self.settings.zone, allow_past=allow_past, field=field
            )
        except InvalidTime as exc:
            message = exc.message.replace("--allow-past", '"allow_past": true')
            raise InvalidTime(message, field=field) from None
        except Exception:  # the natural-language parser's own failures
            raise InvalidTime(
                f"Cannot read time '{text}'; see docs/http-api.md for the forms",
                field=field,
            ) from None


def api_context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.reeve
    return context


def error_response(exc: ReeveError) -> JSONResponse:
    headers = {}
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    return JSONResponse({"error": exc.to_dict()}, exc.http_status, headers=headers)


async def _handle(handler: Callable[[Request], Any], request: Request) -> Response:
    """Run a route handler as the router would, answering a ReeveError with JSON."""
    try:
        response: Response = await handler(request)
    except ReeveError as exc:
        return error_response(exc)
    return response


def _internal_error() -> JSONResponse:
    body = {
        "code": "internal",
        "message": "Internal error; the daemon log has the details",
        "field": None,
    }
    return JSONResponse({"error": body}, 500)


# Middleware: auth, rate limit, catch-all -------------------------------------


class Guard:
    """Check the bearer token, throttle bad ones, and turn crashes into JSON.

    Pure ASGI (no BaseHTTPMiddleware), so streaming responses are not buffered.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = token.encode()
        self.failures: dict[str, deque[float]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        if scope["path"] not in OPEN_PATHS:
            problem = self._check(scope)
            if problem is not None:
                await error_response(problem)(scope, receive, send)
                return

        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            if scope["path"] == "/api/pulses" and scope["method"] == "POST":
                # The busiest route, straight to its handler: Starlette's
                # router and exception middleware cost ~5 % of a create.
                response = await _handle(pulse_create, Request(scope, receive))
                await response(scope, receive, tracked_send)
            else:
                await self.app(scope, receive, tracked_send)
        except Exception:
            logger.exception("API request %s %s failed", scope["method"], scope["path"])
            if not started:
                await _internal_error()(scope, receive, send)

    def _check(self, scope: Scope) -> ReeveError | None:
        client = scope.get("client")
        address = client[0] if client else "unknown"
        now = time.monotonic()
        recent = self.failures.get(address)
        if recent is not None:
            while recent and recent[0] <= now - BAD_TOKEN_WINDOW:
                recent.popleft()
            if len(recent) >= BAD_TOKEN_LIMIT:
                wait = recent[0] + BAD_TOKEN_WINDOW - now
                return RateLimited(max(1, int(wait + 0.999)))

        given = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                given = value
                break
        scheme, _, credential = given.partition(b" ")
        if scheme.lower() != b"bearer" or not credential.strip():
            return Unauthorized()
        if hmac.compare_digest(credential.strip(), self.expected):
            return None

        if len(self.failures) > 10_000:  # a flood of addresses: forget the old
            self.failures.clear()
        self.failures.setdefault(address, deque()).append(now)
        logger.warning("API request with a wrong token from %s", address)
        return Unauthorized()


# Pulses ------------------------------------------------------------------------

PULSE_CREATE_FIELDS = frozenset(
    {
        "prompt",
        "at",
        "scheduled_at",
        "allow_past",
        "priority",
        "session_id",
        "sticky_notes",
        "tags",
        "max_retries",
        "executor",
        "source",
        "idempotency_key",
    }
)
PULSE_PATCH_FIELDS = frozenset(
    {
        "at",
        "scheduled_at",
        "allow_past",
        "priority",
        "sticky_notes",
        "add_notes",
        "tags",
        "prompt",
    }
)
LIST_QUERY = frozenset(
    {"status", "tag", "priority", "since", "until", "limit", "cursor", "order"}
)


def _time_field(data: dict[str, Any]) -> tuple[str | None, str]:
    at = take_str(data, "at")
    scheduled = take_str(data, "scheduled_at")
    if at is not None and scheduled is not None:
        raise InvalidValue(
            "Give either 'at' or 'scheduled_at', not both", field="scheduled_at"
        )
    if scheduled is not None:
        return scheduled, "scheduled_at"
    return at, "at"


def _idempotency_key(request: Request, data: dict[str, Any]) -> str | None:
    header = request.headers.get("idempotency-key")
    field = take_str(data, "idempotency_key", nullable=True)
    if header is not None and field is not None and header != field:
        raise InvalidValue(
            "The Idempotency-Key header and the 'idempotency_key' field differ; "
            "give one of them",
            field="idempotency_key",
        )
    key = header if header is not None else field
    if key is not None and (not key.strip() or len(key) > store.MAX_KEY_LENGTH):
        raise InvalidValue(
            f"An idempotency key is 1 to {store.MAX_KEY_LENGTH} characters",
            field="idempotency_key",
        )
    return key.strip() if key is not None else None


def _check_items(items: list[str], name: str, limit: int) -> None:
    for item in items:
        if not item.strip() or len(item) > limit:
            raise InvalidValue(
                f"Each item of '{name}' is 1 to {limit} characters", field=name
            )


def _find_by_key(db: Database, key: str) -> Pulse | None:
    with db.transaction() as conn:
        rows = conn.execute(
            "SELECT * FROM pulses WHERE idempotency_key = :key", {"key": key}
        )
    return Pulse.from_row(rows[0]) if rows else None


# The time forms `timefmt.parse_when` reads with its own few regular expressions
# (see `timefmt._parse`): 'now', 'tonight', epoch seconds, 'in 20m' / '+1d' /
# '2 hours', 'at 18:30' / '9am', and ISO dates. Any other text goes to dateparser
# (an import of ~0.3 s the first time, milliseconds per phrase), so a create
# with such a time is done on the worker thread, not on the event loop.
_QUICK_TIME = re.compile(
    r"^(?:now|tonight|@?\d{9,11}(?:\.\d+)?"
    r"|(?:in\s+|\+\s*)?(?:\d+(?:\.\d+)?\s*[a-z]+\s*,?\s*(?:and\s+)?)+"
    r"|(?:at\s+)?\d{1,2}(?::\d{2})?(?::\d{2})?\s*(?:am|pm|a\.m\.|p\.m\.)?"
    r"|\d{4}-\d\d-\d\d.*)$"
)


def quick_time(text: str | None) -> bool:
    """True if `text` (None: 'now') is read without the natural-language parser."""
    if text is None:
        return True
    return _QUICK_TIME.match(" ".join(text.strip().lower().split())) is not None


def _json_response(
    text: str, status: int, headers: dict[str, str] | None = None
) -> Response:
    """Answer with JSON text already rendered (as `JSONResponse` renders it)."""
    return Response(text.encode(), status, headers, media_type="application/json")


async def pulse_create(request: Request) -> Response:
    ctx = api_context(request)
    check_query(request, ())
    data = await read_json(request)
    reject_unknown(data, PULSE_CREATE_FIELDS)
    key = _idempotency_key(request, data)
    prompt = take_str(data, "prompt")
    when_text, when_field = _time_field(data)
    allow_past = bool(take_bool(data, "allow_past"))
    priority = take_str(data, "priority")
    session_id = take_str(data, "session_id", nullable=True)
    notes = take_str_list(data, "sticky_notes") or []
    tags = take_str_list(data, "tags") or []
    max_retries = take_int(data, "max_retries")
    executor = take_str(data, "executor", nullable=True, max_length=64)
    source = take_str(data, "source", max_length=store.MAX_SOURCE_LENGTH)
    if prompt is None:
        raise InvalidValue("Field 'prompt' is required", field="prompt")
    if source is not None and not source.strip():
        raise InvalidValue("Field 'source' cannot be empty", field="source")
    if executor is not None and not executor.strip():
        raise InvalidValue("Field 'executor' cannot be empty", field="executor")
    # A repeat must be as valid as the first request; only a time that has
    # passed since then is no reason to refuse it. So everything but the time is
    # checked before the key is looked up.
    store.check_prompt(prompt, ctx.settings.max_prompt_bytes)
    Priority.parse(priority or "normal")
    _check_items(notes, "sticky_notes", store.MAX_NOTE_LENGTH)
    _check_items(tags, "tags", store.MAX_TAG_LENGTH)
    if session_id is not None and not session_id.strip():
        raise InvalidValue("Field 'session_id' cannot be empty", field="session_id")
    if max_retries is not None and not 0 <= max_retries <= 100:
        raise InvalidValue(
            f"max_retries must be between 0 and 100, got {max_retries}",
            field="max_retries",
        )

    new = store.NewPulse(
        prompt=prompt,
        scheduled_at=utcnow(),  # replaced below, once the time is read
        priority=priority or "normal",
        session_id=session_id,
        sticky_notes=notes,
        tags=tags,
        source=source or "api",
        max_retries=ctx.settings.max_retries if max_retries is None else max_retries,
        idempotency_key=key,
        executor=executor,
        max_prompt_bytes=ctx.settings.max_prompt_bytes,
    )

    def read_time() -> datetime:
        # Read once, leniently: a replay must have a readable time, but one that
        # has passed since the first request is no reason to refuse it.
        return ctx.parse_time(when_text or "now", when_field, allow_past=True)

    def check_not_past(when: datetime) -> None:
        from reeve_cli.timefmt import PAST_TOLERANCE

        if not allow_past and when < utcnow() - PAST_TOLERANCE:
            # Read again strictly, for the error that names the time.
            ctx.parse_time(when_text or "now", when_field, allow_past=False)

    def create_in(conn: Connection) -> tuple[Pulse, bool, str]:
        when = read_time()
        existing = store.pulse_by_key(conn, key) if key is not None else None
        if existing is not None:
            return existing, False, ""
        check_not_past(when)
        new.set_time(when)
        return store.insert_pulse(conn, new)

    def create_alone(db: Database) -> tuple[Pulse, bool, str]:
        when = read_time()
        if key is not None and (existing := _find_by_key(db, key)) is not None:
            return existing, False, ""
        check_not_past(when)
        new.set_time(when)
        return store.add_new_pulse(db, new)

    pulse, created, text = await ctx.write(
        create_in, create_alone, on_loop=quick_time(when_text)
    )
    if created:
        ctx.wrote()
        store.log_added(pulse)
        return _json_response(text, 201)
    return JSONResponse(pulse.to_dict(), 200, headers={"Idempotent-Replayed": "true"})


async def pulse_list(request: Request) -> Response:
    ctx = api_context(request)
    check_query(request, LIST_QUERY)
    statuses: list[Status] | None = None
    raw_statuses = request.query_params.getlist("status")
    names = [s.strip() for text in raw_statuses for s in text.split(",")]
    if "" in names:
        raise InvalidValue(
            "Query parameter 'status' has an empty value; name a status or 'all'",
            field="status",
        )
    if names and "all" not in names:
        statuses = [Status.parse(name) for name in names]
    tag = query_str(request, "tag")
    priority = query_str(request, "priority")
    if priority is not None:
        priority = Priority.parse(priority).value
    since_text = query_str(request, "since")
    until_text = query_str(request, "until")
    limit = query_int(request, "limit", 100, 1, MAX_LIST_LIMIT)
    order = query_str(request, "order")
    order = "due" if order is None else order
    if order not in ("due", "newest"):
        raise InvalidValue(f"Unknown order '{order}'; use due or newest", field="order")
    after_id: int | None = None
    cursor = query_str(request, "cursor", max_length=500)
    if cursor is not None:
        position = decode_cursor(cursor)
        after_id = position.get("after")
        if position.get("order") != order or not isinstance(after_id, int):
            raise InvalidValue(
                "Query parameter 'cursor' belongs to another listing; "
                "repeat the same filters and order",
                field="cursor",
            )

    def fetch() -> list[Pulse]:
        since = until = None
        if since_text is not None:
            since = ctx.parse_time(since_text, "since", True)
        if until_text is not None:
            until = ctx.parse_time(until_text, "until", True)
        return store.list_pulses(
            ctx.db,
            statuses=statuses,
            tag=tag,
            priority=priority,
            since=since,
            until=until,
            limit=limit + 1,
            newest_first=order == "newest",
            after_id=after_id,
        )

    pulses = await ctx.run(fetch)
    next_cursor = None
    if len(pulses) > limit:
        pulses = pulses[:limit]
        next_cursor = encode_cursor({"order": order, "after": pulses[-1].id})
    return JSONResponse(
        {"pulses": [p.to_dict() for p in pulses], "next_cursor": next_cursor}
    )


async def pulse_get(request: Request) -> Response:
    ctx = api_context(request)
    check_query(request, ())
    pulse_id = parse_pulse_id(request.path_params["pulse_id"])
    pulse = await ctx.run(store.get_pulse, ctx.db, pulse_id)
    return JSONResponse(pulse.to_dict())


async def pulse_patch(request: Request) -> Response:
    ctx = api_context(request)
    check_query(request, ())
    pulse_id = parse_pulse_id(request.path_params["pulse_id"])
    data = await read_json(request)
    reject_unknown(data, PULSE_PATCH_FIELDS)
    when_text, when_field = _time_field(data)
    allow_past = bool(take_bool(data, "allow_past"))
    priority = take_str(data, "priority")
    notes = take_str_list(data, "sticky_notes")
    add_notes = take_str_list(data, "add_notes") or []
    tags = take_str_list(data, "tags")
    prompt = take_str(data, "prompt")

    def change() -> Pulse:
        when = None
        if when_text is not None:
            when = ctx.parse_time(when_text, when_field, allow_past)
        if prompt is not None:
            store.check_prompt(prompt, ctx.settings.max_prompt_bytes)
        return store.update_pulse(
            ctx.db,
            pulse_id,
            scheduled_at=when,
            priority=priority,
            sticky_notes=notes,
            add_notes=add_notes,
            prompt=prompt,
            tags=tags,
            max_prompt_bytes=ctx.settings.max_prompt_bytes,
        )

    pulse = await ctx.run(change)
    ctx.wrote()
    return JSONResponse(pulse.to_dict())


async def pulse_cancel(request: Request) -> Response:
    ctx = api_context(request)
    check_query(request, ())
    pulse_id = parse_pulse_id(request.path_params["pulse_id"])
    pulse = await ctx.run(store.cancel_pulse, ctx.db, pulse_id)
    ctx.wrote()
    return JSONResponse(pulse.to_dict())


async def pulse_run(request: Request) -> Response:
    ctx = api_context(request)
    check_query(request, ())
    pulse_id = parse_pulse_id(request.path_params["pulse_id"])

    def run_now() -> Pulse:
        current = store.get_pulse(ctx.db, pulse_id)
        if current.status is Status.PENDING and current.scheduled_at <= utcnow():
            return current  # already due; the daemon picks it up
        return store.reschedule_pulse(ctx.db, pulse_id, utcnow())

    pulse = await ctx.run(run_now)
    ctx.wrote()
    return JSONResponse(pulse.to_dict())


# Health and status -------------------------------------------------------------


def _database_ok(db: Database) -> bool:
    try:
        with db.transaction() as conn:
            conn.execute("SELECT 1")
    except Exception:
        return False
    return True


async def health(request: Request) -> Response:
    ctx = api_context(request)
    if ctx.runtime is not None:
        try:
            state = dict(ctx.runtime.health())
        except Exception:
            logger.exception("Daemon runtime health check failed")
            state = {"database": "error", "scheduler": "error"}
        healthy = state.get("database") == "ok" and state.get("scheduler") in (
            "running",
            "ok",
        )
    else:
        database = await ctx.run(_database_ok, ctx.db)
        state = {"database": "ok" if database else "error", "scheduler": "absent"}
        healthy = database
    body = {"status": "ok" if healthy else "error", **state}
    return JSONResponse(body, 200 if healthy else 503)


async def status(request: Request) -> Response:
    from reeve_cli.status import collect_status

    ctx = api_context(request)
    check_query(request, ())
    result = await ctx.run(collect_status, ctx.settings, ctx.db)
    return JSONResponse(result)


async def openapi(request: Request) -> Response:
    from reeve_cli.api_openapi import openapi_schema

    check_query(request, ())
    return JSONResponse(openapi_schema())


# The app -------------------------------------------------------------------------


async def _reeve_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ReeveError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    message = {
        404: f"No endpoint at '{request.url.path}'; see GET /openapi.json",
        405: f"Method {request.method} is not allowed on '{request.url.path}'",
    }.get(exc.status_code, str(exc.detail))
    body = {
        "code": codes.get(exc.status_code, "http_error"),
        "message": message,
        "field": None,
    }
    return JSONResponse({"error": body}, exc.status_code, headers=exc.headers)


def routes() -> list[Route]:
    from reeve_cli import api_events, api_metrics, api_schedules

    return [
        # Matched in order: the busiest routes first.
        Route("/api/health", health, methods=["GET"]),
        Route("/api/pulses", pulse_create, methods=["POST"]),
        Route("/api/pulses", pulse_list, methods=["GET"]),
        Route("/api/status", status, methods=["GET"]),
        Route("/api/pulses/{pulse_id}", pulse_get, methods=["GET"]),
        Route("/api/pulses/{pulse_id}", pulse_patch, methods=["PATCH"]),
        Route("/api/pulses/{pulse_id}", pulse_cancel, methods=["DELETE"]),
        Route("/api/pulses/{pulse_id}/run", pulse_run, methods=["POST"]),
        *api_schedules.schedule_routes(),
        Route("/api/events", api_events.events, methods=["GET"]),
        Route("/metrics", api_metrics.metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]


class ReeveApp(Starlette):
    """Starlette, plus the server's own `send` kept in the scope for event streams,
    and one TCP segment per response.

    Middleware wraps `send`; the event stream needs the server's to notice a
    graceful shutdown (see `api_events`).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        scope["reeve.server_send"] = send
        sock = _tcp_socket(send)
        if sock is None:
            await super().__call__(scope, receive, send)
            return
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if _TCP_CORK is None:
            await super().__call__(scope, receive, send)
            return

        corked = False

        async def coalescing_send(message: Message) -> None:
            # uvicorn writes the status line and headers, then the body, with
            # two send() calls; on loopback each is a segment the kernel carries
            # to the client in the sender's time. Corked, they leave as one.
            nonlocal corked
            if message["type"] == "http.response.start":
                corked = _cork(sock, True)
                await send(message)
                return
            try:
                await send(message)
            finally:
                if corked:
                    corked = _cork(sock, False)

        try:
            await super().__call__(scope, receive, coalescing_send)
        finally:
            if corked:
                _cork(sock, False)


_TCP_CORK: int | None = getattr(socket, "TCP_CORK", None)  # Linux only


def _cork(sock: Any, on: bool) -> bool:
    """Set TCP_CORK; return whether the socket is now corked."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, _TCP_CORK, 1 if on else 0)
    except OSError:
        return False
    return on


def _tcp_socket(send: Send) -> Any:
    """Return the TCP socket behind uvicorn's `send`, or None.

    TCP_NODELAY is set on it for every request: asyncio sets it only on sockets
    created with proto IPPROTO_TCP; a listening socket made with
    `socket.socket(AF_INET, SOCK_STREAM)` and handed to uvicorn yields connections
    without it, and every keep-alive response then waits ~40 ms for a delayed ACK
    (91 instead of 2,000 req/s, docs/performance.md). One setsockopt per request
    is cheaper than finding out.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        return None
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    return sock


def close_streams(app: Starlette) -> None:
    """End open event streams now (the daemon calls this before stopping uvicorn).

    uvicorn waits for open responses before it stops, so streams must end first.
    """
    context: ApiContext = app.state.reeve
    context.closing.set()


def create_app(
    settings: Settings, db: Database, runtime: Runtime | None = None
) -> Starlette:
    """Build the API app for this database; the daemon serves it with uvicorn.

    Args:
        runtime: the running daemon (woken after writes, asked for health and to
            fire schedules); None outside the daemon.
    """
    token = ensure_api_token(settings)
    context = ApiContext(settings, db, runtime)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        context.closing = asyncio.Event()
        context.changed = asyncio.Event()
        context.executor = ThreadPoolExecutor(1, thread_name_prefix="reeve-api-db")
        try:
            yield
        finally:
            context.closing.set()
            if context._wake_handle is not None:
                context._wake_handle.cancel()
                context._wake_handle = None
            context.executor.shutdown(wait=False)
            if context.loop_db is not None:
                context.loop_db.close()
                context._loop_db_ready = False

    app = ReeveApp(
        routes=routes(),
        middleware=[Middleware(Guard, token=token)],
        exception_handlers={ReeveError: _reeve_error, HTTPException: _http_error},
        lifespan=lifespan,
    )
    app.state.reeve = context
    return app
