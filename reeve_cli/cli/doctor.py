"""`reeve doctor`: check the installation, with a fix for every failure."""

from __future__ import annotations

from typing import Annotated

import typer

from reeve_cli import output
from reeve_cli.cli import app, context
from reeve_cli.cli.options import JsonFlag

_MARKS = {"ok": ("✓", "green"), "warn": ("!", "yellow"), "fail": ("✗", "red")}


@app.command("doctor")
def doctor(
    json_: JsonFlag = False,
    online: Annotated[
        bool,
        typer.Option("--online", help="Also ask the Telegram Bot API (network)."),
    ] = False,
) -> None:
    """Check config, permissions, database, daemon, agent, desk and Telegram.

    Exits 1 when any check fails; each failure says how to fix it. Warnings
    (for example, the daemon is not running) do not change the exit code.

    Examples:

        reeve doctor

        reeve doctor --json
    """
    from reeve_cli.doctor import run_checks

    checks = run_checks(context.flags(), online=online)
    failed = any(c.state == "fail" for c in checks)

    if json_:
        output.emit_json({"ok": not failed, "checks": [c.to_dict() for c in checks]})
    else:
        from rich.text import Text

        out = output.console()
        width = max(len(c.name) for c in checks)
        for check in checks:
            mark, colour = _MARKS[check.state]
            line = Text(f"{mark} ", style=colour)
            line.append(f"{check.name:<{width}}  ", style="bold")
            line.append(check.detail)
            out.print(line, soft_wrap=True)
            if check.fix:
                fix = Text(f"  {'':<{width}}  fix: {check.fix}", style=colour)
                out.print(fix, soft_wrap=True)
        problems = sum(c.state == "fail" for c in checks)
        warnings = sum(c.state == "warn" for c in checks)
        output.note(
            f"{problems} problem{'s' * (problems != 1)}, "
            f"{warnings} warning{'s' * (warnings != 1)}"
        )
    if failed:
        raise typer.Exit(1)
