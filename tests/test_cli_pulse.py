"""`reeve pulse`: every command and flag, in-process and through the entry point."""

import json
from datetime import UTC, datetime

import pytest

from reeve_cli import __version__
from reeve_cli.model import db_time
from reeve_cli.timefmt import ACCEPTED_FORMS

PULSE_KEYS = {
    "id", "prompt", "scheduled_at", "priority", "status", "session_id",
    "sticky_notes", "tags", "source", "created_at", "updated_at", "started_at",
    "finished_at", "attempt", "max_retries", "error", "idempotency_key", "executor",
    "schedule_name", "result",
}  # fmt: skip
RESULT_KEYS = {
    "exit_code", "session_id", "text", "output_tail", "cost_usd", "duration_s", "usage"
}  # fmt: skip
WHEN = "2030-01-01 09:00"
WHEN_UTC = "2030-01-01T08:00:00Z"
BAD_TIME = f"Error: Cannot read time 'someday maybe'; use {ACCEPTED_FORMS}\n"
PAST_TIME = (
    "Error: Time '2020-01-01 10:00' (2020-01-01 10:00:00 CET) is in the past; give a "
    "future time, or --allow-past to run it as soon as possible\n"
)


def add_json(cli, prompt="wake up", *args):
    result = cli("pulse", "add", prompt, "--at", WHEN, *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def list_json(cli, *args):
    result = cli("pulse", "list", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def all_pulses(cli):
    return list_json(cli, "--all")


def finish(db, pulse_id, status):
    with db.transaction(write=True) as conn:
        conn.execute(
            "UPDATE pulses SET status = :s, finished_at = :f WHERE id = :id",
            {"s": status, "f": db_time(datetime.now(UTC)), "id": pulse_id},
        )


# add ---------------------------------------------------------------------------


def test_add_json_prints_the_stored_record(cli):
    result = cli(
        "pulse", "add", "check the flight", "--at", WHEN, "--priority", "high",
        "--session", "s-1", "--note", "gate B12", "--note", "seat 4A",
        "--tag", "travel", "--tag", "work", "--max-retries", "4",
        "--key", "flight", "--executor", "command", "--json",
    )  # fmt: skip

    assert result.exit_code == 0
    assert result.stderr == ""
    pulse = json.loads(result.stdout)
    assert set(pulse) == PULSE_KEYS
    assert set(pulse["result"]) == RESULT_KEYS
    assert pulse["id"] == 1
    assert pulse["prompt"] == "check the flight"
    assert pulse["scheduled_at"] == WHEN_UTC
    assert pulse["priority"] == "high"
    assert pulse["status"] == "pending"
    assert pulse["session_id"] == "s-1"
    assert pulse["sticky_notes"] == ["gate B12", "seat 4A"]
    assert pulse["tags"] == ["travel", "work"]
    assert pulse["source"] == "cli"
    assert pulse["max_retries"] == 4
    assert pulse["idempotency_key"] == "flight"
    assert pulse["executor"] == "command"
    assert pulse["created_at"].endswith("Z") and pulse["finished_at"] is None
    assert all_pulses(cli) == [pulse]


def test_add_defaults(cli):
    pulse = add_json(cli)

    assert pulse["priority"] == "normal"
    assert pulse["max_retries"] == 2
    assert pulse["sticky_notes"] == [] and pulse["tags"] == []
    assert pulse["session_id"] is None and pulse["executor"] is None


def test_add_without_at_means_now(cli):
    result = cli("pulse", "add", "right away", "--json")

    assert result.exit_code == 0
    assert json.loads(result.stdout)["status"] == "pending"


def test_add_short_flags(cli):
    result = cli(
        "pulse", "add", "x", "-a", WHEN, "-p", "low", "-n", "note", "-t", "tag",
        "--json",
    )  # fmt: skip

    pulse = json.loads(result.stdout)
    assert (pulse["priority"], pulse["sticky_notes"], pulse["tags"]) == (
        "low",
        ["note"],
        ["tag"],
    )


def test_add_human_output_names_id_priority_and_local_due_time(cli):
    result = cli("pulse", "add", "hello", "--at", WHEN, "-p", "critical")

    assert result.exit_code == 0
    assert result.stdout.startswith(
        "Added pulse 1 (critical), due 2030-01-01 09:00:00 CET (in "
    )


def test_add_reads_prompt_from_stdin(cli):
    result = cli(
        "pulse", "add", "-", "--at", WHEN, "--json", input="line one\nline two\n"
    )

    assert json.loads(result.stdout)["prompt"] == "line one\nline two"


def test_add_with_existing_key_returns_the_first_pulse(cli):
    first = add_json(cli, "one", "--key", "k1")

    again = cli("pulse", "add", "two", "--at", "in 3h", "--key", "k1", "--json")
    human = cli("pulse", "add", "three", "--key", "k1")

    assert again.exit_code == 0
    assert json.loads(again.stdout) == first
    assert again.stderr == "Pulse 1 already has key 'k1'; nothing added\n"
    assert human.exit_code == 0
    assert "one" in human.stdout
    assert len(all_pulses(cli)) == 1


def test_add_allow_past(cli):
    result = cli(
        "pulse", "add", "late", "--at", "2020-01-01 10:00", "--allow-past", "--json"
    )

    assert result.exit_code == 0
    assert json.loads(result.stdout)["scheduled_at"] == "2020-01-01T09:00:00Z"


@pytest.mark.parametrize(
    ("args", "stdin", "error"),
    [
        pytest.param(
            ["x", "--priority", "urgent"],
            None,
            "Error: Unknown priority 'urgent'; use one of critical, high, normal, "
            "low, deferred\n",
            id="bad-priority",
        ),
        pytest.param(["x", "--at", "someday maybe"], None, BAD_TIME, id="bad-time"),
        pytest.param(["x", "--at", "2020-01-01 10:00"], None, PAST_TIME, id="past"),
        pytest.param(
            ["-"],
            "\n",
            "Error: The prompt is empty; say what the agent should do\n",
            id="empty-stdin",
        ),
        pytest.param(
            ["  "],
            None,
            "Error: The prompt is empty; say what the agent should do\n",
            id="blank-prompt",
        ),
        pytest.param(
            ["x", "--tag", ""], None, "Error: A tag cannot be empty\n", id="empty-tag"
        ),
        pytest.param(
            ["x", "--max-retries", "-1"],
            None,
            "Error: max_retries must be between 0 and 100, got -1\n",
            id="negative-retries",
        ),
        pytest.param(
            ["x" * 20],
            None,
            "Error: The prompt is 20 bytes; the limit is 10 (REEVE_MAX_PROMPT_BYTES)\n",
            id="prompt-too-big",
        ),
    ],
)
def test_add_errors_print_one_line_and_write_nothing(
    cli, monkeypatch, args, stdin, error
):
    monkeypatch.setenv("REEVE_MAX_PROMPT_BYTES", "10")

    result = cli("pulse", "add", *args, input=stdin)

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == error
    assert all_pulses(cli) == []


# list ----------------------------------------------------------------------------


def test_list_json_is_empty_list_when_nothing(cli):
    result = cli("pulse", "list", "--json")

    assert result.exit_code == 0
    assert result.stdout == "[]\n"


def test_list_human_when_empty_says_so_on_stderr(cli):
    result = cli("pulse", "list")

    assert result.exit_code == 0
    assert result.stdout == ""
    assert result.stderr == "No pulses; add one with 'reeve pulse add'\n"


def test_list_shows_pending_by_default_next_due_first(cli, db):
    later = add_json(cli, "later", "--at", "2030-01-02 09:00")
    sooner = add_json(cli, "sooner")
    done = add_json(cli, "done")
    finish(db, done["id"], "completed")

    pulses = list_json(cli)

    assert [p["id"] for p in pulses] == [sooner["id"], later["id"]]


def test_list_filters(cli, db):
    mail = add_json(cli, "mail", "--tag", "mail", "-p", "high")
    other = add_json(cli, "other", "-p", "low")
    failed = add_json(cli, "failed", "--tag", "mail")
    finish(db, failed["id"], "failed")

    assert [p["id"] for p in list_json(cli, "--tag", "mail")] == [mail["id"]]
    assert [p["id"] for p in list_json(cli, "--priority", "low")] == [other["id"]]
    assert [p["id"] for p in list_json(cli, "--status", "failed")] == [failed["id"]]
    # Same due time: the more urgent first (high, normal, low).
    assert [p["id"] for p in list_json(cli, "-s", "failed", "-s", "pending")] == [
        mail["id"],
        failed["id"],
        other["id"],
    ]
    assert [p["id"] for p in list_json(cli, "--all", "--tag", "mail")] == [
        mail["id"],
        failed["id"],
    ]
    assert len(list_json(cli, "--all", "--limit", "2")) == 2
    assert len(list_json(cli, "--all")) == 3


def test_list_human_table_shows_local_time_and_escapes_user_text(cli):
    add_json(cli, "[red]alarm[/red] first line\nsecond line", "--tag", "[b]t[/b]")

    result = cli("pulse", "list")

    assert result.exit_code == 0
    assert "[red]alarm[/red] first line" in result.stdout
    assert "second line" not in result.stdout
    assert "[b]t[/b]" in result.stdout
    assert "2030-01-01 09:00 CET" in result.stdout
    assert result.stdout.splitlines()[0].split() == [
        "ID", "Due", "When", "Priority", "Status", "Prompt", "Tags"
    ]  # fmt: skip


def test_list_says_when_the_limit_cut_it(cli):
    for name in ("one", "two", "three"):
        add_json(cli, name)

    cut = cli("pulse", "list", "--limit", "2")
    whole = cli("pulse", "list", "--limit", "3")

    assert cut.stderr == "Showing the first 2; raise --limit to see more\n"
    assert len(cut.stdout.splitlines()) == 4
    assert whole.stderr == ""


def test_list_bad_status(cli):
    result = cli("pulse", "list", "--status", "bogus")

    assert result.exit_code == 1
    assert result.stderr == (
        "Error: Unknown status 'bogus'; use one of pending, running, completed, "
        "failed, cancelled\n"
    )


def test_list_bad_priority(cli):
    result = cli("pulse", "list", "--priority", "meh")

    assert result.exit_code == 1
    assert result.stderr == (
        "Error: Unknown priority 'meh'; use one of critical, high, normal, low, "
        "deferred\n"
    )


# show ----------------------------------------------------------------------------


def test_show_json_has_the_record_and_attempts(cli):
    pulse = add_json(cli, "hello", "--note", "n1")

    result = cli("pulse", "show", str(pulse["id"]), "--json")

    assert result.exit_code == 0
    assert json.loads(result.stdout) == {**pulse, "attempts": []}


def test_show_human(cli):
    add_json(cli, "hello [i]there[/i]", "--note", "remember", "--tag", "a")

    result = cli("pulse", "show", "1")

    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["id", "1"]
    assert "prompt    hello [i]there[/i]" in lines
    assert "note      remember" in lines
    assert any(line.startswith("due       2030-01-01 09:00:00 CET") for line in lines)


def test_show_lists_attempts_on_stdout(cli, db):
    add_json(cli)
    with db.transaction(write=True) as conn:
        conn.execute(
            "INSERT INTO attempts (pulse_id, number, status, started_at, duration_s, "
            "exit_code, error) VALUES (1, 1, 'failed', :at, 1.5, 3, 'boom')",
            {"at": db_time(datetime.now(UTC))},
        )

    human = cli("pulse", "show", "1")
    as_json = cli("pulse", "show", "1", "--json")

    assert human.stdout.splitlines()[-1] == "attempt 1  failed, exit 3, 1.5s: boom"
    assert human.stderr == ""
    attempts = json.loads(as_json.stdout)["attempts"]
    assert [(a["number"], a["status"], a["exit_code"]) for a in attempts] == [
        (1, "failed", 3)
    ]


# cancel --------------------------------------------------------------------------


def test_cancel_several(cli):
    one, two, three = (add_json(cli, name) for name in ("one", "two", "three"))

    result = cli("pulse", "cancel", str(one["id"]), str(three["id"]), "--json")

    assert result.exit_code == 0
    cancelled = json.loads(result.stdout)
    assert [(p["id"], p["status"]) for p in cancelled] == [
        (one["id"], "cancelled"),
        (three["id"], "cancelled"),
    ]
    assert cancelled[0]["finished_at"].endswith("Z")
    assert [p["id"] for p in list_json(cli)] == [two["id"]]


def test_cancel_human(cli):
    add_json(cli)

    result = cli("pulse", "cancel", "1")

    assert result.stdout == "Cancelled pulse 1\n"


@pytest.mark.parametrize("status", ["completed", "cancelled", "failed", "running"])
def test_cancel_refuses_a_pulse_that_left_pending(cli, db, status):
    pulse = add_json(cli)
    finish(db, pulse["id"], status)

    result = cli("pulse", "cancel", "1")

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"Error: Pulse 1 is {status}; only pending pulses can be cancelled\n"
    )


def test_cancel_twice(cli):
    add_json(cli)
    cli("pulse", "cancel", "1")

    result = cli("pulse", "cancel", "1")

    assert result.exit_code == 1
    assert result.stderr == (
        "Error: Pulse 1 is cancelled; only pending pulses can be cancelled\n"
    )


def test_cancel_with_one_unknown_id_cancels_nothing(cli):
    add_json(cli)

    result = cli("pulse", "cancel", "1", "7")

    assert result.exit_code == 1
    assert result.stderr == "Error: No pulse with id 7; see 'reeve pulse list --all'\n"
    assert list_json(cli)[0]["status"] == "pending"


# reschedule ----------------------------------------------------------------------


def test_reschedule(cli):
    add_json(cli)

    result = cli("pulse", "reschedule", "1", "2031-06-01 10:00", "--json")
    human = cli("pulse", "reschedule", "1", "2031-06-02 10:00")

    assert result.exit_code == 0
    assert json.loads(result.stdout)["scheduled_at"] == "2031-06-01T08:00:00Z"
    assert human.stdout.startswith(
        "Rescheduled pulse 1, due 2031-06-02 10:00:00 CEST (in "
    )


def test_reschedule_past_needs_allow_past(cli):
    add_json(cli)

    refused = cli("pulse", "reschedule", "1", "2020-01-01 10:00")
    allowed = cli("pulse", "reschedule", "1", "2020-01-01 10:00", "--allow-past")

    assert refused.exit_code == 1
    assert refused.stderr == PAST_TIME
    assert allowed.exit_code == 0


def test_reschedule_bad_time_changes_nothing(cli):
    pulse = add_json(cli)

    result = cli("pulse", "reschedule", "1", "someday maybe")

    assert result.exit_code == 1
    assert result.stderr == BAD_TIME
    assert list_json(cli) == [pulse]


def test_reschedule_refuses_finished_pulse(cli, db):
    add_json(cli)
    finish(db, 1, "completed")

    result = cli("pulse", "reschedule", "1", "in 1h")

    assert result.exit_code == 1
    assert result.stderr == (
        "Error: Pulse 1 is completed; only pending pulses can be rescheduled\n"
    )


# history -------------------------------------------------------------------------


def test_history_lists_finished_pulses_newest_first(cli, db):
    first, second, _pending = (add_json(cli, n) for n in ("first", "second", "p"))
    finish(db, second["id"], "failed")
    finish(db, first["id"], "completed")

    history = cli("pulse", "history", "--json")
    limited = cli("pulse", "history", "--limit", "1", "--json")
    human = cli("pulse", "history")

    assert [p["id"] for p in json.loads(history.stdout)] == [first["id"], second["id"]]
    assert [p["id"] for p in json.loads(limited.stdout)] == [first["id"]]
    assert "completed" in human.stdout and "failed" in human.stdout


def test_history_empty(cli):
    result = cli("pulse", "history", "--json")
    human = cli("pulse", "history")

    assert result.stdout == "[]\n"
    assert human.stderr == "No finished pulses yet\n"


# ids and usage errors --------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "error"),
    [
        pytest.param(
            ["show", "99"],
            "Error: No pulse with id 99; see 'reeve pulse list --all'\n",
            id="show-unknown",
        ),
        pytest.param(
            ["cancel", "99"],
            "Error: No pulse with id 99; see 'reeve pulse list --all'\n",
            id="cancel-unknown",
        ),
        pytest.param(
            ["reschedule", "99", "in 1h"],
            "Error: No pulse with id 99; see 'reeve pulse list --all'\n",
            id="reschedule-unknown",
        ),
        pytest.param(
            ["show", "abc"],
            "Error: Pulse ids are whole numbers, got 'abc'; see 'reeve pulse list'\n",
            id="show-non-numeric",
        ),
        pytest.param(
            ["cancel", "1", "x2"],
            "Error: Pulse ids are whole numbers, got 'x2'; see 'reeve pulse list'\n",
            id="cancel-non-numeric",
        ),
        pytest.param(
            ["reschedule", "one", "in 1h"],
            "Error: Pulse ids are whole numbers, got 'one'; see 'reeve pulse list'\n",
            id="reschedule-non-numeric",
        ),
        pytest.param(
            ["show", "0"], "Error: Pulse ids start at 1, got '0'\n", id="id-zero"
        ),
    ],
)
def test_id_errors(cli, args, error):
    result = cli("pulse", *args)

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == error


