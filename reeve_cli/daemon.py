"""The daemon's life: single-instance lock, start order, signals, shutdown.

Start order (docs/daemon.md): take the lock on `<data_dir>/daemon.lock`, open
and migrate the database, settle pulses a dead daemon left running, start
APScheduler and the dispatcher, start the HTTP API, write `daemon.json`, then
tell systemd READY=1. SIGTERM and SIGINT stop claiming, give running attempts
`stop_grace` seconds, stop the rest (their pulses go back to pending) and exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reeve_cli import status as status_mod
from reeve_cli import store, systemd
from reeve_cli.errors import ReeveError, StartupError
from reeve_cli.model import Pulse, iso_utc, utcnow

if TYPE_CHECKING:
    from reeve_cli.config import Settings
    from reeve_cli.db import Database
    from reeve_cli.dispatch import Dispatcher
    from reeve_cli.executor import Executor
    from reeve_cli.scheduler import PulseClock

logger = logging.getLogger(__name__)

RUNNING_KEY = "daemon.running"
LOCK_WAIT_S = 1.0
STATUS_EVERY_S = 2.0
LOG_PRUNE_EVERY_S = 6 * 3600.0
CHECKPOINT_EVERY_S = 1.0


class DaemonLock:
    """An exclusive flock on `<data_dir>/daemon.lock`, held for the daemon's life."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self, started_at: str) -> None:
        """Take the lock or raise StartupError naming the daemon that holds it."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        # A status probe holds the lock for an instant; wait that out.
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise StartupError(self._owner_message()) from None
                time.sleep(0.05)
        owner = {"pid": os.getpid(), "host": socket.gethostname()}
        owner["started_at"] = started_at
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(owner) + "\n").encode(), 0)
        self.fd = fd

    def _owner_message(self) -> str:
        try:
            owner = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            owner = {}
        pid = owner.get("pid", "unknown")
        host = owner.get("host", "unknown")
        return (
            f"Another Reeve daemon is running for this database (pid {pid} on host "
            f"{host}); stop it first, e.g. 'systemctl --user stop reeve-daemon'"
        )

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, 0)
            os.close(self.fd)
            self.fd = None


def is_loopback(host: str) -> bool:
    if host in {"localhost", "localhost.localdomain"}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    """Bind the API socket ourselves, so a taken port is a clear start-up error."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise StartupError(
            f"Cannot resolve API host '{host}': {exc.strerror}; set REEVE_API_HOST"
        ) from None
    family, _, _, _, address = infos[0]
    # proto IPPROTO_TCP (not 0): accepted sockets inherit it, and asyncio turns
    # Nagle's algorithm off only on TCP sockets it recognises as such; without
    # it every keep-alive response waits ~40 ms for a delayed ACK. The listener
    # gets TCP_NODELAY too, which Linux copies onto accepted connections.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise StartupError(
            f"Cannot listen on {host}:{port}: {reason.lower()}; stop the program "
            "using it, or set REEVE_API_PORT to a free port"
        ) from None
    sock.setblocking(False)
    return sock


def _api_module() -> Any:
    try:
        from reeve_cli import api
    except ImportError as exc:
        logger.warning("HTTP API not available (%s); running without it", exc)
        return None
    return api


def _send_alert(settings: Settings, db: Database, kind: str, message: str) -> None:
    try:
        from reeve_cli import notify
    except ImportError:
        logger.info("Alert not sent (no notifier module): %s", message)
        return
    try:
        notify.alert(settings, db, kind, message)
    except Exception:
        logger.exception("Alert %s could not be sent", kind)


