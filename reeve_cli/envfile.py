"""The environment file of Reeve's systemd units (`<config dir>/env`).

`reeve install-service` creates it next to the config file, mode 0600, and the
units read it with `EnvironmentFile=`; users put secrets there (the Telegram
token). Processes that systemd does not start, such as an MCP server spawned by
an agent client, read it with these functions. Stdlib only.
"""

from __future__ import annotations

from pathlib import Path

from reeve_cli.config import Settings

ENV_FILE_NAME = "env"


def env_file_path(settings: Settings) -> Path:
    """Where the units' environment file is for these settings."""
    return settings.config_file.parent / ENV_FILE_NAME


def read_env_file(path: Path) -> dict[str, str]:
    """The REEVE_* assignments of a systemd EnvironmentFile, or {} without one.

    Understands the subset Reeve writes and documents: `KEY=VALUE` lines, `#`
    and `;` comments, and values in matching single or double quotes.
    """
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return {}
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key.startswith("REEVE_"):
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values
