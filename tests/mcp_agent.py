#!/usr/bin/env python3
"""A stand-in agent that uses Reeve's MCP tools from inside a pulse's run.

The daemon starts it as Claude Code (REEVE_AGENT_COMMAND, `-p --output-format
stream-json --verbose`, prompt on stdin). Like Claude Code it prints a
`system`/`init` event with a new session id, then starts `reeve mcp serve` the
way a client registered with `reeve mcp config` does: settings as arguments and
an environment without any REEVE_* variable, so the server must find its pulse
through the process tree. It calls `current_pulse`, then
`schedule_pulse(resume_current_session=true)`, writes both answers as JSON to
$MCP_AGENT_OUT, and ends with a stream-json `result` event.
"""

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path

# Run as a script from tests/: make `import mcp` find the SDK, not a local name.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]

from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402


def emit(event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def server_params():
    """`reeve mcp serve` with settings as arguments and no REEVE_* variables."""
    args = [
        "--data-dir",
        os.environ["REEVE_DATA_DIR"],
        "--database-url",
        os.environ["REEVE_DATABASE_URL"],
        "--config",
        os.environ["REEVE_CONFIG"],
        "--timezone",
        os.environ["REEVE_TIMEZONE"],
        "mcp",
        "serve",
    ]
    reeve = str(Path(sys.executable).with_name("reeve"))
    return StdioServerParameters(command=reeve, args=args, env={"NO_COLOR": "1"})


def content(result):
    if result.is_error:
        return {"error": result.content[0].text}
    return result.structured_content


async def use_tools():
    with open(os.environ.get("MCP_AGENT_ERR", os.devnull), "a") as errlog:
        async with stdio_client(server_params(), errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                current = await session.call_tool("current_pulse", {})
                follow_up = await session.call_tool(
                    "schedule_pulse",
                    {
                        "when": "in 1h",
                        "prompt": "follow up on this session",
                        "resume_current_session": True,
                    },
                )
    return {
        "current": content(current),
        "current_text": current.content[0].text,
        "follow_up": content(follow_up),
    }


def main():
    prompt = sys.stdin.read()
    session_id = str(uuid.uuid4())
    emit({"type": "system", "subtype": "init", "session_id": session_id})

    answer = asyncio.run(use_tools())
    answer.update(session_id=session_id, prompt=prompt)
    out = Path(os.environ["MCP_AGENT_OUT"])
    partial = out.with_suffix(".partial")
    partial.write_text(json.dumps(answer))
    partial.replace(out)  # the test never reads half a file

    emit(
        {
            "type": "result",
            "subtype": "success",
            "is_error": False,
            "session_id": session_id,
            "result": "used the MCP tools",
            "total_cost_usd": 0.0,
            "duration_ms": 1,
            "usage": {},
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