class Daemon:
    """The running daemon: the Runtime the HTTP API talks to."""

    def __init__(
        self,
        settings: Settings,
        *,
        executor_for: Callable[[Pulse], Executor] | None = None,
        serve_api: bool = True,
    ) -> None:
        self.settings = settings
        self.executor_for = executor_for
        self.serve_api = serve_api
        self.started_at = utcnow()
        self.lock = DaemonLock(status_mod.lock_path(settings))
        self.db: Database | None = None
        self.dispatcher: Dispatcher | None = None
        self.clock: PulseClock | None = None
        self.api_url: str | None = None
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._last_status = 0.0
        self._kick_pending = False
        self._sync_pending = True
        self._rearm_pending = True
        self._retried_seen = 0
        self._server: Any = None
        self._app: Any = None

    # Runtime (what the API calls) -------------------------------------------

    def wake(self) -> None:
        """Re-read the rows now (called after any API write)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self.on_rows_changed()
        else:
            loop.call_soon_threadsafe(self.on_rows_changed)

    def health(self) -> dict[str, Any]:
        database = "ok"
        try:
            assert self.db is not None
            with self.db.transaction() as conn:
                conn.execute("SELECT 1")
        except Exception:
            database = "error"
        return {
            "database": database,
            "scheduler": "running" if self.clock and self.clock.running else "stopped",
            "dispatcher": "stopping" if self._stop.is_set() else "running",
            "running_pulses": len(self.dispatcher.running) if self.dispatcher else 0,
        }

    async def run_schedule(self, name: str) -> Pulse | None:
        """Fire a schedule now; None when skipped (its last pulse is active)."""
        from reeve_cli.schedule import fire_schedule_now

        assert self.db is not None
        pulse = fire_schedule_now(self.settings, self.db, name)
        self.wake()
        return pulse

    # ClockOwner --------------------------------------------------------------

    async def on_pulse_timer(self) -> None:
        assert self.clock is not None
        self.clock.timer_fired()
        self._rearm_pending = True
        self._kick()

    async def on_schedule_fire(self, name: str, fire_time: datetime) -> None:
        from reeve_cli.schedule import fire_schedule

        assert self.db is not None
        if self._stop.is_set():
            return
        try:
            fire_schedule(self.settings, self.db, name, fire_time)
        except ReeveError as exc:
            logger.warning("Schedule %s could not fire: %s", name, exc.message)
        self.on_rows_changed()

    def on_rows_changed(self) -> None:
        """Dispatch what is due, re-arm the pulse timer, mirror schedules.

        Calls within one turn of the event loop collapse into one pass, so a
        burst of finished attempts costs one claim transaction, not one each.
        """
        self._sync_pending = True
        self._rearm_pending = True
        self._kick()

    def _on_attempt_done(self) -> None:
        # Schedules did not change (a pause by the dispatcher reaches the
        # watcher like any other commit), so only dispatch; re-arm only if a
        # retry put a pulse back in the future (see _settle).
        self._kick()

    def _kick(self) -> None:
        if self._kick_pending or self._loop is None:
            return
        self._kick_pending = True
        self._loop.call_soon(self._react)

    def _react(self) -> None:
        self._kick_pending = False
        if self.dispatcher is None or self.clock is None or self._stop.is_set():
            return
        now = utcnow()
        try:
            self.dispatcher.dispatch(now)
        except Exception:
            logger.exception("Dispatch failed; the next change or wake-up retries")
        # Re-arm after the new attempts have started their agents: their tasks
        # were queued first, so the timer's bookkeeping never delays a start.
        assert self._loop is not None
        self._loop.call_soon(self._settle, now)

    def _settle(self, now: datetime) -> None:
        if self.clock is None or self._stop.is_set():
            return
        try:
            # Claims and plain outcomes never add a future pending pulse, so
            # the armed time stays right; other writers, the timer, retries
            # and a timer already in the past call for the MIN query again.
            retried = self.dispatcher.stats.retried if self.dispatcher else 0
            armed = self.clock.armed_for
            if (
                self._rearm_pending
                or retried != self._retried_seen
                or (armed is not None and armed <= now)
            ):
                self._rearm_pending = False
                self._retried_seen = retried
                self.clock.rearm(now)
            if self._sync_pending:
                self._sync_pending = False
                self.clock.sync_schedules()
            self._status_line()
        except Exception:
            logger.exception("Re-arming failed; the next change or wake-up retries")

    # Lifecycle ---------------------------------------------------------------

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT; return the exit status (0 after a clean stop)."""
        self._loop = asyncio.get_running_loop()
        self.lock.acquire(iso_utc(self.started_at) or "")
        try:
            return await self._run_locked()
        finally:
            with contextlib.suppress(OSError):
                status_mod.info_path(self.settings).unlink()
            self.lock.release()

    async def _run_locked(self) -> int:
        from reeve_cli.config import ensure_data_dir
        from reeve_cli.db import open_database
        from reeve_cli.dispatch import Dispatcher, recover
        from reeve_cli.scheduler import PulseClock

        settings = self.settings
        ensure_data_dir(settings)
        # A stop requested while starting is honoured once start-up is done.
        self._install_signals()
        api = _api_module() if self.serve_api else None
        sock = None
        if api is not None:
            if not is_loopback(str(settings.api_host)) and not settings.api_token:
                raise StartupError(
                    f"REEVE_API_HOST '{settings.api_host}' is not a loopback address; "
                    "set REEVE_API_TOKEN explicitly before exposing the API"
                )
            sock = _bind(str(settings.api_host), int(settings.api_port))
        try:
            self.db = db = open_database(settings.db_url, settings.busy_timeout)
        except ReeveError as exc:
            if sock is not None:
                sock.close()
            raise StartupError(exc.message) from None
        if db.path is None:
            raise StartupError(
                "The daemon needs a SQLite database file; REEVE_DATABASE_URL "
                f"'{settings.db_url}' is not one"
            )

        unclean = store.get_state(db, RUNNING_KEY) == "1"
        with db.transaction(write=True) as conn:
            store.set_state(conn, RUNNING_KEY, "1")
        recovered = recover(settings, db)
        if unclean:
            logger.warning(
                "Daemon restarted after an unclean stop; %d pulse(s) were left running",
                len(recovered),
            )
            self._alert(
                "daemon_restarted",
                "Reeve daemon restarted after an unclean stop (crash, kill or power "
                f"loss); {len(recovered)} running pulse(s) recovered",
            )
        self._spawn(self._prune_logs_forever())
        # The loop's own connection never checkpoints: an automatic checkpoint
        # runs inside COMMIT and syncs the file, which tripled the cost of a
        # claim or outcome commit. A worker thread checkpoints instead.
        with db.transaction() as conn:
            conn.execute("PRAGMA wal_autocheckpoint=0")
        self._spawn(self._checkpoint_forever(db.path))

        self.dispatcher = Dispatcher(
            settings,
            db,
            executor_for=self.executor_for,
            alert=self._alert,
            on_change=self._on_attempt_done,
        )
        self.clock = PulseClock(settings, db, self)
        self.clock.start()

        if api is not None and sock is not None:
            await self._start_api(api, sock)
        self._write_info()
        self.on_rows_changed()

        counts = store.count_by_status(db)
        nxt = store.next_due(db)
        logger.info(
            "Daemon ready: %d pending pulses, next at %s; API %s",
            counts["pending"],
            iso_utc(nxt.scheduled_at) if nxt else "none",
            self.api_url or "off",
        )
        systemd.sd_notify("READY=1\n" + self._status_text())
        self.ready.set()
        interval = systemd.watchdog_interval()
        if interval:
            self._spawn(self._watchdog(interval))

        await self._stop.wait()
        await self._shutdown()
        return 0

    async def _start_api(self, api: Any, sock: socket.socket) -> None:
        import uvicorn

        class DaemonServer(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Any:  # the daemon owns SIGTERM/SIGINT
                yield

        assert self.db is not None
        from reeve_cli.logs import add_secrets

        add_secrets([api.ensure_api_token(self.settings)])
        self._app = api.create_app(self.settings, self.db, self)
        config = uvicorn.Config(
            self._app,
            log_config=None,
            lifespan="on",
            timeout_graceful_shutdown=3,
            access_log=False,
        )
        self._server = server = DaemonServer(config)
        serve = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
        self._serve_task = serve
        while not server.started:
            if serve.done():
                try:
                    await serve
                except SystemExit:
                    pass
                raise StartupError("The HTTP API failed to start; see the log above")
            await asyncio.sleep(0.01)
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        self.api_url = f"http://{shown}:{port}"

    def _write_info(self) -> None:
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": iso_utc(self.started_at),
            "api_url": self.api_url,
        }
        path = status_mod.info_path(self.settings)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(info) + "\n")
        tmp.chmod(0o600)
        tmp.replace(path)

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)

    def request_stop(self) -> None:
        """Begin a graceful stop (signal handlers call this; it only sets a flag)."""
        self._stop.set()

    async def _shutdown(self) -> None:
        logger.info("Daemon stopping")
        systemd.sd_notify("STOPPING=1")
        assert self.dispatcher is not None and self.db is not None
        await self.dispatcher.stop(float(self.settings.stop_grace))
        if self.clock is not None:
            self.clock.shutdown()
        if self._server is not None:
            with contextlib.suppress(Exception):
                from reeve_cli import api

                api.close_streams(self._app)
            self._server.should_exit = True
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._serve_task, timeout=5)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        with self.db.transaction(write=True) as conn:
            store.set_state(conn, RUNNING_KEY, "0")
        logger.info("Daemon stopped cleanly")

    # Helpers -----------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _alert(self, kind: str, message: str) -> None:
        assert self.db is not None
        self._spawn(
            asyncio.to_thread(_send_alert, self.settings, self.db, kind, message)
        )

    async def _watchdog(self, interval: float) -> None:
        while True:
            systemd.sd_notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    def _status_text(self) -> str:
        assert self.db is not None and self.dispatcher is not None
        counts = store.count_by_status(self.db)
        armed = self.clock.armed_for if self.clock else None
        return (
            f"STATUS={len(self.dispatcher.running)} running, "
            f"{counts['pending']} pending, next at {iso_utc(armed) or 'none'}"
        )

    def _status_line(self) -> None:
        if not self.ready.is_set() or not os.environ.get("NOTIFY_SOCKET"):
            return
        now = time.monotonic()
        if now - self._last_status < STATUS_EVERY_S:
            return
        self._last_status = now
        systemd.sd_notify(self._status_text())

    async def _checkpoint_forever(self, path: Path) -> None:
        """Copy the WAL back into the database file every second, off the loop."""
        while True:
            await asyncio.sleep(CHECKPOINT_EVERY_S)
            # The thread owns its connection from open to close: a cancelled
            # wait here never closes a connection that is still in use.
            await asyncio.to_thread(checkpoint, path)

    async def _prune_logs_forever(self) -> None:
        while True:
            await asyncio.to_thread(prune_logs, self.settings)
            await asyncio.sleep(LOG_PRUNE_EVERY_S)


def checkpoint(path: Path) -> None:
    """Run one passive WAL checkpoint on a connection of its own."""
    import sqlite3

    try:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout={int(CHECKPOINT_EVERY_S * 1000)}")
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            conn.close()
    except sqlite3.Error as exc:
        logger.warning("WAL checkpoint failed: %s", exc)


def prune_logs(settings: Settings) -> int:
    """Delete attempt log files older than `log_retention`; return how many."""
    cutoff = time.time() - float(settings.log_retention)
    removed = 0
    logs = settings.logs_path
    if not logs.is_dir():
        return 0
    for path in logs.glob("*.log"):
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
    if removed:
        logger.info("Removed %d attempt log(s) older than the retention", removed)
    return removed


def run_daemon(settings: Settings) -> int:
    """Run the daemon in a fresh event loop; return its exit status."""
    daemon = Daemon(settings)
    return asyncio.run(daemon.run())
