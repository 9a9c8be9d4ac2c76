"""The hooks a Reeve plugin can implement.

Plugins implement them with `reeve_cli.hookimpl` and are found through the
entry-point group `reeve`; see docs/plugins.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from reeve_cli.executor import Executor, Notifier
    from reeve_cli.model import Attempt, Pulse

hookspec = pluggy.HookspecMarker("reeve")


@hookspec
def register_executors(register: Callable[[Executor], None]) -> None:
    """Offer executors that can run a pulse attempt.

    Called once, the first time Reeve needs its executors. Call `register` once
    per executor. Executor names must be unique: when two plugins offer the same
    name, the first one loaded wins and the clash is shown by `reeve plugins list`.
    """


@hookspec
def register_notifiers(register: Callable[[Notifier], None]) -> None:
    """Offer notifiers that can tell the user something (Telegram, mail, ...).

    Called once, the first time Reeve needs its notifiers. Call `register` once
    per notifier; names must be unique, as for executors.
    """


@hookspec
def on_attempt_finished(pulse: Pulse, attempt: Attempt) -> None:
    """React to the end of an attempt, whatever its outcome.

    Called by the daemon after the attempt's row is final: `attempt.status` says
    how it ended and `pulse` is the pulse as stored afterwards. Called in the
    daemon's event loop: return quickly and hand slow work (network calls) to a
    thread of your own. An exception is logged and ignored.
    """
