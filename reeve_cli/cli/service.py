"""`reeve install-service` and `reeve alert`: running Reeve under systemd."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

from reeve_cli import output
from reeve_cli.cli import app, context


@app.command("install-service")
def install_service(
    user: Annotated[
        bool,
        typer.Option(
            "--user/--system",
            help="Install for this user's systemd (default) or system-wide.",
        ),
    ] = True,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only print the units and commands.")
    ] = False,
    unit_dir: Annotated[
        Path | None,
        typer.Option(
            "--unit-dir",
            help="Write the units here instead of systemd's directory.",
        ),
    ] = None,
    run_as: Annotated[
        str | None,
        typer.Option(
            "--run-as",
            help="System install: the user the services run as "
            "(default: $SUDO_USER or you).",
        ),
    ] = None,
) -> None:
    """Write systemd units for the daemon, Telegram bridge, backups and alerts.

    The units carry this installation's absolute `reeve` path, data dir, desk and
    config file. Secrets go in the environment file next to the config file
    (created 0600 if missing). Prints the systemctl commands to run next.

    Examples:

        reeve install-service --dry-run

        reeve install-service --user
    """
    from reeve_cli.config import ensure_data_dir
    from reeve_cli.service import (
        install_units,
        plan_from_settings,
        render_units,
        systemctl_commands,
    )

    if not user:
        run_as = _become(run_as)
    settings = context.settings()
    plan = plan_from_settings(
        settings, "user" if user else "system", unit_dir=unit_dir, run_as=run_as
    )
    units = render_units(plan)
    commands = systemctl_commands(plan, telegram=bool(settings.telegram_token))

    if dry_run:
        for name, text in units.items():
            sys.stdout.write(f"# {plan.unit_dir / name}\n{text}\n")
        sys.stdout.write("# Then run:\n")
        sys.stdout.write("".join(f"{command}\n" for command in commands))
        return

    ensure_data_dir(settings)
    written = install_units(plan, units)
    for path in written:
        output.note(f"Wrote {path}")
    output.note(f"Secrets go in {plan.env_file} (mode 0600). Now run:")
    sys.stdout.write("".join(f"{command}\n" for command in commands))


def _become(run_as: str | None) -> str:
    """Resolve settings as the user the system units run as.

    Under `sudo`, HOME is root's: without this the units would point at
    /root/.local/share/reeve while running as someone else.
    """
    import getpass
    import pwd

    from reeve_cli.errors import InvalidValue

    target = run_as or os.environ.get("SUDO_USER") or getpass.getuser()
    if target == getpass.getuser():
        return target
    try:
        home = pwd.getpwnam(target).pw_dir
    except KeyError:
        raise InvalidValue(
            f"No user '{target}' on this system; give an existing one to --run-as",
            field="run_as",
        ) from None
    os.environ["HOME"] = home
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME"):
        os.environ.pop(name, None)
    context.set_flags(context.flags())
    return target


def _journal_hint(unit: str, system: bool) -> str:
    scope = "" if system else "--user "
    return f"journalctl {scope}-u {unit} -n 50"


@app.command("alert")
def alert(
    unit: Annotated[str, typer.Option("--unit", help="The systemd unit that failed.")],
    system: Annotated[
        bool,
        typer.Option("--system", help="The unit is a system unit, not a user unit."),
    ] = False,
    json_: Annotated[
        bool, typer.Option("--json", help="Print the notification as JSON.")
    ] = False,
) -> None:
    """Tell the user through the notifier that a systemd unit failed.

    The units' OnFailure= runs this through reeve-alert@.service. Exits 1 when no
    notifier is configured or the message cannot be sent.

    Examples:

        reeve alert --unit reeve-daemon.service
    """
    from reeve_cli.errors import PluginError

    try:
        from reeve_cli.notify import notify
    except ImportError:
        raise PluginError(
            "No notifier available in this installation; "
            "set REEVE_TELEGRAM_TOKEN and REEVE_TELEGRAM_CHAT_IDS"
        ) from None

    message = (
        f"Reeve on {socket.gethostname()}: {unit} failed. "
        f"Details: {_journal_hint(unit, system)}"
    )
    row = notify(context.settings(), context.database(), message, "critical")
    if json_:
        output.emit_json(row)
    else:
        output.note(f"Alert sent: {unit} failed")
