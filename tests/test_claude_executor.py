"""The `claude` and `hapi` executors against the fake stream-json agent."""

import json

import pytest
from reeve_claude import ClaudeCodeExecutor, HapiExecutor, StreamState

from tests.executor_helpers import (
    FAKE_COMMAND,
    kill_quietly,
    make_request,
    read_runs,
    settings_with,
)

STREAM_ARGS = ["-p", "--output-format", "stream-json", "--verbose"]


@pytest.fixture
def agent_log(tmp_path, monkeypatch):
    path = tmp_path / "agent-runs.jsonl"
    monkeypatch.setenv("FAKE_AGENT_LOG", str(path))
    yield path
    for run in read_runs(path):
        for pid in (run["pid"], run["child_pid"]):
            if pid:
                kill_quietly(pid, run["pgid"])


@pytest.fixture
def fake_settings(monkeypatch):
    return settings_with(monkeypatch, agent_command=FAKE_COMMAND)


async def run_claude(tmp_path, settings, prompt, executor=None, **changes):
    request = make_request(tmp_path, prompt, settings=settings, **changes)
    return await (executor or ClaudeCodeExecutor()).run(request, lambda pid: None)


async def test_claude_reads_session_result_cost_and_usage(
    tmp_path, agent_log, fake_settings
):
    result = await run_claude(tmp_path, fake_settings, "check the flight")

    [run] = read_runs(agent_log)
    assert result.ok is True and result.error is None
    assert result.exit_code == 0
    assert result.session_id is not None and len(result.session_id) == 36
    assert result.result_text == "Done: check the flight"
    assert result.cost_usd == pytest.approx(0.0123)
    assert result.usage["input_tokens"] == 12
    assert result.usage["output_tokens"] == 7
    assert result.usage["num_turns"] == 1
    assert "duration_api_ms" in result.usage
    assert result.duration_s > 0
    assert run["argv"] == STREAM_ARGS
    assert run["prompt_source"] == "stdin"
    assert run["cwd"] == str(tmp_path / "desk")


async def test_resume_passes_id_and_prompt_that_look_like_flags(
    tmp_path, agent_log, fake_settings
):
    result = await run_claude(
        tmp_path, fake_settings, "--help me", session_id="-rf-session"
    )

    [run] = read_runs(agent_log)
    assert run["argv"] == [*STREAM_ARGS, "--resume=-rf-session"]
    assert run["resume"] == "-rf-session"
    assert run["prompt"] == "--help me"
    assert result.session_id == "-rf-session"


async def test_resume_keeps_the_new_session_id_from_result(
    tmp_path, agent_log, fake_settings
):
    result = await run_claude(
        tmp_path, fake_settings, "[new-session] go on", session_id="abc-1"
    )

    assert result.ok is True
    assert result.session_id not in (None, "abc-1")


async def test_error_result_fails_the_attempt(tmp_path, agent_log, fake_settings):
    result = await run_claude(tmp_path, fake_settings, "[fail]")

    assert result.ok is False
    assert result.transient is True
    assert result.exit_code == 1
    assert result.error == (
        "Agent reported an error (error_during_execution): Something went wrong"
    )
    assert result.session_id is not None
    assert result.usage["subtype"] == "error_during_execution"


async def test_exit_without_result_names_the_status(tmp_path, agent_log, fake_settings):
    result = await run_claude(tmp_path, fake_settings, "[stderr no credit] [exit 3]")

    assert result.ok is False
    assert result.exit_code == 3
    assert result.error == "Agent exited with status 3: no credit"
    assert result.session_id is not None  # the init event came before the exit
    assert result.cost_usd is None


async def test_timeout_is_reported_and_not_ok(tmp_path, agent_log, fake_settings):
    result = await run_claude(tmp_path, fake_settings, "[hang]", timeout_s=0.5)

    assert result.ok is False and result.timed_out is True
    assert result.error == "Timed out after 0.5s; the agent's process group was killed"


async def test_stall_is_reported_and_not_ok(tmp_path, agent_log, fake_settings):
    result = await run_claude(
        tmp_path, fake_settings, "[silent 60]", stall_timeout_s=0.5
    )

    assert result.ok is False and result.stalled is True
    assert result.error == (
        "Stalled: no output for 0.5s; the agent's process group was killed"
    )


@pytest.mark.parametrize(
    ("executor", "message"),
    [
        pytest.param(
            ClaudeCodeExecutor(),
            "Agent program 'claude' not found; install Claude Code or set "
            "REEVE_AGENT_COMMAND",
            id="claude",
        ),
        pytest.param(
            HapiExecutor(),
            "Agent program 'hapi' not found; install Hapi (it needs Claude Code "
            "too) or set REEVE_AGENT_COMMAND",
            id="hapi",
        ),
    ],
)
async def test_missing_agent_program_is_not_transient(
    tmp_path, monkeypatch, settings, executor, message
):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))

    result = await run_claude(tmp_path, settings, "hi", executor=executor)

    assert result.ok is False and result.transient is False
    assert result.exit_code is None
    assert result.error == message


