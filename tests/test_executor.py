"""The process runner and the built-in `command` executor, with real processes."""

import asyncio
import os
import sys
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from reeve_cli.executor import (
    TAIL_BYTES,
    AgentNotStarted,
    CommandExecutor,
    agent_env,
    build_prompt,
    process_env,
    run_process,
)
from tests.executor_helpers import (
    FAKE_AGENT,
    FAKE_COMMAND,
    await_runs,
    is_gone,
    kill_quietly,
    make_pulse,
    make_request,
    read_runs,
    settings_with,
)

FAKE_ARGV = [sys.executable, str(FAKE_AGENT)]


@pytest.fixture
def agent_log(tmp_path, monkeypatch):
    path = tmp_path / "agent-runs.jsonl"
    monkeypatch.setenv("FAKE_AGENT_LOG", str(path))
    return path


async def run_fake(tmp_path, prompt, **kwargs):
    kwargs.setdefault("timeout_s", 30.0)
    return await run_process(
        FAKE_ARGV,
        cwd=tmp_path,
        env=process_env({}),
        log_path=tmp_path / "attempt.log",
        stdin_data=prompt.encode(),
        **kwargs,
    )


async def test_run_process_reports_exit_status_and_output(tmp_path, agent_log):
    lines = []

    outcome = await run_fake(tmp_path, "[stderr oops] hi", on_line=lines.append)

    assert outcome.exit_code == 0
    assert not outcome.timed_out and not outcome.stalled
    assert "oops" in outcome.output_tail
    assert [line[:25] for line in lines][0] == b'{"type": "system", "subty'
    assert len(lines) == 3


async def test_run_process_starts_agent_in_its_own_process_group(tmp_path, agent_log):
    started = []

    await run_fake(tmp_path, "hi", on_start=started.append)

    [run] = read_runs(agent_log)
    assert started == [run["pid"]]
    assert run["pgid"] == run["pid"]
    assert run["cwd"] == str(tmp_path)


async def test_timeout_kills_process_group_including_child(tmp_path, agent_log):
    outcome = await run_fake(tmp_path, "[children] [hang]", timeout_s=1.0)

    [run] = read_runs(agent_log)
    assert outcome.timed_out is True
    assert outcome.exit_code == -15
    assert is_gone(run["pid"])
    assert is_gone(run["child_pid"]), "the agent's child survived the timeout"


async def test_stall_watchdog_kills_silent_agent(tmp_path, agent_log):
    outcome = await run_fake(
        tmp_path, "[silent 60]", timeout_s=30.0, stall_timeout_s=0.7
    )

    [run] = read_runs(agent_log)
    assert outcome.stalled is True and outcome.timed_out is False
    assert '"subtype": "init"' in outcome.output_tail
    assert outcome.duration_s < 20
    assert is_gone(run["pid"])


async def test_agent_ignoring_sigterm_is_killed_after_grace(tmp_path, agent_log):
    outcome = await run_fake(
        tmp_path, "[ignore-term] [hang]", timeout_s=0.7, kill_grace_s=0.3
    )

    [run] = read_runs(agent_log)
    assert outcome.timed_out is True
    assert outcome.exit_code == -9
    assert is_gone(run["pid"])


async def test_cancellation_kills_group_and_reraises(tmp_path, agent_log):
    task = asyncio.create_task(run_fake(tmp_path, "[children] [hang]"))
    [run] = await await_runs(agent_log)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert is_gone(run["pid"])
    assert is_gone(run["child_pid"])


async def test_escaped_descendant_holding_output_does_not_block(tmp_path, agent_log):
    """A descendant in its own session survives (see limitations.md) but the
    attempt still ends."""
    outcome = await run_fake(tmp_path, "[escape] [hang]", timeout_s=0.5)

    [run] = read_runs(agent_log)
    assert outcome.timed_out is True
    assert is_gone(run["pid"])
    assert not is_gone(run["escape_pid"], timeout=0)
    kill_quietly(run["escape_pid"], run["escape_pid"])


