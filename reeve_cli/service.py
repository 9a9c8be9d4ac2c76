"""systemd units for Reeve, rendered with this installation's paths.

`reeve install-service` writes these units; `systemd/` in the repository holds the
same units rendered for a default user install (`python -m reeve_cli.service
systemd` regenerates them, and a test fails when they are stale).

systemd does not accept a comment at the end of a directive line, so every
directive that differs from systemd's default has its own comment line above it
saying why (tests/test_systemd.py checks this).
"""

from __future__ import annotations

import getpass
import math
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from reeve_cli.config import Settings

Mode = Literal["user", "system"]

DAEMON_UNIT = "reeve-daemon.service"
TELEGRAM_UNIT = "reeve-telegram.service"
BACKUP_UNIT = "reeve-backup.service"
BACKUP_TIMER = "reeve-backup.timer"
ALERT_UNIT = "reeve-alert@.service"
UNIT_NAMES = (DAEMON_UNIT, TELEGRAM_UNIT, BACKUP_UNIT, BACKUP_TIMER, ALERT_UNIT)

# Seconds systemd waits beyond the daemon's own stop grace before it kills.
STOP_MARGIN_S = 15
# Seconds; the daemon pings at half of this from its event loop.
WATCHDOG_S = 60


@dataclass(frozen=True, slots=True)
class ServicePlan:
    """Everything the units need to know about this installation."""

    mode: Mode
    reeve: str
    data_dir: Path
    desk: Path
    config_file: Path
    env_file: Path
    home: Path
    unit_dir: Path
    stop_grace_s: float
    database_url: str | None = None
    run_as: str | None = None
    path_env: str | None = None
    agent_paths: tuple[Path, ...] = ()

    @property
    def stop_timeout_s(self) -> int:
        return math.ceil(self.stop_grace_s) + STOP_MARGIN_S


def reeve_executable() -> str:
    """Return the absolute path of this installation's `reeve` command."""
    beside = Path(sys.executable).with_name("reeve")
    if beside.exists():
        return str(beside)
    found = shutil.which("reeve")
    if found:
        return str(Path(found).absolute())
    return f"{sys.executable} -m reeve_cli"


def default_unit_dir(mode: Mode) -> Path:
    if mode == "system":
        return Path("/etc/systemd/system")
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "systemd" / "user"


def plan_from_settings(
    settings: Settings,
    mode: Mode,
    unit_dir: Path | None = None,
    run_as: str | None = None,
) -> ServicePlan:
    """Describe the units for this installation's settings."""
    home = Path.home()
    if mode == "system":
        run_as = run_as or os.environ.get("SUDO_USER") or getpass.getuser()
    database_url = None
    if settings.sources.get("database_url", "default") != "default":
        database_url = settings.db_url
    return ServicePlan(
        mode=mode,
        reeve=reeve_executable(),
        data_dir=settings.data_path,
        desk=settings.desk_path,
        config_file=settings.config_file,
        env_file=settings.config_file.parent / "env",
        home=home,
        unit_dir=unit_dir or default_unit_dir(mode),
        stop_grace_s=float(settings.stop_grace),
        database_url=database_url,
        run_as=run_as,
        path_env=os.environ.get("PATH"),
        # Claude Code keeps its sessions and settings here; the agent must write them.
        agent_paths=(home / ".claude", home / ".claude.json", home / ".cache"),
    )


def _quote(value: str | Path) -> str:
    """Quote a value for a unit file: escape specifiers, quote spaces."""
    text = str(value).replace("%", "%%").replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"' if any(c.isspace() for c in text) else text


def _env_line(name: str, value: str | Path) -> str:
    text = f"{name}={value}".replace("%", "%%").replace("\\", "\\\\")
    return '"' + text.replace('"', '\\"') + '"'


def _exec(plan: ServicePlan, args: str) -> str:
    if " -m reeve_cli" in plan.reeve:
        program, module = plan.reeve.split(" -m ", 1)
        return f"{_quote(program)} -m {module} {args}"
    return f"{_quote(plan.reeve)} {args}"


def _environment(plan: ServicePlan) -> list[str]:
    lines = [
        "# Secrets (REEVE_TELEGRAM_TOKEN, REEVE_API_TOKEN) live in this 0600 file,",
        "# not in the unit, which any local user can read; '-' makes it optional.",
        f"EnvironmentFile=-{_quote(plan.env_file)}",
        "# The same data dir, config and desk the installing shell used.",
        f"Environment={_env_line('REEVE_DATA_DIR', plan.data_dir)}",
        "# The config file the installing shell used.",
        f"Environment={_env_line('REEVE_CONFIG', plan.config_file)}",
        "# Every agent session starts in the desk.",
        f"Environment={_env_line('REEVE_DESK', plan.desk)}",
    ]
    if plan.database_url:
        lines += [
            "# The database the installing shell used (set outside the config file).",
            f"Environment={_env_line('REEVE_DATABASE_URL', plan.database_url)}",
        ]
    if plan.path_env:
        lines += [
            "# The agent program (claude, node) is found on the installing shell's",
            "# PATH, not on systemd's minimal one.",
            f"Environment={_env_line('PATH', plan.path_env)}",
        ]
    return lines


