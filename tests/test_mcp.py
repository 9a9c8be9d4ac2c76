"""`reeve mcp serve` over stdio, driven by the MCP SDK's client.

One server process serves this module (start-up costs about a second); each
test tags its pulses so tests do not see each other's rows.
"""

import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.mcp_helpers import ZONE, McpServer, bare_env, reeve_bin, settings_args

TOOLS = {
    "schedule_pulse",
    "list_upcoming_pulses",
    "get_pulse",
    "cancel_pulse",
    "reschedule_pulse",
    "list_schedules",
    "create_schedule",
    "pause_schedule",
    "resume_schedule",
    "send_notification",
    "current_pulse",
}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("mcp")


@pytest.fixture(scope="module")
def server(home):
    args = settings_args(home / "data", home / "config.toml") + ["mcp", "serve"]
    with McpServer(args, bare_env(), home / "server.err") as running:
        yield running
    assert "Traceback" not in running.stderr()


@pytest.fixture(scope="module")
def rows(home, server):
    """Read the server's database directly (server creates it on first use)."""
    server.ok("list_upcoming_pulses")
    conn = sqlite3.connect(home / "data" / "reeve.db")
    conn.row_factory = sqlite3.Row
    yield conn
    conn.close()


def pulse_row(rows, pulse_id):
    return rows.execute("SELECT * FROM pulses WHERE id = ?", (pulse_id,)).fetchone()


def utc(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# Listing ----------------------------------------------------------------------


def test_lists_every_tool_with_a_description(server):
    tools = server.list_tools()

    assert {tool.name for tool in tools} == TOOLS
    for tool in tools:
        assert len(tool.description) > 60, tool.name
        assert "\n" not in tool.description and "  " not in tool.description


def test_schedule_pulse_schema_documents_when_forms_and_priorities(server):
    tool = next(t for t in server.list_tools() if t.name == "schedule_pulse")

    props = tool.input_schema["properties"]
    assert tool.input_schema["required"] == ["when", "prompt"]
    assert "tomorrow 6:45" in props["when"]["description"]
    assert props["priority"]["enum"] == [
        "critical",
        "high",
        "normal",
        "low",
        "deferred",
    ]
    assert props["priority"]["default"] == "normal"


# schedule_pulse ---------------------------------------------------------------


def test_schedule_pulse_stores_a_pending_mcp_pulse(server, rows):
    text, data = server.ok(
        "schedule_pulse",
        when="in 20m",
        prompt="check the flight",
        priority="high",
        sticky_notes=["LH 400 departs 9:10"],
        tags=["t-store"],
    )

    row = pulse_row(rows, data["id"])
    assert row["status"] == "pending"
    assert row["source"] == "mcp"
    assert row["priority"] == 1
    assert json.loads(row["sticky_notes"]) == ["LH 400 departs 9:10"]
    assert json.loads(row["tags"]) == ["t-store"]
    assert data["prompt"] == "check the flight"
    assert data["status"] == "pending"
    assert data["result"]["session_id"] is None
    due = utc(data["scheduled_at"]) - datetime.now(UTC)
    assert timedelta(minutes=19) < due <= timedelta(minutes=20)
    assert text.startswith(f"Scheduled pulse {data['id']} (high) for ")


def test_schedule_pulse_states_local_utc_and_current_time(server):
    text, data = server.ok(
        "schedule_pulse", when="2031-07-01 06:45", prompt="summer", tags=["t-times"]
    )

    assert data["scheduled_at"] == "2031-07-01T04:45:00Z"
    assert "2031-07-01 06:45:00 CEST (2031-07-01T04:45:00Z" in text
    now_local = datetime.now(ZoneInfo(ZONE)).strftime("%Y-%m-%d %H:")
    assert f"Current time: {now_local}" in text
    assert f"time zone {ZONE}" in text


@pytest.mark.parametrize(
    "when",
    [
        pytest.param("+90s", id="plus"),
        pytest.param("at 23:59", id="clock"),
        pytest.param("tomorrow 6:45", id="tomorrow"),
        pytest.param("next monday 14:00", id="natural"),
        pytest.param("2031-01-01T00:00:00Z", id="iso-utc"),
        pytest.param("now", id="now"),
    ],
)
def test_schedule_pulse_accepts_cli_time_forms(server, when):
    _, data = server.ok("schedule_pulse", when=when, prompt="x", tags=["t-forms"])

    assert utc(data["scheduled_at"]) >= datetime.now(UTC) - timedelta(minutes=1)


def test_schedule_pulse_with_same_key_returns_first_pulse(server, rows):
    _, first = server.ok(
        "schedule_pulse", when="in 1h", prompt="once", idempotency_key="k-once"
    )

    text, again = server.ok(
        "schedule_pulse", when="in 2h", prompt="twice", idempotency_key="k-once"
    )

    assert again["id"] == first["id"]
    assert again["prompt"] == "once"
    assert "already has idempotency key 'k-once'; nothing new was added" in text
    count = rows.execute(
        "SELECT COUNT(*) FROM pulses WHERE idempotency_key = 'k-once'"
    ).fetchone()[0]
    assert count == 1


def test_schedule_pulse_with_session_id_resumes_it(server):
    text, data = server.ok(
        "schedule_pulse", when="in 1h", prompt="go on", session_id="sess-42"
    )

    assert data["session_id"] == "sess-42"
    assert "It resumes session sess-42." in text


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param(
            {"when": "blorp", "prompt": "x"},
            "Cannot read time 'blorp'; use ISO 8601",
            id="unreadable-time",
        ),
        pytest.param(
            {"when": "in 1h", "prompt": "x", "priority": "urgent"},
            "Unknown priority 'urgent'; use one of critical, high, normal, low, "
            "deferred",
            id="bad-priority",
        ),
        pytest.param(
            {"when": "in 1h", "prompt": "   "},
            "The prompt is empty; say what the agent should do",
            id="empty-prompt",
        ),
        pytest.param(
            {"when": "in 1h", "prompt": "x", "tags": [""]},
            "A tag cannot be empty",
            id="empty-tag",
        ),
        pytest.param(
            {
                "when": "in 1h",
                "prompt": "x",
                "session_id": "s",
                "resume_current_session": True,
            },
            "Give either session_id or resume_current_session=true, not both",
            id="two-sessions",
        ),
        pytest.param(
            {"when": "in 1h", "prompt": "x", "resume_current_session": True},
            "resume_current_session needs a session that Reeve started",
            id="resume-outside-reeve",
        ),
        pytest.param(
            {"prompt": "x"},
            "Invalid arguments: when: Field required",
            id="missing-when",
        ),
    ],
)
def test_schedule_pulse_rejects_bad_arguments(server, rows, arguments, message):
    before = rows.execute("SELECT COUNT(*) FROM pulses").fetchone()[0]

    text = server.error("schedule_pulse", **arguments)

    assert text.startswith(f"Error executing tool schedule_pulse: {message}")
    assert rows.execute("SELECT COUNT(*) FROM pulses").fetchone()[0] == before