@pytest.mark.parametrize(
    ("args", "last_line"),
    [
        pytest.param(
            ["pulse", "add"], "Error: Missing argument 'PROMPT'.", id="no-prompt"
        ),
        pytest.param(
            ["pulse", "add", "x", "--bogus"],
            "Error: No such option: --bogus",
            id="unknown-option",
        ),
        pytest.param(
            ["pulse", "add", "x", "--max-retries", "many"],
            "Error: Invalid value for '--max-retries': 'many' is not a valid int.",
            id="not-an-int",
        ),
        pytest.param(
            ["pulse", "list", "--limit", "0"],
            "Error: Invalid value for '--limit' / '-l': 0 is not in the range x>=1.",
            id="limit-zero",
        ),
        pytest.param(
            ["pulse", "cancel"], "Error: Missing argument 'ID...'.", id="cancel"
        ),
        pytest.param(
            ["pulse", "reschedule", "1"],
            "Error: Missing argument 'WHEN'.",
            id="reschedule-no-when",
        ),
        pytest.param(
            ["pulse", "fly"], "Error: No such command 'fly'.", id="unknown-command"
        ),
    ],
)
def test_usage_errors_exit_2_with_plain_lines(cli, args, last_line):
    result = cli(*args)

    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0].startswith("Usage: reeve ")
    assert lines[-1] == last_line
    assert "╭" not in result.stderr
    assert all_pulses(cli) == []