def _hardening(plan: ServicePlan, write: list[Path], optional: list[Path]) -> list[str]:
    paths = " ".join([_quote(p) for p in write] + ["-" + _quote(p) for p in optional])
    lines = [
        "# Neither reeve nor the agent it starts may gain privileges (setuid, sudo).",
        "NoNewPrivileges=yes",
        "# The whole file system is read-only except the paths below.",
        "ProtectSystem=strict",
        "# A private /tmp: nothing left behind, nothing shared with other services.",
        "PrivateTmp=yes",
        "# Writable: the data dir (database, logs, backups) and the desk; '-' paths",
        "# are optional (the agent's own state, when it exists).",
        f"ReadWritePaths={paths}",
    ]
    if plan.mode == "system" and plan.run_as:
        lines = [
            "# Run as the owner of the data dir, never as root.",
            f"User={plan.run_as}",
            *lines,
        ]
    return lines


def _unit_section(plan: ServicePlan, description: str, alert: bool = True) -> list[str]:
    lines = [
        "[Unit]",
        "# Shown by 'systemctl status' and in the journal.",
        f"Description={description}",
    ]
    if alert:
        lines += [
            "# Report a unit that gave up through the notifier (reeve alert).",
            "OnFailure=reeve-alert@%n.service",
        ]
    if plan.mode == "system":
        lines += [
            "# The API binds and Telegram connects out: wait for the network.",
            "Wants=network-online.target",
            "# Start only once the network is up.",
            "After=network-online.target",
        ]
    return lines


def _install_target(plan: ServicePlan) -> str:
    return "default.target" if plan.mode == "user" else "multi-user.target"


def render_daemon(plan: ServicePlan) -> str:
    lines = _unit_section(plan, "Reeve daemon: the wake-up queue of an AI agent")
    lines += [
        "",
        "[Service]",
        "# reeve sends READY=1 itself (sd_notify) once the database, scheduler and",
        "# API are up, so dependent units start only then.",
        "Type=notify",
        "# Only the daemon process may send notify messages, not the agents it runs.",
        "NotifyAccess=main",
        "# The daemon itself; 'reeve daemon --help' lists its options.",
        f"ExecStart={_exec(plan, 'daemon')}",
        *_environment(plan),
        "# The daemon pings from its event loop every 30 s; a hung loop is restarted.",
        f"WatchdogSec={WATCHDOG_S}",
        "# Restart after a crash or watchdog timeout, not after 'systemctl stop'.",
        "Restart=on-failure",
        "# Wait a little before restarting, so a crash loop does not spin.",
        "RestartSec=5",
        "# Exit code 4 is a start-up failure (bad config, unreadable database):",
        "# restarting cannot fix it, so stop and alert instead.",
        "RestartPreventExitStatus=4",
        "# SIGTERM goes to the daemon only; it gives running agents their grace",
        "# period (REEVE_STOP_GRACE) and stops them itself.",
        "KillMode=mixed",
        f"# Longer than the daemon's stop grace ({plan.stop_grace_s:g} s),",
        "# so systemd never kills it first.",
        f"TimeoutStopSec={plan.stop_timeout_s}",
        *_hardening(plan, [plan.data_dir, plan.desk], list(plan.agent_paths)),
        "",
        "[Install]",
        "# Start at boot (system) or with the user manager (user, with lingering).",
        f"WantedBy={_install_target(plan)}",
    ]
    return "\n".join(lines) + "\n"


def render_telegram(plan: ServicePlan) -> str:
    lines = _unit_section(plan, "Reeve Telegram bridge")
    lines += [
        "",
        "[Service]",
        "# The bridge long-polls the Bot API and writes pulses to the database.",
        f"ExecStart={_exec(plan, 'telegram')}",
        *_environment(plan),
        "# Network failures are retried inside; restart only after a crash.",
        "Restart=on-failure",
        "# Back off before reconnecting to Telegram after a crash.",
        "RestartSec=10",
        "# Exit code 4 is fatal (a bad token, or another bot polls with it):",
        "# restarting cannot fix it, so stop and alert instead.",
        "RestartPreventExitStatus=4",
        *_hardening(plan, [plan.data_dir], []),
        "",
        "[Install]",
        "# Start together with the daemon at boot or login.",
        f"WantedBy={_install_target(plan)}",
    ]
    return "\n".join(lines) + "\n"


