"""Drive a real `reeve mcp serve` subprocess with the MCP SDK's stdio client.

The client runs in a background thread with its own event loop, so tests stay
synchronous and one server can serve a whole module of tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from pathlib import Path

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

ZONE = "Europe/Berlin"
START_TIMEOUT = 60.0
CALL_TIMEOUT = 60.0


def reeve_bin() -> str:
    return str(Path(sys.executable).with_name("reeve"))


def settings_args(data_dir: Path, config: Path, zone: str = ZONE) -> list[str]:
    """Global settings as a client registration passes them: arguments only."""
    return ["--data-dir", str(data_dir), "--config", str(config), "--timezone", zone]


def bare_env(**extra: str) -> dict[str, str]:
    """What a sanitising client passes: no REEVE_* variables, plus `extra`.

    The SDK adds HOME, PATH and the like by itself; the rest must be explicit.
    """
    env = {"NO_COLOR": "1", "TERM": "unknown"}
    if "VIRTUAL_ENV" in os.environ:
        env["VIRTUAL_ENV"] = os.environ["VIRTUAL_ENV"]
    env.update(extra)
    return env


class McpServer:
    """`reeve <args>` speaking MCP over stdio, with a synchronous client."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        stderr_path: Path,
        command: str | None = None,
    ) -> None:
        self.params = StdioServerParameters(
            command=command or reeve_bin(), args=args, env=env
        )
        self.stderr_path = stderr_path
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: ClientSession | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            with open(self.stderr_path, "w") as errlog:
                async with stdio_client(self.params, errlog=errlog) as (read, write):
                    async with ClientSession(read, write) as session:
                        await session.initialize()
                        self._session = session
                        self._ready.set()
                        await self._stop.wait()
        except BaseException as exc:  # surfaced to the test thread
            self._error = exc
            self._ready.set()

    def __enter__(self) -> McpServer:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise TimeoutError(f"MCP server did not start: {self.stderr()}")
        if self._error is not None:
            raise RuntimeError(f"MCP server failed: {self.stderr()}") from self._error
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _await(self, coro):
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(CALL_TIMEOUT)

    def list_tools(self):
        assert self._session is not None
        return self._await(self._session.list_tools()).tools

    def call(self, tool: str, /, **arguments):
        """Call a tool; return the SDK's CallToolResult."""
        assert self._session is not None
        return self._await(self._session.call_tool(tool, arguments))

    def ok(self, tool: str, /, **arguments) -> tuple[str, dict]:
        """Call a tool that must succeed; return its text and structured content."""
        result = self.call(tool, **arguments)
        text = result.content[0].text
        assert not result.is_error, text
        return text, result.structured_content

    def error(self, tool: str, /, **arguments) -> str:
        """Call a tool that must fail; return the error text."""
        result = self.call(tool, **arguments)
        text = result.content[0].text
        assert result.is_error, text
        assert result.structured_content is None
        return text

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text()
        except OSError:
            return ""


def write_init_log(path: Path, session_id: str) -> None:
    """An attempt log as the daemon writes it: the agent's stream-json lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "starting agent",
        json.dumps({"type": "system", "subtype": "init", "session_id": session_id}),
        json.dumps({"type": "assistant", "message": {"content": []}}),
    ]
    path.write_text("\n".join(lines) + "\n")
