"""MCP start-up benchmark: spawn `reeve mcp serve` to a listed tool list.

An agent client spawns the server once per session, so this is the delay the
agent sees before Reeve's tools exist. Each run starts a fresh process of the
installed `reeve` entry point with the SDK's stdio client, initializes, lists
the tools, and (separately timed) makes the first tool call, which opens the
database. Prints a Markdown table of medians over RUNS runs; see
docs/performance.md.

Usage: python bench/mcp.py [runs]
"""

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# This file is bench/mcp.py, so `python bench/mcp.py` puts bench/ first on the
# path and `import mcp` would import this script; drop that entry first.
sys.path = [
    p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent
]

from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402

RUNS = 10
REEVE = str(Path(sys.executable).with_name("reeve"))


async def one_run(args: list[str]) -> tuple[float, float, float]:
    """Seconds from spawn to initialized, to tools listed, to first call done."""
    params = StdioServerParameters(command=REEVE, args=args, env={"NO_COLOR": "1"})
    start = time.perf_counter()
    with open(os.devnull, "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                ready = time.perf_counter()
                tools = (await session.list_tools()).tools
                listed = time.perf_counter()
                assert len(tools) == 11, [t.name for t in tools]
                result = await session.call_tool("list_upcoming_pulses", {})
                called = time.perf_counter()
                assert not result.is_error, result.content
    return ready - start, listed - start, called - listed


def import_time(module: str) -> float:
    """Median wall time of `python -c "import <module>"` minus a bare interpreter."""

    def wall(code: str) -> float:
        times = []
        for _ in range(5):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    return wall(f"import {module}") - wall("pass")


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else RUNS
    home = Path(tempfile.mkdtemp(prefix="reeve-bench-mcp-"))
    args = [
        "--data-dir",
        str(home / "data"),
        "--config",
        str(home / "config.toml"),
        "--timezone",
        "Europe/Berlin",
        "mcp",
        "serve",
    ]
    try:
        asyncio.run(one_run(args))  # create and migrate the database once
        samples = [asyncio.run(one_run(args)) for _ in range(runs)]
    finally:
        shutil.rmtree(home, ignore_errors=True)

    ready, listed, first = (
        statistics.median(column) for column in zip(*samples, strict=True)
    )
    worst = max(s[1] for s in samples)
    mcp_import = import_time("mcp.server.mcpserver")
    print(f"MCP start-up, median of {runs} runs (max spawn→tools listed {worst:.2f} s)")
    print()
    print("| step | median |")
    print("|---|---|")
    print(f"| spawn → initialized | {ready:.2f} s |")
    print(f"| spawn → tools listed | {listed:.2f} s |")
    print(f"| first tool call (opens the database) | {first * 1000:.0f} ms |")
    print(f"| of which `import mcp.server.mcpserver` | {mcp_import:.2f} s |")


if __name__ == "__main__":
    main()
