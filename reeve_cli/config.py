"""Settings: one definition per setting, resolved flag > env > file > default.

Every setting has an environment variable `REEVE_<NAME>` and a key `<name>` in the
TOML config file. `load_settings` records where each value came from, so
`reeve config show` can say so.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reeve_cli.errors import ConfigError

APP_NAME = "reeve"
DEFAULT_API_PORT = 8765


def _user_config_dir() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir(APP_NAME))


def _user_data_dir() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir(APP_NAME))


def _to_str(value: str) -> str:
    return value.strip()


def _to_int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"expected a whole number, got '{value}'") from None


def _to_positive_int(value: str) -> int:
    number = _to_int(value)
    if number < 1:
        raise ValueError(f"must be at least 1, got {number}")
    return number


def _to_port(value: str) -> int:
    number = _to_int(value)
    if not 0 <= number <= 65535:
        raise ValueError(f"must be a port between 0 and 65535, got {number}")
    return number


def _to_seconds(value: str) -> float:
    """Read a duration such as '90', '90s', '15m', '1h' or '30d' as seconds."""
    from reeve_cli.timefmt import parse_duration

    return parse_duration(value).total_seconds()


def _to_chat_ids(value: str) -> tuple[int, ...]:
    ids = []
    for part in value.replace(";", ",").split(","):
        part = part.strip()
        if part:
            try:
                ids.append(int(part))
            except ValueError:
                raise ValueError(
                    f"expected comma-separated numeric chat ids, got '{part}'"
                ) from None
    return tuple(ids)


def _to_zone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone '{value}'; use an IANA name such as 'Europe/Berlin'"
        ) from None
    return value


def _to_level(value: str) -> str:
    level = value.strip().upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError(f"use one of DEBUG, INFO, WARNING, ERROR, got '{value}'")
    return level


def _to_priority(value: str) -> str:
    from reeve_cli.model import Priority

    return Priority.parse(value).value


def _to_recovery(value: str) -> str:
    if value not in {"retry", "fail"}:
        raise ValueError(f"use 'retry' or 'fail', got '{value}'")
    return value


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting: its key, how to read it from text, and its default."""

    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    secret: bool = False

    @property
    def env(self) -> str:
        return f"REEVE_{self.name.upper()}"


SETTINGS: tuple[Setting, ...] = (
    Setting("data_dir", _to_str, None, "Data directory (database, logs, token)."),
    Setting(
        "database_url",
        _to_str,
        None,
        "SQLAlchemy database URL; default sqlite:///<data_dir>/reeve.db.",
    ),
    Setting("timezone", _to_zone, None, "Zone for parsing and showing times."),
    Setting("desk", _to_str, None, "The agent's working directory; default $HOME."),
    Setting("executor", _to_str, "claude", "Executor plugin for pulses."),
    Setting(
        "agent_command",
        _to_str,
        None,
        "Program the claude/hapi executors start instead of 'claude'/'hapi'.",
    ),
    Setting("max_concurrent", _to_positive_int, 1, "Normal concurrency slots."),
    Setting("pulse_timeout", _to_seconds, 3600.0, "Per-attempt time limit."),
    Setting(
        "stall_timeout",
        _to_seconds,
        900.0,
        "Stop an attempt that printed nothing this long (0 disables).",
    ),
    Setting("max_retries", _to_int, 2, "Default retries after a failed attempt."),
    Setting("retry_backoff", _to_seconds, 30.0, "First retry delay; doubles."),
    Setting("stop_grace", _to_seconds, 30.0, "Time running attempts get on shutdown."),
    Setting(
        "recovery",
        _to_recovery,
        "retry",
        "What to do with pulses a dead daemon left running: retry or fail.",
    ),
    Setting("log_retention", _to_seconds, 30 * 86400.0, "Keep attempt logs."),
    Setting("log_level", _to_level, "INFO", "Log level for the daemon."),
    Setting("busy_timeout", _to_seconds, 5.0, "How long a write waits for a lock."),
    Setting("api_host", _to_str, "127.0.0.1", "Address the HTTP API binds to."),
    Setting("api_port", _to_port, DEFAULT_API_PORT, "Port of the HTTP API."),
    Setting(
        "api_token",
        _to_str,
        None,
        "Bearer token for the API; default: generated into <data_dir>/api_token.",
        secret=True,
    ),
    Setting("max_prompt_bytes", _to_positive_int, 100_000, "Largest accepted prompt."),
    Setting("notifier", _to_str, None, "Notifier plugin; default telegram if set."),
    Setting("telegram_token", _to_str, None, "Telegram bot token.", secret=True),
    Setting(
        "telegram_chat_ids", _to_chat_ids, (), "Chats the bot serves (comma list)."
    ),
    Setting(
        "telegram_api_url",
        _to_str,
        "https://api.telegram.org",
        "Bot API base URL.",
    ),
    Setting(
        "telegram_priority",
        _to_priority,
        "critical",
        "Priority of pulses made from Telegram messages.",
    ),
    Setting(
        "telegram_continuity",
        _to_seconds,
        1800.0,
        "Resume a chat's last session if it spoke within this window.",
    ),
    Setting("backup_keep", _to_positive_int, 7, "Backups kept by 'reeve db backup'."),
)

SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """The effective settings and where each one came from."""

    values: dict[str, Any]
    sources: dict[str, str]
    config_file: Path
    config_file_exists: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def data_path(self) -> Path:
        return Path(self.values["data_dir"]).expanduser()

    @property
    def db_url(self) -> str:
        return str(self.values["database_url"])

    @property
    def zone(self) -> Any:
        from zoneinfo import ZoneInfo

        return ZoneInfo(self.values["timezone"])

    @property
    def desk_path(self) -> Path:
        return Path(self.values["desk"]).expanduser()

    @property
    def api_token_path(self) -> Path:
        return self.data_path / "api_token"

    @property
    def logs_path(self) -> Path:
        return self.data_path / "logs"

    @property
    def backups_path(self) -> Path:
        return self.data_path / "backups"

    def redacted(self) -> dict[str, Any]:
        """Return the values with every secret replaced by a mask."""
        shown = dict(self.values)
        for setting in SETTINGS:
            if setting.secret and shown.get(setting.name):
                shown[setting.name] = "********"
        return shown

    def secrets(self) -> list[str]:
        """Return the secret values that are set, for redaction in logs."""
        return [
            str(self.values[s.name])
            for s in SETTINGS
            if s.secret and self.values.get(s.name)
        ]


def _is_zone(name: str) -> bool:
    try:
        _to_zone(name)
    except ValueError:
        return False
    return True


def system_zone() -> str:
    """Name the system's IANA time zone, or 'UTC' when it cannot be told."""
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz and not tz.startswith("/") and _is_zone(tz):  # not a POSIX rule string
        return tz
    try:
        name = Path("/etc/timezone").read_text().strip()
        if name:
            return name
    except OSError:
        pass
    try:
        target = os.readlink("/etc/localtime")
        marker = "zoneinfo/"
        if marker in target:
            return target.split(marker, 1)[1]
    except OSError:
        pass
    return "UTC"


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(
            f"Config file {path} cannot be read: {exc.strerror}"
        ) from None

    unknown = sorted(set(data) - set(SETTINGS_BY_NAME))
    if unknown:
        raise ConfigError(
            f"Config file {path}: unknown key '{unknown[0]}'; "
            "see 'reeve config show' for the known keys"
        )
    return data


def _convert(setting: Setting, raw: Any, origin: str) -> Any:
    """Read one raw value; `origin` names where it came from, for the error line."""
    if isinstance(raw, list) and setting.name == "telegram_chat_ids":
        raw = ",".join(str(item) for item in raw)
    elif isinstance(raw, bool):
        raise ConfigError(f"{origin}: expected a value, not true or false")
    elif not isinstance(raw, str | int | float):
        raise ConfigError(f"{origin}: expected a single value, got {raw!r}")
    try:
        return setting.parse(str(raw))
    except ValueError as exc:
        raise ConfigError(f"{origin}: {exc}") from None
    except ConfigError:
        raise
    except Exception as exc:  # a parser's own error class, e.g. InvalidTime
        message = getattr(exc, "message", str(exc))
        raise ConfigError(f"{origin}: {message}") from None


# Settings with a command-line option of their own; the rest use --set KEY=VALUE.
_OWN_FLAGS = frozenset({"data_dir", "database_url", "timezone"})


def _flag_origin(name: str) -> str:
    if name in _OWN_FLAGS:
        return "Option --" + name.replace("_", "-")
    return f"Option --set {name}"


def load_settings(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve every setting from flags, environment, config file and defaults.

    Args:
        flags: values given on the command line, by setting name; None means unset.
        environ: the environment to read; default `os.environ`.

    Raises:
        ConfigError: the config file is malformed or a value cannot be read.
    """
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    environ = os.environ if environ is None else environ

    config_file = Path(
        flags.get("config")
        or environ.get("REEVE_CONFIG")
        or _user_config_dir() / "config.toml"
    ).expanduser()
    file_values = _read_file(config_file)

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for setting in SETTINGS:
        if setting.name in flags:
            raw, source = flags[setting.name], "flag"
            origin = _flag_origin(setting.name)
        elif environ.get(setting.env, "") != "":
            raw, source = environ[setting.env], "env"
            origin = setting.env
        elif setting.name in file_values:
            raw, source = file_values[setting.name], "file"
            origin = f"Config file {config_file}, key '{setting.name}'"
        else:
            values[setting.name], sources[setting.name] = setting.default, "default"
            continue
        values[setting.name] = _convert(setting, raw, origin)
        sources[setting.name] = source

    if values["data_dir"] is None:
        values["data_dir"] = str(_user_data_dir())
    values["data_dir"] = str(Path(values["data_dir"]).expanduser().absolute())
    if values["database_url"] is None:
        values["database_url"] = f"sqlite:///{values['data_dir']}/reeve.db"
    if values["timezone"] is None:
        values["timezone"] = _convert(
            SETTINGS_BY_NAME["timezone"], system_zone(), "System time zone"
        )
    if values["desk"] is None:
        values["desk"] = str(Path.home())

    return Settings(
        values=values,
        sources=sources,
        config_file=config_file,
        config_file_exists=config_file.exists(),
    )


def ensure_data_dir(settings: Settings) -> Path:
    """Create the data directory private to this user (0700) if it is missing."""
    path = settings.data_path
    if not path.exists():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.chmod(0o700)
    return path
