"""Run Reeve as `python -m reeve_cli`."""

from __future__ import annotations

from reeve_cli.cli import main

main()
