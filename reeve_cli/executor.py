"""The executor interface, the agent process runner, and the `command` executor.

An executor runs one attempt of a pulse: it starts the agent in the desk, feeds
it the prompt, and reports what happened as an `AttemptResult`. Every executor
shares `run_process`, which owns the hard parts: its own process group, the
per-attempt log file, the 64 KiB output tail, the time limit, the stall
watchdog, and killing the whole group on timeout or cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from reeve_cli.config import Settings
    from reeve_cli.model import Priority, Pulse

logger = logging.getLogger(__name__)

TAIL_BYTES = 64 * 1024
# Seconds between SIGTERM to the agent's process group and SIGKILL.
KILL_GRACE_S = 5.0
# Seconds to wait for the output pipes to close after the agent itself exited;
# a descendant still holding them open is then killed with the group.
DRAIN_GRACE_S = 2.0
# Seconds between checks whether the agent exited while its pipes stay open.
EXIT_POLL_S = 0.1
# Variables an agent never needs and must not inherit from the daemon.
SCRUBBED_ENV = ("REEVE_API_TOKEN", "REEVE_TELEGRAM_TOKEN")


@dataclass(frozen=True, slots=True)
class AttemptRequest:
    """Everything an executor needs to run one attempt of a pulse."""

    pulse: Pulse
    number: int
    prompt: str
    session_id: str | None
    desk: Path
    env: dict[str, str]
    timeout_s: float
    stall_timeout_s: float | None
    log_path: Path
    settings: Settings
    # Optional: call with the agent's session id as soon as it is known (the
    # `system`/`init` event), and again if it changes. The daemon stores it on
    # the running attempt at once, so the agent's own tools can resume the
    # session mid-run. Executors that never call it keep working: the id in
    # AttemptResult is stored when the attempt ends.
    on_session: Callable[[str], None] | None = None


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """How an attempt ended, as reported by its executor."""

    ok: bool
    exit_code: int | None
    error: str | None
    transient: bool = True
    session_id: str | None = None
    result_text: str | None = None
    cost_usd: float | None = None
    duration_s: float | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    output_tail: str = ""
    timed_out: bool = False
    stalled: bool = False


@runtime_checkable
class Executor(Protocol):
    """Runs one attempt of a pulse; registered through `register_executors`."""

    name: str
    description: str

    async def run(
        self, request: AttemptRequest, on_start: Callable[[int], None]
    ) -> AttemptResult:
        """Run the attempt and report how it ended.

        Args:
            request: the pulse, prompt, desk, limits and log file of this attempt;
                `request.on_session`, when set, takes the agent's session id as
                soon as the executor learns it (optional to call).
            on_start: called with the agent's pid once the process exists.

        Raises:
            asyncio.CancelledError: the caller cancelled; the agent's process
                group has been terminated, then killed, before this is raised.
        """
        ...


@runtime_checkable
class Notifier(Protocol):
    """Tells the user something; registered through `register_notifiers`."""

    name: str

    def is_configured(self, settings: Settings) -> bool:
        """Say whether the settings hold what this notifier needs to send."""
        ...

    def send(self, settings: Settings, message: str, priority: Priority) -> None:
        """Deliver one message; raise on failure, never with a secret in the text."""
        ...


def build_prompt(pulse: Pulse, zone: tzinfo, started_at: datetime) -> str:
    """Compose the text the agent receives: a header, the prompt, the sticky notes.

    The header names the pulse, its priority and source, and the scheduled and
    actual start times in the user's zone, so the agent knows why it woke up and
    how late. The format is documented in docs/plugins.md ("What the agent
    receives").
    """
    from reeve_cli.timefmt import format_local

    late = (started_at - pulse.scheduled_at).total_seconds()
    header = (
        f"[Reeve pulse {pulse.id} | priority {pulse.priority.value}"
        f" | source {pulse.source}"
        f" | scheduled {format_local(pulse.scheduled_at, zone)}"
        f" | started {format_local(started_at, zone)}"
    )
    if late >= 60:
        header += f" ({_late_text(late)} late)"
    header += "]"
    parts = [header, pulse.prompt]
    if pulse.sticky_notes:
        notes = "\n".join(f"- {note}" for note in pulse.sticky_notes)
        parts.append("Sticky notes:\n" + notes)
    return "\n\n".join(parts)


def _late_text(seconds: float) -> str:
    from reeve_cli.timefmt import format_duration

    return format_duration(seconds)


def agent_env(settings: Settings, pulse: Pulse, attempt_id: int) -> dict[str, str]:
    """Return the variables Reeve adds to the agent's environment.

    They tell the agent which pulse woke it, and let a `reeve mcp serve` started
    by the agent find the same database, config and zone as the daemon.
    """
    cached = _ENV_CACHE.get(id(settings))
    if cached is None or cached[0] is not settings:
        cached = (
            settings,
            {
                "REEVE_DATA_DIR": str(settings.data_path),
                "REEVE_DATABASE_URL": settings.db_url,
                "REEVE_CONFIG": str(settings.config_file),
                "REEVE_TIMEZONE": str(settings.timezone),
            },
        )
        _ENV_CACHE.clear()  # one Settings object per process in practice
        _ENV_CACHE[id(settings)] = cached
    return {
        "REEVE_PULSE_ID": str(pulse.id),
        "REEVE_PULSE_PRIORITY": pulse.priority.value,
        "REEVE_ATTEMPT_ID": str(attempt_id),
        **cached[1],
    }


# The settings part of agent_env(), per Settings object (the daemon has one).
_ENV_CACHE: dict[int, tuple[Settings, dict[str, str]]] = {}


def process_env(
    extra: Mapping[str, str], *, drop: Sequence[str] = ()
) -> dict[str, str]:
    """Build an agent's full environment: ours, minus secrets, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    for name in drop:
        env.pop(name, None)
    env.update(extra)
    return env


@dataclass(slots=True)
class ProcessOutcome:
    """What `run_process` saw: exit status, output tail and why it stopped."""

    exit_code: int | None
    output_tail: str
    duration_s: float
    timed_out: bool = False
    stalled: bool = False


class AgentNotStarted(Exception):
    """The agent could not be started; retrying the same way cannot help.

    `program_missing` is true when the program itself was not found, so an
    executor can say how to install it.
    """

    def __init__(self, message: str, *, program_missing: bool = False) -> None:
        super().__init__(message)
        self.program_missing = program_missing


class _Output:
    """Collects both output streams: the log file, the tail, stdout lines."""

    def __init__(self, log: IO[bytes], on_line: Callable[[bytes], None] | None):
        self.log = log
        self.on_line = on_line
        self.tail = bytearray()
        self.pending = bytearray()
        self.last_output = time.monotonic()

    def feed(self, chunk: bytes, *, is_stdout: bool) -> None:
        self.last_output = time.monotonic()
        self.log.write(chunk)
        self.log.flush()
        self.tail += chunk
        if len(self.tail) > TAIL_BYTES:
            del self.tail[: len(self.tail) - TAIL_BYTES]
        if is_stdout and self.on_line is not None:
            self.pending += chunk
            while (end := self.pending.find(b"\n")) >= 0:
                line = bytes(self.pending[:end])
                del self.pending[: end + 1]
                self._line(line)

    def finish(self) -> None:
        if self.pending:
            line = bytes(self.pending)
            self.pending.clear()
            self._line(line)

    def _line(self, line: bytes) -> None:
        assert self.on_line is not None
        try:
            self.on_line(line)
        except Exception:
            logger.exception("Output line handler failed")

    def tail_text(self) -> str:
        text = self.tail.decode("utf-8", errors="replace")
        # A cut in the middle of a multi-byte character leaves one replacement
        # character at the start; it is part of the tail, not worth trimming.
        return text


async def _pump(
    stream: asyncio.StreamReader | None, output: _Output, *, is_stdout: bool
) -> None:
    if stream is None:
        return
    while chunk := await stream.read(65536):
        output.feed(chunk, is_stdout=is_stdout)


async def _feed_stdin(stdin: asyncio.StreamWriter | None, data: bytes | None) -> None:
    if stdin is None:
        return
    try:
        if data:
            stdin.write(data)
            await stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the agent does not read its input; its exit status will tell
    finally:
        stdin.close()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            await stdin.wait_closed()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _wait_exit(process: asyncio.subprocess.Process, timeout_s: float) -> bool:
    # Not process.wait(): it also waits for the pipes to close, and a descendant
    # that left the process group can hold them open indefinitely.
    deadline = time.monotonic() + timeout_s
    while process.returncode is None:
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(EXIT_POLL_S / 2)
    return True


async def terminate_group(
    process: asyncio.subprocess.Process, grace_s: float = KILL_GRACE_S
) -> None:
    """Stop the process group led by `process`: SIGTERM, then SIGKILL after `grace_s`.

    SIGKILL is sent to the group even when the leader exits in time, so that no
    descendant that ignored SIGTERM survives the attempt.
    """
    pgid = process.pid
    _signal_group(pgid, signal.SIGTERM)
    try:
        await _wait_exit(process, grace_s)
    finally:
        _signal_group(pgid, signal.SIGKILL)
    await _wait_exit(process, KILL_GRACE_S)


async def run_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log_path: Path,
    timeout_s: float,
    stall_timeout_s: float | None = None,
    stdin_data: bytes | None = None,
    on_start: Callable[[int], None] | None = None,
    on_line: Callable[[bytes], None] | None = None,
    kill_grace_s: float = KILL_GRACE_S,
) -> ProcessOutcome:
    """Run an agent process in its own process group and watch it.

    Stdout and stderr go, interleaved as they arrive, to `log_path` and to a
    64 KiB tail; each complete stdout line is passed to `on_line`. When
    `timeout_s` passes, or nothing is printed for `stall_timeout_s`, the whole
    group gets SIGTERM, then SIGKILL after `kill_grace_s`.

    Args:
        env: the complete environment of the process (see `process_env`).
        stdin_data: written to the process's stdin, which is then closed; None
            connects stdin to /dev/null.

    Raises:
        AgentNotStarted: the program or the desk does not exist, or the program
            cannot be executed. The message is meant for people.
        asyncio.CancelledError: after the group has been terminated and killed.
    """
    if not cwd.is_dir():
        raise AgentNotStarted(
            f"Desk '{cwd}' does not exist or is not a directory; create it or set "
            "REEVE_DESK"
        )
    started = time.monotonic()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env=dict(env),
                stdin=asyncio.subprocess.DEVNULL
                if stdin_data is None
                else asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise AgentNotStarted(
                f"Program '{argv[0]}' not found", program_missing=True
            ) from None
        except PermissionError:
            raise AgentNotStarted(f"Program '{argv[0]}' is not executable") from None
        except OSError as exc:
            raise AgentNotStarted(
                f"Program '{argv[0]}' cannot be started: {exc.strerror}"
            ) from None

        if on_start is not None:
            try:
                on_start(process.pid)
            except Exception:
                logger.exception("on_start callback failed for pid %d", process.pid)
        output = _Output(log, on_line)
        try:
            outcome = await _watch(
                process, output, stdin_data, timeout_s, stall_timeout_s, kill_grace_s
            )
        except asyncio.CancelledError:
            await terminate_group(process, kill_grace_s)
            raise
        finally:
            output.finish()
            _close_pipes(process)
    outcome.duration_s = time.monotonic() - started
    outcome.output_tail = output.tail_text()
    return outcome