def test_schedule_pulse_refuses_past_time_and_shows_the_clock(server):
    text = server.error("schedule_pulse", when="2020-01-01 10:00", prompt="x")

    assert text.startswith(
        "Error executing tool schedule_pulse: Time '2020-01-01 10:00' "
        "(2020-01-01 10:00:00 CET) is in the past; the current time is "
    )
    assert text.endswith("Give a future time, or 'now' to run it at once")


# list / get -------------------------------------------------------------------


def test_list_upcoming_pulses_shows_pending_by_due_time(server):
    _, late = server.ok("schedule_pulse", when="in 3h", prompt="late", tags=["t-list"])
    _, early = server.ok(
        "schedule_pulse", when="in 1h", prompt="early", tags=["t-list"]
    )

    text, data = server.ok("list_upcoming_pulses", tag="t-list")

    assert [p["id"] for p in data["pulses"]] == [early["id"], late["id"]]
    assert "finished" not in data
    assert f"- {early['id']} [pending, normal]" in text
    assert text.index("early") < text.index("late")


def test_list_upcoming_pulses_respects_limit(server):
    for n in range(3):
        server.ok("schedule_pulse", when=f"in {n + 1}h", prompt="p", tags=["t-limit"])

    _, data = server.ok("list_upcoming_pulses", tag="t-limit", limit=2)

    assert len(data["pulses"]) == 2


def test_list_upcoming_pulses_can_include_finished(server):
    _, done = server.ok("schedule_pulse", when="in 1h", prompt="gone", tags=["t-fin"])
    server.ok("cancel_pulse", pulse_id=done["id"])

    text, data = server.ok("list_upcoming_pulses", tag="t-fin", include_finished=True)

    assert data["pulses"] == []
    assert [p["id"] for p in data["finished"]] == [done["id"]]
    assert "No upcoming pulses." in text
    assert f"- {done['id']} [cancelled, normal]" in text