def test_version(cli):
    result = cli("--version")

    assert result.exit_code == 0
    assert result.stdout == f"reeve {__version__}\n"


def test_pulse_without_command_shows_help(cli):
    result = cli("pulse")

    assert "add" in result.stdout + result.stderr
    assert "reschedule" in result.stdout + result.stderr


# the installed entry point -------------------------------------------------------


def test_entry_point_add_list_show_cancel(run_reeve):
    added = run_reeve("pulse", "add", "from the shell", "--at", WHEN, "--json")
    listed = run_reeve("pulse", "list", "--json")
    shown = run_reeve("pulse", "show", "1", "--json")
    cancelled = run_reeve("pulse", "cancel", "1", "--json")
    history = run_reeve("pulse", "history", "--json")

    pulse = json.loads(added.stdout)
    assert added.returncode == 0 and added.stderr == ""
    assert pulse["scheduled_at"] == WHEN_UTC
    assert json.loads(listed.stdout) == [pulse]
    assert json.loads(shown.stdout) == {**pulse, "attempts": []}
    assert json.loads(cancelled.stdout)[0]["status"] == "cancelled"
    assert [p["id"] for p in json.loads(history.stdout)] == [1]


def test_entry_point_reads_stdin(run_reeve):
    result = run_reeve("pulse", "add", "-", "--at", WHEN, "--json", input="piped\n")

    assert json.loads(result.stdout)["prompt"] == "piped"


