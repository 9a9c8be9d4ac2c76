"""Builders shared by the executor tests: pulses, requests, the fake agent."""

import os
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from reeve_cli.config import load_settings
from reeve_cli.executor import AttemptRequest
from reeve_cli.model import Priority, Pulse, Status

FAKE_AGENT = Path(__file__).resolve().parent / "fake_agent.py"
FAKE_COMMAND = f"{sys.executable} {FAKE_AGENT}"


def make_pulse(**changes):
    moment = datetime(2026, 12, 3, 5, 45, tzinfo=UTC)
    pulse = Pulse(
        id=42,
        prompt="check the flight",
        scheduled_at=moment,
        priority=Priority.HIGH,
        status=Status.RUNNING,
        session_id=None,
        sticky_notes=[],
        tags=[],
        source="cli",
        created_at=moment,
        updated_at=moment,
        started_at=moment,
        finished_at=None,
        attempt=1,
        max_retries=2,
        error=None,
        idempotency_key=None,
        executor=None,
        schedule_name=None,
        exit_code=None,
        output_tail=None,
        result_session_id=None,
        result_text=None,
        cost_usd=None,
        duration_s=None,
        usage={},
        meta={},
    )
    return replace(pulse, **changes)


def make_request(tmp_path, prompt="hello", *, settings=None, **changes):
    settings = settings or load_settings()
    desk = tmp_path / "desk"
    desk.mkdir(exist_ok=True)
    values = dict(
        pulse=make_pulse(prompt=prompt),
        number=1,
        prompt=prompt,
        session_id=None,
        desk=desk,
        env={"REEVE_PULSE_ID": "42"},
        timeout_s=30.0,
        stall_timeout_s=None,
        log_path=tmp_path / "attempt.log",
        settings=settings,
    )
    values.update(changes)
    return AttemptRequest(**values)


def settings_with(monkeypatch, **env):
    for name, value in env.items():
        monkeypatch.setenv(f"REEVE_{name.upper()}", value)
    return load_settings()


def read_runs(log_path):
    import json

    if not Path(log_path).exists():
        return []
    return [json.loads(line) for line in Path(log_path).read_text().splitlines()]


def wait_for_runs(log_path, count=1, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = read_runs(log_path)
        if len(runs) >= count:
            return runs
        time.sleep(0.02)
    raise AssertionError(f"fake agent did not log {count} run(s) in {timeout}s")


def is_gone(pid, timeout=5.0):
    """Tell whether `pid` has exited (a zombie waiting for its reaper counts)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def kill_quietly(pid, pgid):
    """SIGKILL a fake agent process left over by a failed test, if it is ours."""
    import signal

    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return
    if int(stat.rsplit(")", 1)[1].split()[2]) != pgid:
        return  # the pid was reused by an unrelated process
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


async def await_runs(log_path, count=1, timeout=15.0):
    import asyncio

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = read_runs(log_path)
        if len(runs) >= count:
            return runs
        await asyncio.sleep(0.02)
    raise AssertionError(f"fake agent did not log {count} run(s) in {timeout}s")