def render_backup(plan: ServicePlan) -> str:
    lines = _unit_section(plan, "Reeve database backup")
    lines += [
        "",
        "[Service]",
        "# Runs to completion once per timer tick.",
        "Type=oneshot",
        "# Online backup; the newest REEVE_BACKUP_KEEP stay in <data_dir>/backups.",
        f"ExecStart={_exec(plan, 'db backup')}",
        *_environment(plan),
        "# A backup must not slow the agent down.",
        "Nice=10",
        "# Read the database only when nothing else needs the disk.",
        "IOSchedulingClass=idle",
        *_hardening(plan, [plan.data_dir], []),
    ]
    return "\n".join(lines) + "\n"


def render_timer(plan: ServicePlan) -> str:
    lines = [
        "[Unit]",
        "# Shown by 'systemctl list-timers'.",
        "Description=Daily Reeve database backup",
        "",
        "[Timer]",
        "# Once a day, at midnight.",
        "OnCalendar=daily",
        "# A backup missed while the machine was off runs at the next boot.",
        "Persistent=true",
        "# Spread the start so many machines do not back up at once.",
        "RandomizedDelaySec=30min",
        "",
        "[Install]",
        "# Arm the timer at boot or login.",
        "WantedBy=timers.target",
    ]
    return "\n".join(lines) + "\n"


def render_alert(plan: ServicePlan) -> str:
    alert_args = "alert --unit %i" + (" --system" if plan.mode == "system" else "")
    lines = [
        "[Unit]",
        "# %i is the unit that failed, passed by its OnFailure=.",
        "Description=Reeve alert: %i failed",
        "",
        "[Service]",
        "# Sends one message and exits.",
        "Type=oneshot",
        "# Tells the user through the notifier (Telegram) which unit failed.",
        f"ExecStart={_exec(plan, alert_args)}",
        *_environment(plan),
        "# Sending an alert needs no privileges.",
        "NoNewPrivileges=yes",
    ]
    if plan.mode == "system" and plan.run_as:
        lines += [
            "# Write to the database as its owner, never as root.",
            f"User={plan.run_as}",
        ]
    return "\n".join(lines) + "\n"


def render_units(plan: ServicePlan) -> dict[str, str]:
    """Return every unit file's name and text for this plan."""
    return {
        DAEMON_UNIT: render_daemon(plan),
        TELEGRAM_UNIT: render_telegram(plan),
        BACKUP_UNIT: render_backup(plan),
        BACKUP_TIMER: render_timer(plan),
        ALERT_UNIT: render_alert(plan),
    }


def systemctl_commands(plan: ServicePlan, telegram: bool) -> list[str]:
    """Return the commands that enable and start the installed units."""
    ctl = "systemctl --user" if plan.mode == "user" else "systemctl"
    units = [DAEMON_UNIT, BACKUP_TIMER] + ([TELEGRAM_UNIT] if telegram else [])
    commands = [f"{ctl} daemon-reload", f"{ctl} enable --now {' '.join(units)}"]
    if plan.mode == "user":
        # Without lingering, user services stop at logout and do not start at boot.
        commands.append(f"loginctl enable-linger {getpass.getuser()}")
    return commands


ENV_FILE_TEMPLATE = """\
# Secrets for Reeve's systemd units (read by EnvironmentFile=); keep this file 0600.
# REEVE_TELEGRAM_TOKEN=123456:ABC...
# REEVE_TELEGRAM_CHAT_IDS=11111111
"""


def install_units(plan: ServicePlan, units: dict[str, str]) -> list[Path]:
    """Write the units into the plan's unit dir; create an env file if missing."""
    plan.unit_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in units.items():
        path = plan.unit_dir / name
        path.write_text(text)
        path.chmod(0o644)
        written.append(path)

    if not plan.env_file.exists():
        plan.env_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(plan.env_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(ENV_FILE_TEMPLATE)
    return written


def repository_plan() -> ServicePlan:
    """The default user install, as committed in the repository's `systemd/`."""
    home = Path("%h")
    return ServicePlan(
        mode="user",
        reeve="%h/.local/bin/reeve",
        data_dir=home / ".local/share/reeve",
        desk=home,
        config_file=home / ".config/reeve/config.toml",
        env_file=home / ".config/reeve/env",
        home=home,
        unit_dir=home / ".config/systemd/user",
        stop_grace_s=30.0,
        agent_paths=(home / ".claude", home / ".claude.json", home / ".cache"),
    )


def render_repository_units() -> dict[str, str]:
    """Render the committed units; `%h` stays a systemd specifier there."""
    units = render_units(repository_plan())
    return {name: text.replace("%%h", "%h") for name, text in units.items()}


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "systemd")
    target.mkdir(exist_ok=True)
    for unit_name, unit_text in render_repository_units().items():
        (target / unit_name).write_text(unit_text)