def test_list_upcoming_pulses_rejects_zero_limit(server):
    text = server.error("list_upcoming_pulses", limit=0)

    assert text == (
        "Error executing tool list_upcoming_pulses: Invalid arguments: limit: "
        "Input should be greater than or equal to 1 (got 0)"
    )


def test_get_pulse_shows_attempts_and_outcome(server, rows):
    _, made = server.ok("schedule_pulse", when="in 1h", prompt="ran", tags=["t-get"])
    rows.execute(
        "INSERT INTO attempts (pulse_id, number, status, started_at, finished_at, "
        "exit_code, error, session_id) VALUES (?, 1, 'failed', "
        "'2026-01-01T00:00:00.000000Z', '2026-01-01T00:01:00.000000Z', 3, "
        "'agent exited with status 3', 'sess-x')",
        (made["id"],),
    )
    rows.commit()

    text, data = server.ok("get_pulse", pulse_id=made["id"])

    assert data["id"] == made["id"]
    assert [(a["number"], a["status"], a["exit_code"]) for a in data["attempts"]] == [
        (1, "failed", 3)
    ]
    assert (
        "attempt 1: failed, exit 3, session sess-x - agent exited with status 3" in text
    )


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        pytest.param(
            "get_pulse",
            {"pulse_id": 999999},
            "No pulse with id 999999; list_upcoming_pulses (include_finished=true) "
            "shows the ids",
            id="get-unknown",
        ),
        pytest.param(
            "get_pulse",
            {"pulse_id": "abc"},
            "Invalid arguments: pulse_id: Input should be a valid integer, unable "
            "to parse string as an integer (got 'abc')",
            id="get-not-a-number",
        ),
        pytest.param(
            "cancel_pulse",
            {"pulse_id": 0},
            "Pulse ids are whole numbers from 1, got 0; list_upcoming_pulses "
            "shows them",
            id="cancel-zero",
        ),
        pytest.param(
            "reschedule_pulse",
            {"pulse_id": 999999, "when": "in 1h"},
            "No pulse with id 999999; list_upcoming_pulses (include_finished=true) "
            "shows the ids",
            id="reschedule-unknown",
        ),
        pytest.param(
            "no_such_tool",
            {},
            "Unknown tool: no_such_tool",
            id="unknown-tool",
        ),
    ],
)
def test_pulse_tools_reject_bad_ids(server, tool, arguments, message):
    text = server.error(tool, **arguments)

    assert message in text


# cancel / reschedule -------------------------------------------------------------


def test_cancel_pulse_cancels_pending_pulse(server, rows):
    _, made = server.ok("schedule_pulse", when="in 1h", prompt="drop", tags=["t-c"])

    text, data = server.ok("cancel_pulse", pulse_id=made["id"])

    assert data["status"] == "cancelled"
    assert pulse_row(rows, made["id"])["status"] == "cancelled"
    assert text.startswith(f"Cancelled pulse {made['id']}; it was due ")


def test_cancel_pulse_refuses_finished_pulse(server):
    _, made = server.ok("schedule_pulse", when="in 1h", prompt="twice", tags=["t-c2"])
    server.ok("cancel_pulse", pulse_id=made["id"])

    text = server.error("cancel_pulse", pulse_id=made["id"])

    assert text == (
        f"Error executing tool cancel_pulse: Pulse {made['id']} is cancelled; "
        "only pending pulses can be cancelled"
    )


def test_reschedule_pulse_moves_pending_pulse(server, rows):
    _, made = server.ok("schedule_pulse", when="in 1h", prompt="move", tags=["t-r"])

    text, data = server.ok(
        "reschedule_pulse", pulse_id=made["id"], when="2031-01-02 09:00"
    )

    assert data["scheduled_at"] == "2031-01-02T08:00:00Z"
    assert pulse_row(rows, made["id"])["scheduled_at"] == "2031-01-02T08:00:00.000000Z"
    assert "to 2031-01-02 09:00:00 CET (2031-01-02T08:00:00Z" in text


def test_reschedule_pulse_rejects_unreadable_time(server, rows):
    _, made = server.ok("schedule_pulse", when="in 1h", prompt="stay", tags=["t-r2"])
    before = pulse_row(rows, made["id"])["scheduled_at"]

    text = server.error("reschedule_pulse", pulse_id=made["id"], when="someday")

    assert "Cannot read time 'someday'" in text
    assert pulse_row(rows, made["id"])["scheduled_at"] == before


