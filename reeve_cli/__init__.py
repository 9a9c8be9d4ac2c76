"""Reeve: the wake-up queue of a proactive AI agent.

Plugin authors import `hookimpl` from here to implement Reeve's hooks.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "hookimpl"]


def __getattr__(name: str) -> Any:
    # pluggy is imported on first use only: `reeve --help` must stay fast.
    if name == "hookimpl":
        import pluggy

        marker = pluggy.HookimplMarker("reeve")
        globals()["hookimpl"] = marker
        return marker
    raise AttributeError(f"module 'reeve_cli' has no attribute {name!r}")