def _close_pipes(process: asyncio.subprocess.Process) -> None:
    """Close our ends of the agent's pipes once the attempt is over.

    A descendant that escaped the process group can hold the pipes open after
    the agent was killed; without this their file descriptors would stay open
    until garbage collection, which in a daemon that runs for months is a leak.
    asyncio offers no public way to close a subprocess transport.
    """
    transport = getattr(process, "_transport", None)
    if transport is not None:
        transport.close()


async def _watch(
    process: asyncio.subprocess.Process,
    output: _Output,
    stdin_data: bytes | None,
    timeout_s: float,
    stall_timeout_s: float | None,
    kill_grace_s: float,
) -> ProcessOutcome:
    tasks = [
        asyncio.create_task(_pump(process.stdout, output, is_stdout=True)),
        asyncio.create_task(_pump(process.stderr, output, is_stdout=False)),
        asyncio.create_task(_feed_stdin(process.stdin, stdin_data)),
    ]
    exited = asyncio.create_task(process.wait())
    deadline = time.monotonic() + timeout_s
    timed_out = stalled = False
    try:
        # process.wait() also waits for the pipes to close, which a descendant
        # can hold open; returncode tells when the agent itself has exited.
        while not exited.done() and process.returncode is None:
            now = time.monotonic()
            wait = deadline - now
            if stall_timeout_s:
                wait = min(wait, output.last_output + stall_timeout_s - now)
            if wait <= 0:
                timed_out = now >= deadline
                stalled = not timed_out
                break
            await asyncio.wait([exited], timeout=min(wait, EXIT_POLL_S))
        if timed_out or stalled:
            await terminate_group(process, kill_grace_s)
        else:
            _, alive = await asyncio.wait(tasks[:2], timeout=DRAIN_GRACE_S)
            if alive:
                # The agent exited but a descendant still holds its output open.
                await terminate_group(process, kill_grace_s)
        await asyncio.wait(tasks, timeout=DRAIN_GRACE_S)
    finally:
        for task in (*tasks, exited):
            task.cancel()
        await asyncio.gather(*tasks, exited, return_exceptions=True)
    return ProcessOutcome(
        exit_code=process.returncode,
        output_tail="",
        duration_s=0.0,
        timed_out=timed_out,
        stalled=stalled,
    )


