"""Reeve executors that run Claude Code headless: `claude`, and `hapi` through Hapi.

Both start `<program> -p --output-format stream-json --verbose [--resume=ID]` in
the desk and write the prompt to the agent's stdin, so neither a prompt nor a
session id that starts with `-` can be read as a flag. They read the stream:
the session id from the `system`/`init` event and from `result` (the latest
wins, since resuming can mint a new id; each new id goes to the request's
`on_session` callback at once), and the final text, `is_error`,
`total_cost_usd`, duration and token usage from `result`.

`REEVE_AGENT_COMMAND` (shell-split) replaces the program, flags included, e.g.
`claude --dangerously-skip-permissions` or a fake agent in tests.
"""

from __future__ import annotations

import json
import logging
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reeve_cli import hookimpl
from reeve_cli.executor import (
    AgentNotStarted,
    AttemptRequest,
    AttemptResult,
    Executor,
    process_env,
    run_process,
    stop_reason,
)

__version__ = "0.1.0"

logger = logging.getLogger(__name__)

# Claude Code marks the shells it starts with CLAUDECODE=1 and refuses to start
# a nested session when it sees it; a daemon started from such a shell must not
# pass it on.
INHERITED_MARKERS = ("CLAUDECODE",)
ERROR_TEXT_CHARS = 300


@dataclass
class StreamState:
    """What the stream-json events of one run have said so far."""

    session_id: str | None = None
    result_text: str | None = None
    is_error: bool = False
    subtype: str | None = None
    cost_usd: float | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    saw_result: bool = False
    last_text: str | None = None
    # Told each new session id at once (the daemon stores it mid-run).
    on_session: Callable[[str], None] | None = None

    def feed(self, line: bytes) -> None:
        """Read one stdout line; lines that are not JSON objects are ignored."""
        try:
            event = json.loads(line)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind == "system" and event.get("subtype") == "init":
            self._session(event)
        elif kind == "assistant":
            self._assistant(event)
        elif kind == "result":
            self._result(event)

    def _session(self, event: dict[str, Any]) -> None:
        session = event.get("session_id")
        if isinstance(session, str) and session and session != self.session_id:
            self.session_id = session
            if self.on_session is not None:
                try:
                    self.on_session(session)
                except Exception:
                    logger.exception("on_session callback failed")

    def _assistant(self, event: dict[str, Any]) -> None:
        message = event.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            return
        texts = [
            block["text"]
            for block in content
            if isinstance(block, dict)
            and block.get("type") == "text"
            and isinstance(block.get("text"), str)
        ]
        if texts:
            self.last_text = "".join(texts)

    def _result(self, event: dict[str, Any]) -> None:
        self.saw_result = True
        self._session(event)
        self.subtype = event.get("subtype")
        self.is_error = bool(event.get("is_error"))
        result = event.get("result")
        if isinstance(result, str):
            self.result_text = result
        cost = event.get("total_cost_usd", event.get("cost_usd"))
        if isinstance(cost, int | float):
            self.cost_usd = float(cost)
        usage = event.get("usage")
        self.usage = dict(usage) if isinstance(usage, dict) else {}
        for key in ("num_turns", "duration_ms", "duration_api_ms", "subtype"):
            if key in event:
                self.usage[key] = event[key]


def _first_line(text: str | None) -> str:
    line = next(
        (part.strip() for part in (text or "").splitlines() if part.strip()), ""
    )
    if len(line) > ERROR_TEXT_CHARS:
        line = line[: ERROR_TEXT_CHARS - 3] + "..."
    return line


def _last_plain_line(tail: str) -> str:
    """Return the last output line that is not a stream-json event (often stderr)."""
    for line in reversed(tail.splitlines()):
        line = line.strip()
        if line and not line.startswith("{"):
            return _first_line(line)
    return ""


class ClaudeCodeExecutor:
    """Run Claude Code headless (`-p`, stream-json) and read its result."""

    name = "claude"
    description = "Claude Code headless: claude -p --output-format stream-json"
    program = "claude"
    install_hint = "install Claude Code"

    def argv(self, request: AttemptRequest) -> list[str]:
        """Build the command line; the prompt itself goes to stdin."""
        configured = request.settings.agent_command
        program = shlex.split(configured) if configured else [self.program]
        argv = [*program, "-p", "--output-format", "stream-json", "--verbose"]
        if request.session_id:
            # One token, so an id that starts with '-' stays the option's value.
            argv.append(f"--resume={request.session_id}")
        return argv

    async def run(
        self, request: AttemptRequest, on_start: Callable[[int], None]
    ) -> AttemptResult:
        argv = self.argv(request)
        # getattr: an AttemptRequest from an older Reeve has no on_session.
        state = StreamState(on_session=getattr(request, "on_session", None))
        try:
            outcome = await run_process(
                argv,
                cwd=request.desk,
                env=process_env(request.env, drop=INHERITED_MARKERS),
                log_path=request.log_path,
                timeout_s=request.timeout_s,
                stall_timeout_s=request.stall_timeout_s,
                stdin_data=request.prompt.encode("utf-8"),
                on_start=on_start,
                on_line=state.feed,
            )
        except AgentNotStarted as exc:
            message = str(exc)
            if exc.program_missing:
                message = (
                    f"Agent program '{argv[0]}' not found; {self.install_hint} "
                    "or set REEVE_AGENT_COMMAND"
                )
            return AttemptResult(
                ok=False, exit_code=None, error=message, transient=False
            )

        ok = (
            outcome.exit_code == 0
            and not state.is_error
            and not (outcome.timed_out or outcome.stalled)
        )
        error = None
        if not ok:
            error = self._error(state, outcome, request)
        return AttemptResult(
            ok=ok,
            exit_code=outcome.exit_code,
            error=error,
            session_id=state.session_id,
            result_text=state.result_text
            if state.result_text is not None
            else state.last_text,
            cost_usd=state.cost_usd,
            duration_s=outcome.duration_s,
            usage=state.usage,
            output_tail=outcome.output_tail,
            timed_out=outcome.timed_out,
            stalled=outcome.stalled,
        )

    def _error(self, state: StreamState, outcome: Any, request: AttemptRequest) -> str:
        if outcome.timed_out or outcome.stalled:
            return stop_reason(outcome, request.timeout_s, request.stall_timeout_s)
        if state.is_error:
            detail = _first_line(state.result_text) or "no details"
            return f"Agent reported an error ({state.subtype or 'error'}): {detail}"
        reason = stop_reason(outcome, request.timeout_s, request.stall_timeout_s)
        last = _last_plain_line(outcome.output_tail)
        return f"{reason}: {last}" if last else reason


class HapiExecutor(ClaudeCodeExecutor):
    """Run Claude Code through Hapi, which forwards Claude's flags to `claude`."""

    name = "hapi"
    description = "Claude Code through the Hapi wrapper (same flags as claude)"
    program = "hapi"
    install_hint = "install Hapi (it needs Claude Code too)"


@hookimpl
def register_executors(register: Callable[[Executor], None]) -> None:
    """Offer the `claude` and `hapi` executors."""
    register(ClaudeCodeExecutor())
    register(HapiExecutor())
