"""Start and stop a real `reeve daemon` subprocess in tests.

    from tests.daemon_helpers import start_daemon, wait_for

    def test_something(tmp_path):
        daemon = start_daemon({"REEVE_MAX_CONCURRENT": "2"})
        try:
            ...  # daemon.api_url, daemon.api_token, daemon.pid
        finally:
            daemon.stop()

The daemon inherits the test's environment (the autouse `reeve_env` fixture
gives it a private REEVE_DATA_DIR, REEVE_CONFIG and zone), runs the fake agent
(`tests/fake_agent.py`) through REEVE_AGENT_COMMAND, binds its API to
127.0.0.1 on an ephemeral port, and uses short timeouts. `start_daemon` returns
once `daemon.json` names the new process, i.e. once the daemon is ready.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FAKE_AGENT = ROOT / "tests" / "fake_agent.py"
START_TIMEOUT = 30.0

# Defaults that keep daemon tests quick; any of them can be overridden.
FAST_ENV = {
    "REEVE_API_HOST": "127.0.0.1",
    "REEVE_API_PORT": "0",
    "REEVE_RETRY_BACKOFF": "0.3",
    "REEVE_STOP_GRACE": "5",
    "REEVE_PULSE_TIMEOUT": "60",
    "REEVE_STALL_TIMEOUT": "0",
    "REEVE_LOG_LEVEL": "INFO",
    "REEVE_EXECUTOR": "claude",
}


def reeve_command() -> list[str]:
    candidate = Path(sys.executable).with_name("reeve")
    if candidate.exists():
        return [str(candidate)]
    return [sys.executable, "-m", "reeve_cli"]


def wait_for(
    predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.02
) -> Any:
    """Poll `predicate` until it returns something truthy; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


class DaemonHandle:
    """A running daemon subprocess and what tests need to talk to it."""

    def __init__(self, proc: subprocess.Popen[bytes], env: dict[str, str], log: Path):
        self.proc = proc
        self.env = env
        self.log_path = log
        self.data_dir = Path(env["REEVE_DATA_DIR"])
        self.info: dict[str, Any] = {}

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def api_url(self) -> str | None:
        return self.info.get("api_url")

    @property
    def api_token(self) -> str | None:
        if self.env.get("REEVE_API_TOKEN"):
            return self.env["REEVE_API_TOKEN"]
        path = self.data_dir / "api_token"
        return path.read_text().strip() if path.exists() else None

    def log(self) -> str:
        """Everything the daemon wrote to stderr so far."""
        return self.log_path.read_text(errors="replace")

    def _wait_ready(self, timeout: float) -> None:
        info_file = self.data_dir / "daemon.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"daemon exited with {self.proc.returncode}:\n{self.log()}"
                )
            try:
                info = json.loads(info_file.read_text())
            except (OSError, ValueError):
                info = {}
            if info.get("pid") == self.proc.pid:
                self.info = info
                return
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"daemon not ready within {timeout}s:\n{self.log()}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait for the exit, return the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"daemon ignored SIGTERM:\n{self.log()}") from None
        return self.proc.returncode

    def kill(self) -> int:
        """SIGKILL (a crash): nothing in the daemon runs afterwards."""
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait()

    def __enter__(self) -> DaemonHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.stop()


def daemon_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(FAST_ENV)
    env.setdefault("REEVE_AGENT_COMMAND", f"{sys.executable} {FAKE_AGENT}")
    env.update(extra or {})
    return env


def start_daemon(
    env: dict[str, str] | None = None,
    *,
    wait: bool = True,
    timeout: float = START_TIMEOUT,
    args: list[str] | None = None,
) -> DaemonHandle:
    """Start `reeve daemon` with the test environment plus `env`.

    Args:
        env: extra or overriding environment variables (REEVE_*, FAKE_AGENT_LOG).
        wait: return only when the daemon is ready (daemon.json written).
    """
    full = daemon_env(env)
    data_dir = Path(full["REEVE_DATA_DIR"])
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir.parent / f"daemon-{time.monotonic_ns()}.log"
    with open(log, "wb") as stderr:
        proc = subprocess.Popen(
            [*reeve_command(), "daemon", *(args or [])],
            env=full,
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
        )
    handle = DaemonHandle(proc, full, log)
    if wait:
        handle._wait_ready(timeout)
    return handle


def read_agent_log(path: Path) -> list[dict[str, Any]]:
    """The runs the fake agent recorded in $FAKE_AGENT_LOG, in order."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]
