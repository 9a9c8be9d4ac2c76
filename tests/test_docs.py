"""The docs follow the code: every command, every setting, cog blocks current."""

import re
import subprocess
import sys

import pytest
import typer.main

from reeve_cli.cli import app
from reeve_cli.config import SETTINGS
from tests.conftest import ROOT

DOCS = ROOT / "docs"


def command_paths():
    def walk(command, path):
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, (*path, name))

    return list(walk(typer.main.get_command(app), ()))


def test_cog_blocks_are_current():
    files = [str(ROOT / "README.md"), *map(str, sorted(DOCS.glob("*.md")))]

    result = subprocess.run(
        [sys.executable, "-m", "cogapp", "--check", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, f"run `make docs`:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize(
    ("path", "command"),
    [pytest.param(p, c, id=" ".join(p) or "reeve") for p, c in command_paths()],
)
def test_every_command_is_in_cli_md_with_help(path, command):
    text = (DOCS / "cli.md").read_text()

    assert re.search(rf"^#+ {re.escape(' '.join(('reeve', *path)))}$", text, re.M)
    assert command.get_short_help_str().strip(), "command has no help text"


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.env)
def test_every_setting_is_in_configuration_md(setting):
    text = (DOCS / "configuration.md").read_text()

    assert f"| `{setting.name}` | `{setting.env}` |" in text


def test_readme_has_the_two_quick_start_commands_and_live_links():
    text = (ROOT / "README.md").read_text()

    assert "make run" in text and "make test" in text
    for target in re.findall(r"\]\(((?:docs|completions)/[^)#]*)\)", text):
        assert (ROOT / target).exists(), target


def test_configuration_md_documents_the_dst_rule():
    text = (DOCS / "configuration.md").read_text()

    assert "`2026-03-29 02:30` does not exist and becomes 03:30 CEST" in text
    assert "`2026-10-25 02:30` is 02:30 CEST (00:30 UTC)" in text
