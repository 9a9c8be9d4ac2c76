"""Talk to systemd: readiness, status lines and watchdog pings (sd_notify).

A few lines of stdlib instead of a dependency (docs/daemon.md). Every function
is a no-op that returns False when the daemon does not run under systemd.
"""

from __future__ import annotations

import logging
import os
import socket

logger = logging.getLogger(__name__)


def sd_notify(state: str) -> bool:
    """Send one notification such as 'READY=1' or 'STATUS=...' to systemd."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr[0] == "@":
        addr = "\0" + addr[1:]  # abstract namespace socket
    try:
        with socket.socket(
            socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
        ) as s:
            s.connect(addr)
            s.sendall(state.encode())
    except OSError as exc:
        logger.debug("sd_notify %r failed: %s", state.split("\n", 1)[0], exc)
        return False
    return True


def watchdog_interval() -> float | None:
    """Return how often to send WATCHDOG=1 (half of WatchdogSec), or None."""
    usec, pid = os.environ.get("WATCHDOG_USEC"), os.environ.get("WATCHDOG_PID")
    if not usec:
        return None
    try:
        if pid and int(pid) != os.getpid():
            return None
        return int(usec) / 2_000_000
    except ValueError:
        return None
