"""`reeve plugins`: see which plugins are installed and what they provide."""

from __future__ import annotations

import typer

from reeve_cli import output
from reeve_cli.cli.options import JsonFlag

app = typer.Typer(help="Show installed plugins.", no_args_is_help=True)


@app.command("list")
def plugins_list(
    as_json: JsonFlag = False,
) -> None:
    """List plugins: name, version, hooks, executors, notifiers and load errors.

    A plugin that failed to load is listed with its error and provides nothing;
    the rest of Reeve keeps working.

    Examples:
      reeve plugins list
      reeve plugins list --json
    """
    from reeve_cli.plugins import list_plugins

    rows = list_plugins()
    if as_json:
        output.emit_json(rows)
        return
    output.emit_table(
        ["name", "package", "version", "hooks", "provides"],
        [
            (
                row["name"] + (" (built-in)" if row["builtin"] else ""),
                row["package"] or "",
                row["version"] or "",
                "\n".join(row["hooks"]),
                "\n".join(
                    [f"executor {n}" for n in row["executors"]]
                    + [f"notifier {n}" for n in row["notifiers"]]
                ),
            )
            for row in rows
        ],
        empty="No plugins",
    )
    for row in rows:
        for message in row["errors"]:
            output.note(f"Warning: plugin '{row['name']}' {message}")
