"""Import guard: `--help`, TAB completion and `pulse list --json` stay light.

Every TAB press runs `reeve` again, so start-up time is typing latency. These
tests read `python -X importtime` output, so they fail when a heavy library
creeps onto one of these paths (timings themselves live in bench/).
"""

import os
import subprocess
import sys

import pytest

from tests.conftest import reeve_bin

HEAVY = (
    "sqlalchemy", "apscheduler", "mcp", "telebot", "uvicorn", "starlette",
    "alembic", "dateparser", "pluggy", "httpx", "httpx2", "pydantic", "aiohttp",
)  # fmt: skip
STORE_HEAVY = ("sqlalchemy", "alembic", "dateparser")


def imported_modules(*args, env=None):
    """Run the entry point under -X importtime; return (result, top-level names)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", reeve_bin(), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            names.add(name.split(".")[0])
    return result, names


def test_importtime_output_is_parsed():
    """Guard the guard: a module we know is imported must be seen."""
    _, names = imported_modules("--help")

    assert "typer" in names
    assert "reeve_cli" in names


@pytest.mark.parametrize("args", [["--help"], ["pulse", "--help"], ["--version"]])
def test_help_imports_no_heavy_library(args):
    result, names = imported_modules(*args)

    assert result.returncode == 0
    assert sorted(names & set(HEAVY)) == []


def test_tab_completion_imports_no_heavy_library():
    env = {
        "_REEVE_COMPLETE": "complete_bash",
        "COMP_WORDS": "reeve pulse ",
        "COMP_CWORD": "2",
    }

    result, names = imported_modules(env=env)

    assert result.returncode == 0
    assert {"add", "list", "cancel"} <= set(result.stdout.split())
    assert sorted(names & set(HEAVY)) == []


def test_pulse_list_json_does_not_import_the_orm_or_dateparser(run_reeve):
    run_reeve("db", "upgrade")  # the first use migrates, which needs Alembic

    result, names = imported_modules("pulse", "list", "--json")

    assert result.returncode == 0
    assert result.stdout == "[]\n"
    assert sorted(names & set(STORE_HEAVY)) == []


def test_pulse_add_with_strict_time_does_not_import_dateparser(run_reeve):
    run_reeve("db", "upgrade")

    result, names = imported_modules("pulse", "add", "x", "--at", "in 5m")

    assert result.returncode == 0
    assert sorted(names & set(STORE_HEAVY)) == []


def test_python_m_reeve_cli_help_imports_no_heavy_library():
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "reeve_cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )

    names = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert result.returncode == 0
    assert "Usage:" in result.stdout
    assert sorted(names & set(HEAVY)) == []