async def test_missing_desk_is_not_transient(tmp_path, fake_settings):
    result = await run_claude(tmp_path, fake_settings, "hi", desk=tmp_path / "no-desk")

    assert result.ok is False and result.transient is False
    assert result.error.startswith(f"Desk '{tmp_path / 'no-desk'}' does not exist")


async def test_agent_gets_reeve_env_without_secrets_or_nesting_marker(
    tmp_path, agent_log, monkeypatch
):
    monkeypatch.setenv("CLAUDECODE", "1")
    monkeypatch.setenv("REEVE_TELEGRAM_TOKEN", "123:secret")
    settings = settings_with(monkeypatch, agent_command=FAKE_COMMAND)

    await run_claude(
        tmp_path, settings, "hi", env={"REEVE_PULSE_ID": "42", "REEVE_ATTEMPT_ID": "3"}
    )

    [run] = read_runs(agent_log)
    assert run["env"]["REEVE_PULSE_ID"] == "42"
    assert run["env"]["REEVE_ATTEMPT_ID"] == "3"
    assert "REEVE_TELEGRAM_TOKEN" not in run["env"]
    assert "CLAUDECODE" not in json.dumps(run)


async def test_hapi_runs_program_with_claude_flags(tmp_path, agent_log, fake_settings):
    result = await run_claude(
        tmp_path, fake_settings, "hi", executor=HapiExecutor(), session_id="s-1"
    )

    [run] = read_runs(agent_log)
    assert result.ok is True
    assert run["argv"] == [*STREAM_ARGS, "--resume=s-1"]


def test_default_programs_are_claude_and_hapi(tmp_path, settings):
    request = make_request(tmp_path, "hi", settings=settings)

    assert ClaudeCodeExecutor().argv(request) == ["claude", *STREAM_ARGS]
    assert HapiExecutor().argv(request) == ["hapi", *STREAM_ARGS]


def test_agent_command_is_shell_split(tmp_path, monkeypatch):
    settings = settings_with(
        monkeypatch,
        agent_command="'/opt/my claude/claude' --dangerously-skip-permissions",
    )
    request = make_request(tmp_path, "hi", settings=settings)

    assert ClaudeCodeExecutor().argv(request) == [
        "/opt/my claude/claude",
        "--dangerously-skip-permissions",
        *STREAM_ARGS,
    ]


def test_stream_state_ignores_noise_and_keeps_latest_session():
    state = StreamState()

    events = [
        {"type": "system", "subtype": "init", "session_id": "one"},
        {"type": "assistant", "message": {"content": [{"type": "text", "text": "hi"}]}},
        {
            "type": "result",
            "is_error": False,
            "session_id": "two",
            "cost_usd": 0.5,
            "result": "ok",
        },
    ]
    for line in [b"not json", b"[1, 2]", *(json.dumps(e).encode() for e in events)]:
        state.feed(line)

    assert state.session_id == "two"
    assert state.last_text == "hi"
    assert state.result_text == "ok"
    assert state.cost_usd == 0.5
    assert state.saw_result is True and state.is_error is False


async def test_session_id_is_reported_when_init_arrives_before_the_end(
    tmp_path, agent_log, fake_settings
):
    import asyncio

    seen = []
    reported = asyncio.Event()

    def on_session(session):
        seen.append(session)
        reported.set()

    request = make_request(
        tmp_path, "[sleep 30] work", settings=fake_settings, on_session=on_session
    )
    task = asyncio.create_task(ClaudeCodeExecutor().run(request, lambda pid: None))
    await asyncio.wait_for(reported.wait(), timeout=30)

    assert not task.done()  # the agent is still sleeping
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(seen) == 1 and len(seen[0]) == 36


async def test_resume_reports_the_new_session_id_too(
    tmp_path, agent_log, fake_settings
):
    seen = []
    request = make_request(
        tmp_path,
        "[new-session] go on",
        settings=fake_settings,
        session_id="abc-1",
        on_session=seen.append,
    )
    result = await ClaudeCodeExecutor().run(request, lambda pid: None)

    assert seen == ["abc-1", result.session_id]


def test_stream_state_survives_a_failing_session_callback():
    def broken(session):
        raise RuntimeError("callback bug")

    state = StreamState(on_session=broken)
    state.feed(b'{"type": "system", "subtype": "init", "session_id": "one"}')

    assert state.session_id == "one"
