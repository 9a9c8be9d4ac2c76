"""Shared fixtures: every test gets its own data dir, config and time zone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

ZONE = "Europe/Berlin"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def reeve_env(tmp_path, monkeypatch):
    """Point Reeve at a private data dir and config, in a zone with DST."""
    for name in list(os.environ):
        if name.startswith("REEVE_"):
            monkeypatch.delenv(name)
    data = tmp_path / "data"
    monkeypatch.setenv("REEVE_DATA_DIR", str(data))
    monkeypatch.setenv("REEVE_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("REEVE_TIMEZONE", ZONE)
    monkeypatch.setenv("REEVE_DESK", str(tmp_path))
    monkeypatch.setenv("TERM", "unknown")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "100")
    return data


@pytest.fixture
def settings(reeve_env):
    from reeve_cli.config import load_settings

    return load_settings()


@pytest.fixture
def db(settings):
    """A migrated SQLite database file in the test's data dir."""
    from reeve_cli.config import ensure_data_dir
    from reeve_cli.db import open_database

    ensure_data_dir(settings)
    database = open_database(settings.db_url)
    yield database
    database.close()


@pytest.fixture
def cli():
    """Run `reeve ARGS...` in-process; stdout and stderr stay separate."""
    from reeve_cli.cli import app

    runner = CliRunner()

    def invoke(*args, input=None):
        return runner.invoke(app, list(args), input=input, catch_exceptions=False)

    return invoke


def reeve_bin() -> str:
    """The installed `reeve` entry point of this virtualenv."""
    candidate = Path(sys.executable).with_name("reeve")
    return str(candidate) if candidate.exists() else shutil.which("reeve") or "reeve"


@pytest.fixture
def run_reeve():
    """Run the installed `reeve` entry point as a subprocess."""

    def run(*args, input=None, env=None, timeout=30):
        return subprocess.run(
            [reeve_bin(), *args],
            input=input,
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            timeout=timeout,
        )

    return run
