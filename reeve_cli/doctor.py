"""`reeve doctor`: check an installation and say how to fix what is wrong.

Each check returns one `Check`: `ok`, `warn` (works, but worth a look) or `fail`
(Reeve will not work as configured). Only `fail` makes the command exit 1.
No check talks to the network unless asked (`online=True`).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shlex
import shutil
import sqlite3
import stat
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from reeve_cli.config import Settings, load_settings
from reeve_cli.errors import ReeveError

State = Literal["ok", "warn", "fail"]

# Seconds a `<agent> --version` may take (a cold npm start can be slow).
AGENT_VERSION_TIMEOUT_S = 20.0
# Seconds for GET /api/health and Telegram's getMe.
HTTP_TIMEOUT_S = 5.0
# Bot tokens look like "123456789:AA..." (numeric bot id, colon, 35 characters).
TELEGRAM_TOKEN = re.compile(r"^\d{3,}:[A-Za-z0-9_-]{30,}$")
PROGRAMS = {"claude": "claude", "hapi": "hapi"}


@dataclass(frozen=True, slots=True)
class Check:
    """The outcome of one check, with the fix when it is not ok."""

    name: str
    state: State
    detail: str
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "detail": self.detail,
            "fix": self.fix,
        }


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def check_private(name: str, path: Path, wanted: int) -> Check | None:
    """Fail when `path` grants more than `wanted` to group or others."""
    if not path.exists():
        return None
    mode = _mode(path)
    if mode & 0o077 & ~wanted:
        return Check(
            name,
            "fail",
            f"{path} is {mode:04o}; others can read it",
            f"chmod {wanted:o} {shlex.quote(str(path))}",
        )
    return Check(name, "ok", f"{path} is {mode:04o}")


def _has_secrets(config_file: Path) -> bool:
    """Tell whether the config file holds a secret (then it must be 0600)."""
    import tomllib

    from reeve_cli.config import SETTINGS

    try:
        data = tomllib.loads(config_file.read_text())
    except (OSError, ValueError):
        return False
    return any(s.secret and data.get(s.name) for s in SETTINGS)


def check_permissions(settings: Settings) -> list[Check]:
    data = settings.data_path
    if not data.exists():
        return [
            Check(
                "data dir",
                "warn",
                f"{data} does not exist yet",
                "it is created (0700) on first use, e.g. 'reeve db upgrade'",
            )
        ]
    checks = [check_private("data dir", data, 0o700)]
    files = [
        ("api token file", settings.api_token_path),
        ("environment file", settings.config_file.parent / "env"),
    ]
    if _has_secrets(settings.config_file):
        files.append(("config file", settings.config_file))
    db_file = data / "reeve.db"
    if settings.db_url == f"sqlite:///{db_file}":
        files.append(("database file", db_file))
    for name, path in files:
        checks.append(check_private(name, path, 0o600))
    return [c for c in checks if c is not None]


def check_database(settings: Settings) -> Check:
    from reeve_cli.db import SCHEMA_HEAD, SCHEMA_REVISIONS, sqlite_path

    try:
        path = sqlite_path(settings.db_url)
    except ReeveError as exc:
        return Check("database", "fail", exc.message, "fix REEVE_DATABASE_URL")
    if path is None:
        return Check("database", "ok", f"{settings.db_url.split('://')[0]} database")
    if not path.exists():
        return Check(
            "database",
            "warn",
            f"{path} does not exist yet",
            "it is created on first use: reeve db upgrade",
        )
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            result = [row[0] for row in conn.execute("PRAGMA integrity_check")]
            rows = conn.execute(
                "SELECT name FROM sqlite_master WHERE name='alembic_version'"
            ).fetchall()
            revision = None
            if rows:
                found = conn.execute("SELECT version_num FROM alembic_version")
                row = found.fetchone()
                revision = str(row[0]) if row else None
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return Check(
            "database",
            "fail",
            f"{path} cannot be read: {exc}",
            "restore a backup: reeve db restore <backup>",
        )
    if result != ["ok"]:
        return Check(
            "database",
            "fail",
            f"{path} failed its integrity check: {'; '.join(result[:2])}",
            "restore a backup: reeve db restore <backup>",
        )
    if revision not in SCHEMA_REVISIONS:
        return Check(
            "database",
            "fail" if revision else "warn",
            f"schema revision {revision or 'none'}; this Reeve knows up to "
            f"{SCHEMA_HEAD}",
            "upgrade Reeve" if revision else "reeve db upgrade",
        )
    if revision != SCHEMA_HEAD:
        return Check(
            "database",
            "warn",
            f"schema {revision} is older than {SCHEMA_HEAD}",
            "reeve db upgrade",
        )
    return Check("database", "ok", f"{path}: integrity ok, schema {revision}")


def _get_health(api_url: str) -> tuple[int, dict[str, Any]]:
    parts = urlsplit(api_url)
    conn = http.client.HTTPConnection(
        parts.hostname or "127.0.0.1", parts.port or 80, timeout=HTTP_TIMEOUT_S
    )
    try:
        conn.request("GET", parts.path.rstrip("/") + "/api/health")
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    try:
        data = json.loads(body)
    except ValueError:
        data = {}
    return response.status, data if isinstance(data, dict) else {}


def check_daemon(settings: Settings) -> Check:
    from reeve_cli.status import daemon_info

    start = "systemctl --user start reeve-daemon (or run: reeve daemon)"
    info = daemon_info(settings)
    if info is None:
        return Check("daemon", "warn", "not running; pulses wait until it runs", start)
    if not info.get("api_url"):
        return Check(
            "daemon", "ok", f"running (pid {info['pid']}), HTTP API not listening"
        )
    try:
        status, body = _get_health(str(info["api_url"]))
    except OSError as exc:
        return Check(
            "daemon",
            "fail",
            f"pid {info['pid']} runs but {info['api_url']} does not answer: {exc}",
            "look at its log: journalctl --user -u reeve-daemon -n 50",
        )
    if status != 200:
        return Check(
            "daemon",
            "fail",
            f"pid {info['pid']}: GET /api/health answered {status} {body}",
            "look at its log: journalctl --user -u reeve-daemon -n 50",
        )
    return Check("daemon", "ok", f"running (pid {info['pid']}) at {info['api_url']}")


def check_api_token(settings: Settings) -> Check:
    if settings.api_token:
        return Check("api token", "ok", "set by REEVE_API_TOKEN")
    if settings.api_token_path.exists():
        return Check("api token", "ok", f"in {settings.api_token_path}")
    return Check(
        "api token",
        "warn",
        "not created yet",
        "the daemon creates it on first start; or set REEVE_API_TOKEN",
    )


def _agent_argv(settings: Settings) -> list[str] | None:
    if settings.agent_command:
        return shlex.split(settings.agent_command)
    program = PROGRAMS.get(settings.executor)
    return [program] if program else None


def check_agent(settings: Settings, env: Mapping[str, str]) -> Check:
    argv = _agent_argv(settings)
    if argv is None:
        return Check(
            "agent",
            "ok",
            f"executor '{settings.executor}' starts no fixed program",
        )
    program = shutil.which(argv[0], path=env.get("PATH"))
    fix = f"install '{argv[0]}', or point REEVE_AGENT_COMMAND at the agent program"
    if program is None:
        return Check("agent", "fail", f"'{argv[0]}' not found on PATH", fix)
    try:
        done = subprocess.run(
            [program, *argv[1:], "--version"],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=AGENT_VERSION_TIMEOUT_S,
            env=dict(env),
        )
    except subprocess.TimeoutExpired:
        return Check(
            "agent",
            "fail",
            f"'{program} --version' did not answer in {AGENT_VERSION_TIMEOUT_S:g} s",
            fix,
        )
    except OSError as exc:
        return Check("agent", "fail", f"{program} cannot run: {exc.strerror}", fix)
    if done.returncode != 0:
        return Check(
            "agent",
            "fail",
            f"'{program} --version' exited with {done.returncode}",
            fix,
        )
    version = (done.stdout.strip().splitlines() or ["(no version printed)"])[0]
    return Check("agent", "ok", f"{program}: {version[:80]}")


def check_executor(settings: Settings) -> Check:
    try:
        from reeve_cli.plugins import get_executor

        get_executor(settings.executor)
    except ImportError:
        return Check("executor", "warn", "plugin system not available")
    except ReeveError as exc:
        return Check("executor", "fail", exc.message, "reeve plugins list")
    return Check("executor", "ok", f"plugin '{settings.executor}' is installed")


def check_desk(settings: Settings) -> Check:
    desk = settings.desk_path
    if not desk.is_dir():
        return Check(
            "desk",
            "fail",
            f"{desk} is not a directory",
            f"mkdir -p {shlex.quote(str(desk))}, or set REEVE_DESK",
        )
    if not os.access(desk, os.W_OK | os.X_OK):
        return Check("desk", "fail", f"{desk} is not writable", "fix its owner or mode")
    return Check("desk", "ok", str(desk))


def _mcp_registered(home: Path, desk: Path) -> bool:
    try:
        data = json.loads((home / ".claude.json").read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict):
        return False
    servers = dict(data.get("mcpServers") or {})
    project = (data.get("projects") or {}).get(str(desk)) or {}
    if isinstance(project, dict):
        servers.update(project.get("mcpServers") or {})
    return any("reeve" in name for name in servers)


def check_mcp(settings: Settings) -> Check:
    if _mcp_registered(Path.home(), settings.desk_path):
        return Check("mcp", "ok", "reeve is registered in ~/.claude.json")
    return Check(
        "mcp",
        "warn",
        "no reeve MCP server found in ~/.claude.json",
        "register it: reeve mcp config --client claude (prints the command)",
    )


def _unit_identity(text: str) -> list[str]:
    """The lines that tie a unit to an installation: program and Reeve paths."""
    return [
        line
        for line in text.splitlines()
        if line.startswith(("ExecStart=", 'Environment="REEVE_', "EnvironmentFile="))
    ]


def check_units(settings: Settings) -> Check:
    """Warn when installed units point at another `reeve` or other paths."""
    from reeve_cli.service import (
        DAEMON_UNIT,
        default_unit_dir,
        plan_from_settings,
        render_daemon,
    )

    for mode in ("user", "system"):
        installed = default_unit_dir(mode) / DAEMON_UNIT
        if not installed.is_file():
            continue
        plan = plan_from_settings(settings, mode)
        if _unit_identity(installed.read_text()) != _unit_identity(render_daemon(plan)):
            return Check(
                "systemd units",
                "warn",
                f"{installed} was written for another installation or settings",
                f"reeve install-service --{mode}, then "
                f"systemctl{' --user' if mode == 'user' else ''} daemon-reload",
            )
        return Check("systemd units", "ok", f"{installed} matches this installation")
    return Check(
        "systemd units", "ok", "not installed (optional): reeve install-service"
    )


def _get_me(settings: Settings) -> str | None:
    """Ask the Bot API who the bot is; return an error text or None."""
    parts = urlsplit(settings.telegram_api_url)
    cls = (
        http.client.HTTPSConnection
        if parts.scheme == "https"
        else http.client.HTTPConnection
    )
    conn = cls(parts.hostname or "", parts.port, timeout=HTTP_TIMEOUT_S)
    try:
        conn.request(
            "GET", f"{parts.path.rstrip('/')}/bot{settings.telegram_token}/getMe"
        )
        response = conn.getresponse()
        response.read()
    except OSError as exc:
        return f"{parts.hostname} unreachable: {type(exc).__name__}"
    finally:
        conn.close()
    if response.status != 200:
        return f"getMe answered {response.status} (wrong token?)"
    return None


def check_telegram(settings: Settings, online: bool) -> Check:
    token = settings.telegram_token
    if not token:
        return Check("telegram", "ok", "not configured (optional)")
    if not TELEGRAM_TOKEN.match(token):
        return Check(
            "telegram",
            "fail",
            "REEVE_TELEGRAM_TOKEN does not look like a bot token (digits:secret)",
            "copy the token @BotFather gave you into the environment file",
        )
    if not settings.telegram_chat_ids:
        return Check(
            "telegram",
            "fail",
            "REEVE_TELEGRAM_CHAT_IDS is empty, so no chat is served",
            "set REEVE_TELEGRAM_CHAT_IDS to your chat id (see docs/telegram.md)",
        )
    chats = ", ".join(str(c) for c in settings.telegram_chat_ids)
    if online:
        problem = _get_me(settings)
        if problem:
            return Check(
                "telegram",
                "fail",
                problem.replace(token, "********"),
                "check REEVE_TELEGRAM_TOKEN",
            )
        return Check("telegram", "ok", f"bot token accepted; chats {chats}")
    return Check("telegram", "ok", f"token set; chats {chats}")


def run_checks(
    flags: Mapping[str, Any] | None = None,
    online: bool = False,
    env: Mapping[str, str] | None = None,
) -> list[Check]:
    """Run every check for the settings these flags and environment give."""
    env = os.environ if env is None else env
    try:
        settings = load_settings(flags, env)
    except ReeveError as exc:
        return [Check("config", "fail", exc.message, "fix the value it names")]

    source = "defaults"
    if settings.config_file_exists:
        source = str(settings.config_file)
    checks = [Check("config", "ok", f"settings from {source} and environment")]
    steps: list[Callable[[], Check | list[Check]]] = [
        lambda: check_permissions(settings),
        lambda: check_database(settings),
        lambda: check_daemon(settings),
        lambda: check_api_token(settings),
        lambda: check_executor(settings),
        lambda: check_agent(settings, env),
        lambda: check_desk(settings),
        lambda: check_mcp(settings),
        lambda: check_units(settings),
        lambda: check_telegram(settings, online),
    ]
    for step in steps:
        found = step()
        checks.extend(found if isinstance(found, list) else [found])
    return checks