async def test_child_left_behind_by_finished_agent_is_killed(tmp_path, agent_log):
    outcome = await run_fake(tmp_path, "[children] done")

    [run] = read_runs(agent_log)
    assert outcome.exit_code == 0
    assert '"type": "result"' in outcome.output_tail
    assert is_gone(run["child_pid"])


async def test_output_tail_is_capped_and_full_log_is_written(tmp_path, agent_log):
    outcome = await run_fake(tmp_path, "[spam 200]")

    log_size = (tmp_path / "attempt.log").stat().st_size
    assert len(outcome.output_tail.encode()) == TAIL_BYTES
    assert outcome.output_tail.rstrip().endswith("}")
    assert '"type": "result"' in outcome.output_tail
    assert log_size > 200 * 1024
    assert (
        (tmp_path / "attempt.log").read_bytes().endswith(outcome.output_tail.encode())
    )


async def test_missing_program_raises_agent_not_started(tmp_path):
    with pytest.raises(AgentNotStarted) as info:
        await run_process(
            [str(tmp_path / "no-such-agent")],
            cwd=tmp_path,
            env=process_env({}),
            log_path=tmp_path / "attempt.log",
            timeout_s=5,
        )

    assert info.value.program_missing is True
    assert str(info.value) == f"Program '{tmp_path / 'no-such-agent'}' not found"


async def test_missing_desk_raises_agent_not_started(tmp_path):
    with pytest.raises(AgentNotStarted) as info:
        await run_process(
            FAKE_ARGV,
            cwd=tmp_path / "gone",
            env=process_env({}),
            log_path=tmp_path / "attempt.log",
            timeout_s=5,
        )

    assert info.value.program_missing is False
    assert str(info.value) == (
        f"Desk '{tmp_path / 'gone'}' does not exist or is not a directory; "
        "create it or set REEVE_DESK"
    )


def test_process_env_drops_secrets_and_adds_extra(monkeypatch):
    monkeypatch.setenv("REEVE_TELEGRAM_TOKEN", "123:secret")
    monkeypatch.setenv("REEVE_API_TOKEN", "tok")
    monkeypatch.setenv("CLAUDECODE", "1")

    env = process_env({"REEVE_PULSE_ID": "7"}, drop=["CLAUDECODE"])

    assert env["REEVE_PULSE_ID"] == "7"
    assert "REEVE_TELEGRAM_TOKEN" not in env
    assert "REEVE_API_TOKEN" not in env
    assert "CLAUDECODE" not in env
    assert env["PATH"] == os.environ["PATH"]


# The command executor


async def test_command_executor_substitutes_prompt_placeholder(
    tmp_path, agent_log, monkeypatch
):
    settings = settings_with(monkeypatch, agent_command=FAKE_COMMAND + " -- {prompt}")
    request = make_request(tmp_path, "--rm -rf / is a prompt", settings=settings)

    result = await CommandExecutor().run(request, lambda pid: None)

    [run] = read_runs(agent_log)
    assert result.ok is True and result.error is None
    assert run["prompt"] == "--rm -rf / is a prompt"
    assert run["prompt_source"] == "argv"
    assert run["argv"] == ["--", "--rm -rf / is a prompt"]
    assert result.result_text.startswith('{"type": "result"')


async def test_command_executor_sends_prompt_on_stdin_without_placeholder(
    tmp_path, agent_log, monkeypatch
):
    settings = settings_with(monkeypatch, agent_command=FAKE_COMMAND)
    request = make_request(tmp_path, "read me from stdin", settings=settings)

    result = await CommandExecutor().run(request, lambda pid: None)

    [run] = read_runs(agent_log)
    assert result.ok is True
    assert run["prompt"] == "read me from stdin"
    assert run["prompt_source"] == "stdin"
    assert run["cwd"] == str(request.desk)
    assert run["env"]["REEVE_PULSE_ID"] == "42"


