"""The root `reeve` command: deferred sub-apps behave like Typer's eager tree."""

import json

import typer.main
from typer._click import Context

from reeve_cli.cli import app, build_command
from reeve_cli.cli.lazy import Deferred, LazyGroup


def eager_tree():
    return typer.main.get_command(app)


def test_deferred_root_lists_the_same_commands_in_the_same_order():
    eager = eager_tree()
    lazy = build_command()

    assert list(lazy.commands) == list(eager.commands)


def test_every_deferred_group_builds_the_same_commands_and_params():
    eager = eager_tree()
    lazy = build_command()
    ctx = Context(lazy)

    for name, command in eager.commands.items():
        built = lazy.get_command(ctx, name)
        assert isinstance(built, type(command)), name
        assert built.get_short_help_str() == command.get_short_help_str()
        assert [p.name for p in built.params] == [p.name for p in command.params]
        sub_commands = getattr(command, "commands", {})
        assert list(getattr(built, "commands", {})) == list(sub_commands), name
        sub_ctx = Context(built, parent=ctx)
        for sub_name, sub in sub_commands.items():
            lazy_sub = built.commands[sub_name]
            assert lazy_sub.get_short_help_str() == sub.get_short_help_str()
            assert lazy_sub.hidden == sub.hidden
            real = built.get_command(sub_ctx, sub_name)
            assert type(real) is type(sub)
            assert real.help == sub.help
            assert [p.opts for p in real.params] == [p.opts for p in sub.params]


def test_building_is_deferred_until_a_group_is_used():
    lazy = build_command()
    ctx = Context(lazy)

    assert type(lazy.commands["pulse"]) is Deferred
    pulse = lazy.get_command(ctx, "pulse")
    assert type(pulse) is LazyGroup
    assert type(pulse.commands["list"]) is Deferred
    pulse.get_command(Context(pulse, parent=ctx), "list")
    assert type(pulse.commands["list"]).__name__ == "TyperCommand"
    assert type(pulse.commands["add"]) is Deferred
    assert type(lazy.commands["config"]) is Deferred


def test_entry_point_help_lists_every_command(run_reeve):
    result = run_reeve("--help")

    assert result.returncode == 0
    listed = result.stdout.split("Commands:", 1)[1]
    for name, command in eager_tree().commands.items():
        if not command.hidden:
            assert f"\n  {name} " in listed


def test_entry_point_completes_group_names(run_reeve):
    env = {
        "_REEVE_COMPLETE": "complete_bash",
        "COMP_WORDS": "reeve pu",
        "COMP_CWORD": "1",
    }

    result = run_reeve(env=env)

    assert result.returncode == 0
    assert result.stdout.split() == ["pulse"]


def test_entry_point_suggests_a_misspelled_group(run_reeve):
    result = run_reeve("puls")

    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "Error: No such command 'puls'. Did you mean 'pulse'?"
    )


def run_lazy(capsys, *args):
    """Run the production command tree in-process, as `main()` does."""
    try:
        build_command().main(list(args), prog_name="reeve")
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def test_deferred_tree_runs_the_pulse_commands(capsys):
    added = run_lazy(capsys, "pulse", "add", "hi", "--at", "2030-01-01 09:00", "--json")
    listed = run_lazy(capsys, "pulse", "list", "--json")
    moved = run_lazy(capsys, "pulse", "reschedule", "1", "2030-01-02 09:00")
    cancelled = run_lazy(capsys, "pulse", "cancel", "1", "--json")
    history = run_lazy(capsys, "pulse", "history", "--json")

    assert (
        added[0] == 0 and json.loads(added[1])["scheduled_at"] == "2030-01-01T08:00:00Z"
    )
    assert [p["id"] for p in json.loads(listed[1])] == [1]
    assert moved[0] == 0 and moved[1].startswith("Rescheduled pulse 1")
    assert json.loads(cancelled[1])[0]["status"] == "cancelled"
    assert [p["id"] for p in json.loads(history[1])] == [1]


def test_deferred_tree_reports_errors_like_the_eager_one(capsys, cli):
    for args in (["pulse", "show", "7"], ["pulse", "add"], ["config", "show", "-x"]):
        code, out, err = run_lazy(capsys, *args)
        eager = cli(*args)

        assert (code, out, err) == (eager.exit_code, eager.stdout, eager.stderr)
        assert code in (1, 2)
