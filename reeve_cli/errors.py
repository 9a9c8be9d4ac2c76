"""The errors Reeve explains to its users, and how each surface reports them.

Every expected failure is a `ReeveError`. The CLI prints `Error: <message>` and
exits with `exit_code`; the HTTP API answers `http_status` with a JSON body; the
MCP server raises a tool error with the same message.
"""

from __future__ import annotations

from collections.abc import Iterable

PRIORITY_NAMES = "critical, high, normal, low, deferred"


class ReeveError(Exception):
    """An expected failure with a message meant for the user."""

    exit_code = 1
    http_status = 400
    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "field": self.field}


class InvalidValue(ReeveError):
    """A value the user gave is not acceptable."""


class InvalidTime(InvalidValue):
    """A time or duration could not be understood, or lies in the past."""

    code = "invalid_time"


class InvalidPriority(InvalidValue):
    """A priority outside the five known names."""

    code = "invalid_priority"

    def __init__(self, value: str, *, field: str | None = "priority") -> None:
        super().__init__(
            f"Unknown priority '{value}'; use one of {PRIORITY_NAMES}", field=field
        )


class InvalidStatus(InvalidValue):
    """A status outside the five known names."""

    def __init__(self, value: str, accepted: Iterable[str]) -> None:
        super().__init__(
            f"Unknown status '{value}'; use one of {', '.join(accepted)}",
            field="status",
        )


class PulseNotFound(ReeveError):
    """No pulse has the given id."""

    http_status = 404
    code = "not_found"

    def __init__(self, pulse_id: object) -> None:
        super().__init__(
            f"No pulse with id {pulse_id}; see 'reeve pulse list --all'", field="id"
        )
        self.pulse_id = pulse_id


class ScheduleNotFound(ReeveError):
    """No schedule has the given name."""

    http_status = 404
    code = "not_found"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"No schedule named '{name}'; see 'reeve schedule list'", field="name"
        )


class Conflict(ReeveError):
    """The request is valid but clashes with the current state."""

    http_status = 409
    code = "conflict"


class PulseNotPending(Conflict):
    """The pulse has left `pending`, so it can no longer be changed."""

    def __init__(self, pulse_id: int, status: str, done: str = "cancelled") -> None:
        super().__init__(
            f"Pulse {pulse_id} is {status}; only pending pulses can be {done}"
        )


class ConfigError(ReeveError):
    """The configuration file or a setting is malformed."""

    code = "config"


class DatabaseError(ReeveError):
    """The database cannot be used (unreachable, busy, or newer than this Reeve)."""

    http_status = 503
    code = "database"


class DaemonUnreachable(ReeveError):
    """The daemon is not running, or its API does not answer."""

    exit_code = 3
    http_status = 503
    code = "daemon_unreachable"


class StartupError(ReeveError):
    """The daemon cannot start (bad config, port taken, another daemon running)."""

    exit_code = 4
    code = "startup"


class PluginError(ReeveError):
    """A plugin is missing, misconfigured or failed."""

    code = "plugin"