def test_reschedule_pulse_refuses_running_pulse(server, rows):
    _, made = server.ok("schedule_pulse", when="in 1h", prompt="busy", tags=["t-r3"])
    rows.execute("UPDATE pulses SET status = 'running' WHERE id = ?", (made["id"],))
    rows.commit()

    text = server.error("reschedule_pulse", pulse_id=made["id"], when="in 2h")

    assert text == (
        f"Error executing tool reschedule_pulse: Pulse {made['id']} is running; "
        "only pending pulses can be rescheduled"
    )


# Schedules ----------------------------------------------------------------------


def test_create_schedule_stores_cron_schedule(server, rows):
    text, data = server.ok(
        "create_schedule",
        name="morning",
        prompt="brief me",
        cron="0 7 * * *",
        priority="high",
    )

    row = rows.execute("SELECT * FROM schedules WHERE name = 'morning'").fetchone()
    assert row["cron"] == "0 7 * * *"
    assert row["tz"] == ZONE
    assert data["name"] == "morning"
    assert data["priority"] == "high"
    fires = [utc(t).astimezone(ZoneInfo(ZONE)) for t in data["next_fire_times"]]
    assert [(f.hour, f.minute) for f in fires] == [(7, 0)] * 3
    assert fires[1] - fires[0] == timedelta(days=1)
    assert text.startswith("Created schedule 'morning' [active, high] cron '0 7 * * *'")
    assert "It fires next " in text


def test_create_schedule_with_interval(server):
    text, data = server.ok("create_schedule", name="often", prompt="look", every="2h")

    assert data["every_s"] == 7200.0
    assert "every 2h" in text
    assert data["cron"] is None


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param(
            {"name": "neither", "prompt": "x"},
            "Give exactly one of cron or every",
            id="no-rule",
        ),
        pytest.param(
            {"name": "badcron", "prompt": "x", "cron": "61 * * * *"},
            "61",
            id="bad-cron",
        ),
        pytest.param(
            {"name": "badtz", "prompt": "x", "cron": "0 7 * * *", "tz": "Mars/Base"},
            "Mars/Base",
            id="bad-zone",
        ),
    ],
)
def test_create_schedule_rejects_bad_rules(server, rows, arguments, message):
    text = server.error("create_schedule", **arguments)

    assert text.startswith("Error executing tool create_schedule: ")
    assert message in text
    assert "--" not in text
    name = arguments["name"]
    assert (
        rows.execute("SELECT 1 FROM schedules WHERE name = ?", (name,)).fetchone()
        is None
    )


def test_create_schedule_refuses_taken_name(server):
    server.ok("create_schedule", name="twin", prompt="x", every="1h")

    text = server.error("create_schedule", name="twin", prompt="y", every="1h")

    assert "A schedule named 'twin' exists" in text


def test_pause_and_resume_schedule(server, rows):
    server.ok("create_schedule", name="beat", prompt="x", cron="*/30 * * * *")

    paused_text, paused = server.ok("pause_schedule", name="beat")
    paused_row = rows.execute(
        "SELECT paused FROM schedules WHERE name='beat'"
    ).fetchone()
    resumed_text, resumed = server.ok("resume_schedule", name="beat")

    assert paused["paused"] is True
    assert paused_row["paused"] == 1
    assert "[paused, normal]" in paused_text
    assert resumed["paused"] is False
    assert paused["next_fire_times"] == []
    assert len(resumed["next_fire_times"]) == 3
    assert "It fires next " in resumed_text


@pytest.mark.parametrize("tool", ["pause_schedule", "resume_schedule"])
def test_pause_and_resume_name_list_schedules_for_unknown_name(server, tool):
    text = server.error(tool, name="nope")

    assert text == (
        f"Error executing tool {tool}: No schedule named 'nope'; see list_schedules"
    )


def test_list_schedules_shows_rules_and_next_fire(server):
    server.ok("create_schedule", name="listed", prompt="tick", cron="15 6 * * mon-fri")

    text, data = server.ok("list_schedules")

    listed = next(s for s in data["schedules"] if s["name"] == "listed")
    assert listed["cron"] == "15 6 * * mon-fri"
    local = utc(listed["next_fire_times"][0]).astimezone(ZoneInfo(ZONE))
    assert (local.hour, local.minute) == (6, 15)
    assert local.weekday() < 5
    assert (
        "- 'listed' [active, normal] cron '15 6 * * mon-fri' in Europe/Berlin" in text
    )