def test_entry_point_reschedule(run_reeve):
    run_reeve("pulse", "add", "x", "--at", WHEN)

    result = run_reeve("pulse", "reschedule", "1", "2031-01-01 10:00", "--json")

    assert json.loads(result.stdout)["scheduled_at"] == "2031-01-01T09:00:00Z"


@pytest.mark.parametrize(
    ("args", "code", "stderr"),
    [
        pytest.param(
            ["pulse", "add", "x", "--at", "someday maybe"], 1, BAD_TIME, id="bad-time"
        ),
        pytest.param(
            ["pulse", "add", "x", "--at", "2020-01-01 10:00"], 1, PAST_TIME, id="past"
        ),
        pytest.param(
            ["pulse", "show", "5"],
            1,
            "Error: No pulse with id 5; see 'reeve pulse list --all'\n",
            id="unknown-id",
        ),
        pytest.param(
            ["pulse", "add", "x", "-p", "asap"],
            1,
            "Error: Unknown priority 'asap'; use one of critical, high, normal, low, "
            "deferred\n",
            id="bad-priority",
        ),
        pytest.param(
            ["pulse", "add"],
            2,
            "Usage: reeve pulse add [OPTIONS] {PROMPT}\n"
            "Try 'reeve pulse add -h' for help.\n\n"
            "Error: Missing argument 'PROMPT'.\n",
            id="usage",
        ),
    ],
)
def test_entry_point_errors(run_reeve, args, code, stderr):
    result = run_reeve(*args)

    assert result.returncode == code
    assert result.stdout == ""
    assert result.stderr == stderr
    assert run_reeve("pulse", "list", "--all", "--json").stdout == "[]\n"


def test_entry_point_version(run_reeve):
    result = run_reeve("--version")

    assert result.returncode == 0
    assert result.stdout == f"reeve {__version__}\n"
