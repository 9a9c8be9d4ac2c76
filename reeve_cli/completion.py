"""Shell completion scripts for bash, zsh and fish, as committed in completions/.

The scripts are Typer's own: thin shims that run `reeve` again on every TAB with
`_REEVE_COMPLETE` set, so they never go stale as commands change. What they
contain depends only on the program name. `make completions` rewrites them:

    python -m reeve_cli.completion completions [DIR]
    python -m reeve_cli.completion check [DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

PROG_NAME = "reeve"
COMPLETE_VAR = "_REEVE_COMPLETE"
# File names each shell looks for when it loads completions from a directory.
FILES = {"bash": "reeve.bash", "zsh": "_reeve", "fish": "reeve.fish"}
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "completions"


def script(shell: str) -> str:
    """Return the completion script for `shell` (what `--show-completion` prints)."""
    from typer._completion_shared import get_completion_script

    return (
        get_completion_script(
            prog_name=PROG_NAME, complete_var=COMPLETE_VAR, shell=shell
        )
        + "\n"
    )


def write_all(directory: Path = DEFAULT_DIR) -> list[Path]:
    """Write every shell's script into `directory`; return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for shell, name in FILES.items():
        path = directory / name
        path.write_text(script(shell))
        written.append(path)
    return written


def stale(directory: Path = DEFAULT_DIR) -> list[Path]:
    """Return the scripts in `directory` that are missing or out of date."""
    return [
        directory / name
        for shell, name in FILES.items()
        if not (directory / name).is_file()
        or (directory / name).read_text() != script(shell)
    ]


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"completions", "check"}:
        sys.stderr.write(
            "Usage: python -m reeve_cli.completion completions|check [DIR]\n"
        )
        return 2
    directory = Path(argv[1]) if len(argv) > 1 else DEFAULT_DIR
    if argv[0] == "check":
        outdated = stale(directory)
        for path in outdated:
            sys.stderr.write(f"Stale completion script: {path}; run make completions\n")
        return 1 if outdated else 0
    for path in write_all(directory):
        sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
