"""With a real daemon: a pulse scheduled through MCP runs, and its agent's own
MCP server knows which pulse it is serving."""

import json
import sys
from pathlib import Path

import pytest

from reeve_cli import store
from tests.daemon_helpers import start_daemon, wait_for
from tests.mcp_helpers import McpServer, bare_env, settings_args

AGENT = Path(__file__).resolve().parent / "mcp_agent.py"

pytestmark = pytest.mark.e2e


def test_pulse_scheduled_through_mcp_runs_and_finds_itself(reeve_env, tmp_path, db):
    out = tmp_path / "agent-answer.json"
    daemon = start_daemon(
        {
            "REEVE_AGENT_COMMAND": f"{sys.executable} {AGENT}",
            "MCP_AGENT_OUT": str(out),
            "MCP_AGENT_ERR": str(tmp_path / "agent-mcp.err"),
            "REEVE_MAX_RETRIES": "0",
        }
    )
    try:
        args = settings_args(reeve_env, tmp_path / "config.toml") + ["mcp", "serve"]
        with McpServer(args, bare_env(), tmp_path / "client.err") as client:
            _, scheduled = client.ok(
                "schedule_pulse", when="now", prompt="who woke me?", tags=["e2e"]
            )

        answer = wait_for(
            lambda: json.loads(out.read_text()) if out.exists() else None, timeout=60
        )
        finished = wait_for(
            lambda: (p := store.get_pulse(db, scheduled["id"])).status.is_final and p,
            timeout=30,
        )
    finally:
        daemon.stop()

    current = answer["current"]
    assert current["started_by_reeve"] is True, answer
    assert current["found_by"] == "process ancestry"
    assert current["pulse"]["id"] == scheduled["id"]
    assert current["pulse"]["status"] == "running"
    assert current["attempt"]["number"] == 1
    assert f"started by Reeve for pulse {scheduled['id']}" in answer["current_text"]
    assert "who woke me?" in answer["prompt"]
    follow_up = answer["follow_up"]
    assert follow_up["session_id"] == answer["session_id"], follow_up
    assert finished.status.value == "completed", daemon.log()
    assert finished.result_session_id == answer["session_id"]
    assert finished.source == "mcp"
