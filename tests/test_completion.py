"""Shell completion: committed scripts are current and actually complete."""

import os
import subprocess
from pathlib import Path

import pytest

from reeve_cli.completion import DEFAULT_DIR, FILES, main, script, stale
from tests.conftest import reeve_bin


@pytest.mark.parametrize("shell", sorted(FILES))
def test_committed_script_is_current(shell):
    committed = (DEFAULT_DIR / FILES[shell]).read_text()

    assert committed == script(shell), "stale: run `make completions`"


@pytest.mark.parametrize("shell", sorted(FILES))
def test_script_is_what_show_completion_prints(run_reeve, shell):
    env = {"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}

    result = run_reeve("--show-completion", shell, env=env)

    assert result.returncode == 0
    assert result.stdout == script(shell)


def test_check_reports_stale_and_missing_scripts(tmp_path, capsys):
    main(["completions", str(tmp_path)])
    (tmp_path / "reeve.fish").write_text("old\n")
    (tmp_path / "_reeve").unlink()

    code = main(["check", str(tmp_path)])

    assert code == 1
    assert stale(tmp_path) == [tmp_path / "_reeve", tmp_path / "reeve.fish"]
    assert capsys.readouterr().err == (
        f"Stale completion script: {tmp_path / '_reeve'}; run make completions\n"
        f"Stale completion script: {tmp_path / 'reeve.fish'}; run make completions\n"
    )


def test_check_passes_on_fresh_scripts(tmp_path):
    main(["completions", str(tmp_path)])

    assert main(["check", str(tmp_path)]) == 0


def bash_complete(words, cword):
    code = (
        f"source {DEFAULT_DIR / 'reeve.bash'}; COMP_WORDS=({words}); "
        f"COMP_CWORD={cword}; _reeve_completion reeve; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    path = f"{Path(reeve_bin()).parent}:{os.environ['PATH']}"
    return subprocess.run(
        ["bash", "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": path},
        timeout=60,
    )


def test_bash_script_completes_pulse_commands():
    result = bash_complete('reeve pulse ""', 2)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "add", "list", "show", "cancel", "reschedule", "history"
    ]  # fmt: skip


def test_bash_script_completes_options():
    result = bash_complete("reeve pulse list --st", 3)

    assert result.stdout.split() == ["--status"]