def stop_reason(
    outcome: ProcessOutcome, timeout_s: float, stall_s: float | None
) -> str:
    """Say in one line why a process was stopped or what its exit status was."""
    if outcome.timed_out:
        return f"Timed out after {timeout_s:g}s; the agent's process group was killed"
    if outcome.stalled:
        return (
            f"Stalled: no output for {stall_s:g}s; the agent's process group was killed"
        )
    code = outcome.exit_code
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"Agent killed by {name}"
    return f"Agent exited with status {code}"


def fill_template(template: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """Replace `{name}` placeholders in each argument; other braces stay as they are."""
    argv = []
    for arg in template:
        for name, value in values.items():
            arg = arg.replace("{" + name + "}", value)
        argv.append(arg)
    return argv


class CommandExecutor:
    """Run any program for a pulse: cron-style jobs and agents other than Claude.

    The argv template is the pulse's `meta["command"]` (a string or a list), else
    the `agent_command` setting (`REEVE_AGENT_COMMAND`), split with shlex. A
    `{prompt}` placeholder in an argument is replaced by the prompt; without one,
    the prompt goes to stdin. `{pulse_id}` and `{session_id}` are replaced too.
    Exit status 0 is success; the last output line is the result text.
    """

    name = "command"
    description = "Run a command template ({prompt} placeholder, or prompt on stdin)"

    def template(self, request: AttemptRequest) -> list[str] | None:
        configured = request.pulse.meta.get("command")
        if isinstance(configured, list) and configured:
            return [str(part) for part in configured]
        if isinstance(configured, str) and configured.strip():
            return shlex.split(configured)
        if request.settings.agent_command:
            return shlex.split(request.settings.agent_command)
        return None

    async def run(
        self, request: AttemptRequest, on_start: Callable[[int], None]
    ) -> AttemptResult:
        template = self.template(request)
        if not template:
            return AttemptResult(
                ok=False,
                exit_code=None,
                error=(
                    "The command executor has no command; set REEVE_AGENT_COMMAND "
                    "or the pulse's meta.command"
                ),
                transient=False,
            )
        uses_placeholder = any("{prompt}" in arg for arg in template)
        argv = fill_template(
            template,
            {
                "prompt": request.prompt,
                "pulse_id": str(request.pulse.id),
                "session_id": request.session_id or "",
            },
        )
        last_line: list[str] = []

        def remember(line: bytes) -> None:
            text = line.decode("utf-8", errors="replace").strip()
            if text:
                last_line[:] = [text]

        try:
            outcome = await run_process(
                argv,
                cwd=request.desk,
                env=process_env(request.env),
                log_path=request.log_path,
                timeout_s=request.timeout_s,
                stall_timeout_s=request.stall_timeout_s,
                stdin_data=None if uses_placeholder else request.prompt.encode(),
                on_start=on_start,
                on_line=remember,
            )
        except AgentNotStarted as exc:
            return AttemptResult(
                ok=False, exit_code=None, error=str(exc), transient=False
            )
        ok = outcome.exit_code == 0 and not (outcome.timed_out or outcome.stalled)
        return AttemptResult(
            ok=ok,
            exit_code=outcome.exit_code,
            error=None
            if ok
            else stop_reason(outcome, request.timeout_s, request.stall_timeout_s),
            session_id=None,
            result_text=last_line[0] if last_line else None,
            duration_s=outcome.duration_s,
            output_tail=outcome.output_tail,
            timed_out=outcome.timed_out,
            stalled=outcome.stalled,
        )
