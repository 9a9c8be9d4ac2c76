#!/usr/bin/env python3
"""The agent of the full-flow test: a real program that uses Reeve's MCP tools.

The daemon starts it as Claude Code (`-p --output-format stream-json --verbose`,
prompt on stdin). It prints a `system`/`init` event, then acts on the prompt:

- a prompt with `FOLLOW-UP` only records that it ran;
- a prompt with `[sleep-once N]` sleeps N seconds the first time it runs for a
  data dir (a marker file remembers), so a crash can be staged mid-run;
- any other prompt (a Telegram message) starts `reeve mcp serve` the way a
  registered client does (settings as arguments, no REEVE_* variables), asks
  for a follow-up pulse in a few seconds and sends the user a notification.

Each run appends one JSON line to $FLOW_LOG: pid, prompt, tool answers.
"""

import asyncio
import json
import os
import re
import sys
import time
import uuid
from pathlib import Path

# Run as a script from tests/: make `import mcp` find the SDK, not a local name.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]

from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402

FOLLOW_UP_DELAY = os.environ.get("FLOW_FOLLOW_UP", "in 4s")


def emit(event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def record(entry):
    with open(os.environ["FLOW_LOG"], "a") as log:
        log.write(json.dumps(entry) + "\n")


def server_params():
    args = [
        "--data-dir",
        os.environ["REEVE_DATA_DIR"],
        "--config",
        os.environ["REEVE_CONFIG"],
        "--timezone",
        os.environ["REEVE_TIMEZONE"],
        "mcp",
        "serve",
    ]
    reeve = str(Path(sys.executable).with_name("reeve"))
    return StdioServerParameters(command=reeve, args=args, env={"NO_COLOR": "1"})


def answer(result):
    if result.is_error:
        return {"error": result.content[0].text}
    return result.structured_content


async def use_tools(message):
    with open(os.environ.get("FLOW_MCP_ERR", os.devnull), "a") as errlog:
        async with stdio_client(server_params(), errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                follow_up = await session.call_tool(
                    "schedule_pulse",
                    {
                        "when": FOLLOW_UP_DELAY,
                        "prompt": f"FOLLOW-UP: ask whether '{message}' went well",
                        "resume_current_session": True,
                    },
                )
                sent = await session.call_tool(
                    "send_notification",
                    {"message": f"On it: {message}", "priority": "high"},
                )
    return {"follow_up": answer(follow_up), "sent": answer(sent)}


def main():
    prompt = sys.stdin.read()
    session_id = str(uuid.uuid4())
    emit({"type": "system", "subtype": "init", "session_id": session_id})
    entry = {"pid": os.getpid(), "prompt": prompt, "at": time.time()}

    sleep = re.search(r"\[sleep-once (\d+)\]", prompt)
    marker = Path(os.environ["REEVE_DATA_DIR"]) / "flow-slept"
    if sleep and not marker.exists():
        marker.write_text(str(os.getpid()))
        record(dict(entry, kind="sleeping"))
        time.sleep(int(sleep.group(1)))
    elif "FOLLOW-UP" in prompt or sleep:
        record(dict(entry, kind="quick"))
    else:
        text = re.search(r"^.*remind me.*$", prompt, re.IGNORECASE | re.MULTILINE)
        tools = asyncio.run(use_tools(text.group(0).strip() if text else "hello"))
        record(dict(entry, kind="tools", **tools))

    emit(
        {
            "type": "result",
            "subtype": "success",
            "is_error": False,
            "session_id": session_id,
            "result": "done",
            "total_cost_usd": 0.001,
            "duration_ms": 5,
            "usage": {"input_tokens": 3, "output_tokens": 2},
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