async def test_command_executor_prefers_pulse_meta_command(tmp_path, agent_log):
    pulse = make_pulse(meta={"command": [sys.executable, str(FAKE_AGENT), "{prompt}"]})
    request = make_request(tmp_path, "from meta", pulse=pulse)

    result = await CommandExecutor().run(request, lambda pid: None)

    assert result.ok is True
    assert read_runs(agent_log)[0]["prompt_source"] == "argv"


async def test_command_executor_reports_exit_status(tmp_path, agent_log, monkeypatch):
    settings = settings_with(monkeypatch, agent_command=FAKE_COMMAND)
    request = make_request(tmp_path, "[exit 3]", settings=settings)

    result = await CommandExecutor().run(request, lambda pid: None)

    assert result.ok is False
    assert result.exit_code == 3
    assert result.transient is True
    assert result.error == "Agent exited with status 3"


async def test_command_executor_without_command_is_not_transient(tmp_path):
    result = await CommandExecutor().run(make_request(tmp_path), lambda pid: None)

    assert result.ok is False and result.transient is False
    assert result.error == (
        "The command executor has no command; set REEVE_AGENT_COMMAND "
        "or the pulse's meta.command"
    )


async def test_command_executor_missing_program_is_not_transient(tmp_path, monkeypatch):
    settings = settings_with(monkeypatch, agent_command="no-such-program-xyz {prompt}")
    request = make_request(tmp_path, settings=settings)

    result = await CommandExecutor().run(request, lambda pid: None)

    assert result.ok is False and result.transient is False
    assert result.exit_code is None
    assert result.error == "Program 'no-such-program-xyz' not found"


async def test_command_executor_timeout_is_reported(tmp_path, agent_log, monkeypatch):
    settings = settings_with(monkeypatch, agent_command=FAKE_COMMAND)
    request = make_request(tmp_path, "[hang]", settings=settings, timeout_s=0.5)

    result = await CommandExecutor().run(request, lambda pid: None)

    assert result.ok is False and result.timed_out is True
    assert result.error == (
        "Timed out after 0.5s; the agent's process group was killed"
    )


# What the agent receives


def test_build_prompt_has_header_prompt_and_sticky_notes():
    pulse = make_pulse(
        prompt="check the flight", sticky_notes=["gate B12", "bring passport"]
    )
    zone = ZoneInfo("Europe/Berlin")

    text = build_prompt(pulse, zone, pulse.scheduled_at + timedelta(seconds=5))

    assert text == (
        "[Reeve pulse 42 | priority high | source cli"
        " | scheduled 2026-12-03 06:45:00 CET | started 2026-12-03 06:45:05 CET]"
        "\n\ncheck the flight"
        "\n\nSticky notes:\n- gate B12\n- bring passport"
    )


def test_build_prompt_says_how_late_the_start_was():
    pulse = make_pulse()

    text = build_prompt(
        pulse, ZoneInfo("Europe/Berlin"), pulse.scheduled_at + timedelta(minutes=12)
    )

    assert text.splitlines()[0].endswith("started 2026-12-03 06:57:00 CET (12m late)]")
    assert "Sticky notes" not in text


def test_agent_env_lets_the_agent_find_the_same_database(settings):
    env = agent_env(settings, make_pulse(), attempt_id=9)

    assert env == {
        "REEVE_PULSE_ID": "42",
        "REEVE_PULSE_PRIORITY": "high",
        "REEVE_ATTEMPT_ID": "9",
        "REEVE_DATA_DIR": str(settings.data_path),
        "REEVE_DATABASE_URL": settings.db_url,
        "REEVE_CONFIG": str(settings.config_file),
        "REEVE_TIMEZONE": "Europe/Berlin",
    }


@pytest.fixture(autouse=True)
def _no_stray_children(agent_log):
    yield
    for run in read_runs(agent_log):
        for pid in (run["pid"], run["child_pid"]):
            if pid:
                kill_quietly(pid, run["pgid"])
        if run.get("escape_pid"):
            kill_quietly(run["escape_pid"], run["escape_pid"])