# Notifications and current pulse ------------------------------------------------


def test_send_notification_without_notifier_says_how_to_set_one(server, rows):
    text = server.error("send_notification", message="hello")

    assert text.startswith(
        "Error executing tool send_notification: No notifier configured; set "
        "REEVE_TELEGRAM_TOKEN and REEVE_TELEGRAM_CHAT_IDS"
    )
    assert rows.execute("SELECT COUNT(*) FROM notifications").fetchone()[0] == 0


def test_send_notification_rejects_bad_priority(server):
    text = server.error("send_notification", message="hello", priority="loud")

    assert "Unknown priority 'loud'" in text


def test_current_pulse_outside_reeve_says_so(server):
    text, data = server.ok("current_pulse")

    assert data["started_by_reeve"] is False
    assert data["pulse"] is None
    assert text.startswith("This session was not started by Reeve")


# The process itself ---------------------------------------------------------------


def test_stdout_carries_only_protocol_messages(home, rows, tmp_path):
    """Raw JSON-RPC with an older protocol version; every stdout line parses.

    The same process also shows that options given to `mcp serve` itself win
    over the global ones before `mcp` (one spawn fewer for the suite).
    """
    messages = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": "get_pulse", "arguments": {"pulse_id": 4242}},
        },
        {
            "jsonrpc": "2.0",
            "id": 4,
            "method": "tools/call",
            "params": {
                "name": "schedule_pulse",
                "arguments": {"when": "2031-07-01 06:45", "prompt": "raw"},
            },
        },
    ]
    given_late = settings_args(home / "data", home / "config.toml", "America/New_York")
    args = ["--data-dir", str(tmp_path / "wrong"), "--timezone", "Asia/Tokyo"]
    args += ["mcp", "serve", *given_late]

    proc = subprocess.Popen(
        [reeve_bin(), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=bare_env(PATH="/usr/bin:/bin"),
    )
    proc.stdin.write("".join(json.dumps(m) + "\n" for m in messages))
    proc.stdin.flush()
    lines = [proc.stdout.readline() for _ in range(4)]  # one reply per request
    rest, stderr = proc.communicate(timeout=60)  # closes stdin: the server exits

    replies = [json.loads(line) for line in lines + rest.splitlines()]
    by_id = {r["id"]: r for r in replies}
    assert set(by_id) == {1, 2, 3, 4}
    assert len(by_id[2]["result"]["tools"]) == len(TOOLS)
    assert by_id[3]["result"]["isError"] is True
    assert proc.returncode == 0
    assert "Traceback" not in stderr
    created = by_id[4]["result"]["structuredContent"]
    assert created["source"] == "mcp"
    assert (
        pulse_row(rows, created["id"])["scheduled_at"] == "2031-07-01T10:45:00.000000Z"
    )
    assert not (tmp_path / "wrong").exists()


def test_bad_config_reaches_the_model_as_tool_error(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("this is = = not toml\n")
    args = settings_args(tmp_path / "data", config) + ["mcp", "serve"]

    with McpServer(args, bare_env(), tmp_path / "server.err") as bad:
        tools = bad.list_tools()
        text = bad.error("list_upcoming_pulses")

    assert len(tools) == len(TOOLS)
    assert text.startswith(
        f"Error executing tool list_upcoming_pulses: Config file {config}"
    )
    assert "Traceback" not in bad.stderr()


def test_start_up_imports_no_heavy_library_beyond_the_sdk(home, rows):
    """Start-up is spawn to tool list: no scheduler, ORM, bot or date parser."""
    args = settings_args(home / "data", home / "config.toml") + ["mcp", "serve"]

    result = subprocess.run(
        [sys.executable, "-X", "importtime", reeve_bin(), *args],
        input="",  # end of input at once: the server starts, then exits
        capture_output=True,
        text=True,
        env=bare_env(PATH="/usr/bin:/bin"),
        timeout=60,
    )

    names = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert result.returncode == 0, result.stderr[-2000:]
    assert {"mcp", "reeve_cli"} <= names
    heavy = {"apscheduler", "sqlalchemy", "alembic", "telebot", "dateparser", "pluggy"}
    assert names & heavy == set()
