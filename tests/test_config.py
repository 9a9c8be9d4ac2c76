"""Settings: precedence flag > env > file > default, sources, clear errors."""

import json

import pytest

from reeve_cli.config import SETTINGS, SETTINGS_BY_NAME, load_settings
from reeve_cli.errors import ConfigError


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "config.toml"

    def write(text):
        path.write_text(text)
        return path

    return write


def show(cli, *flags):
    result = cli(*flags, "config", "show", "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_every_setting_has_env_name_and_default_source(cli):
    shown = show(cli)

    assert list(shown) == [s.name for s in SETTINGS]
    assert shown["executor"] == {
        "value": "claude",
        "source": "default",
        "env": "REEVE_EXECUTOR",
    }
    assert shown["api_port"]["value"] == 8765


def test_file_beats_default(cli, config_file):
    config_file("api_port = 9001\nexecutor = 'command'\n")

    shown = show(cli)

    assert shown["api_port"] == {
        "value": 9001,
        "source": "file",
        "env": "REEVE_API_PORT",
    }
    assert shown["executor"]["source"] == "file"


def test_env_beats_file(cli, config_file, monkeypatch):
    config_file("api_port = 9001\n")
    monkeypatch.setenv("REEVE_API_PORT", "9002")

    shown = show(cli)

    assert shown["api_port"]["value"] == 9002
    assert shown["api_port"]["source"] == "env"


def test_flag_beats_env_and_file(cli, config_file, monkeypatch):
    config_file("api_port = 9001\ntimezone = 'Asia/Tokyo'\n")
    monkeypatch.setenv("REEVE_API_PORT", "9002")

    shown = show(cli, "--set", "api_port=9003", "--timezone", "America/New_York")

    assert shown["api_port"] == {
        "value": 9003,
        "source": "flag",
        "env": "REEVE_API_PORT",
    }
    assert shown["timezone"]["value"] == "America/New_York"
    assert shown["timezone"]["source"] == "flag"


def test_empty_env_value_counts_as_unset(cli, config_file, monkeypatch):
    config_file("executor = 'command'\n")
    monkeypatch.setenv("REEVE_EXECUTOR", "")

    shown = show(cli)

    assert shown["executor"] == {
        "value": "command",
        "source": "file",
        "env": "REEVE_EXECUTOR",
    }


def test_config_flag_chooses_the_file(cli, tmp_path):
    other = tmp_path / "other.toml"
    other.write_text("max_concurrent = 3\n")

    shown = show(cli, "--config", str(other))

    assert shown["max_concurrent"] == {
        "value": 3,
        "source": "file",
        "env": "REEVE_MAX_CONCURRENT",
    }


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param(
            "api_port = ",
            " is not valid TOML: Invalid value (at end of document)",
            id="malformed",
        ),
        pytest.param(
            "[api\nport = 1",
            " is not valid TOML: Expected ']' at the end of a table declaration "
            "(at line 1, column 5)",
            id="bad-table",
        ),
        pytest.param(
            "api_prot = 9000",
            ": unknown key 'api_prot'; see 'reeve config show' for the known keys",
            id="unknown-key",
        ),
        pytest.param(
            "api_port = 'abc'",
            ", key 'api_port': expected a whole number, got 'abc'",
            id="not-a-number",
        ),
        pytest.param(
            "api_port = 70000",
            ", key 'api_port': must be a port between 0 and 65535, got 70000",
            id="port-range",
        ),
        pytest.param(
            "max_concurrent = 0",
            ", key 'max_concurrent': must be at least 1, got 0",
            id="too-small",
        ),
        pytest.param(
            "timezone = 'Mars/Olympus'",
            ", key 'timezone': unknown time zone 'Mars/Olympus'; "
            "use an IANA name such as 'Europe/Berlin'",
            id="zone",
        ),
        pytest.param(
            "pulse_timeout = 'soon'",
            ", key 'pulse_timeout': Cannot read duration 'soon'; "
            "use '90s', '15m', '2h', '1h30m', '2 hours', '1d' or '1w'",
            id="duration",
        ),
        pytest.param(
            "api_port = true",
            ", key 'api_port': expected a value, not true or false",
            id="bool",
        ),
        pytest.param(
            "api_host = ['a', 'b']",
            ", key 'api_host': expected a single value, got ['a', 'b']",
            id="list",
        ),
        pytest.param(
            "telegram_chat_ids = 'one'",
            ", key 'telegram_chat_ids': expected comma-separated numeric chat ids, "
            "got 'one'",
            id="chat-ids",
        ),
        pytest.param(
            "log_level = 'loud'",
            ", key 'log_level': use one of DEBUG, INFO, WARNING, ERROR, got 'loud'",
            id="level",
        ),
        pytest.param(
            "telegram_priority = 'urgent'",
            ", key 'telegram_priority': Unknown priority 'urgent'; "
            "use one of critical, high, normal, low, deferred",
            id="priority",
        ),
        pytest.param(
            "recovery = 'maybe'",
            ", key 'recovery': use 'retry' or 'fail', got 'maybe'",
            id="recovery",
        ),
    ],
)
def test_bad_config_file_gives_one_line_naming_file_key_and_problem(
    cli, config_file, monkeypatch, text, problem
):
    monkeypatch.delenv("REEVE_TIMEZONE")
    path = config_file(text)

    result = cli("pulse", "list")

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f"Error: Config file {path}{problem}\n"


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("REEVE_API_PORT", "abc", "expected a whole number, got 'abc'"),
        ("REEVE_MAX_CONCURRENT", "0", "must be at least 1, got 0"),
        (
            "REEVE_TIMEZONE",
            "Nowhere",
            "unknown time zone 'Nowhere'; use an IANA name such as 'Europe/Berlin'",
        ),
    ],
)
def test_bad_env_value_names_the_variable(cli, monkeypatch, name, value, problem):
    monkeypatch.setenv(name, value)

    result = cli("config", "show")

    assert result.exit_code == 1
    assert result.stderr == f"Error: {name}: {problem}\n"


def test_bad_flag_value_names_the_option(cli):
    set_result = cli("--set", "max_retries=lots", "pulse", "list")
    zone_result = cli("--timezone", "Nowhere", "pulse", "list")

    assert set_result.exit_code == 1
    assert set_result.stderr == (
        "Error: Option --set max_retries: expected a whole number, got 'lots'\n"
    )
    assert zone_result.exit_code == 1
    assert zone_result.stderr == (
        "Error: Option --timezone: unknown time zone 'Nowhere'; "
        "use an IANA name such as 'Europe/Berlin'\n"
    )


def test_unreadable_config_file_names_it(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("REEVE_CONFIG", str(tmp_path))

    result = cli("config", "show")

    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: Config file {tmp_path} cannot be read: Is a directory\n"
    )


def test_load_settings_reads_chat_id_list_from_toml(config_file):
    path = config_file("telegram_chat_ids = [1, -1002]\n")

    settings = load_settings(environ={"REEVE_CONFIG": str(path)})

    assert settings.telegram_chat_ids == (1, -1002)
    assert settings.sources["telegram_chat_ids"] == "file"


def test_load_settings_reads_chat_ids_from_env():
    settings = load_settings(environ={"REEVE_TELEGRAM_CHAT_IDS": "5, 6;7"})

    assert settings.telegram_chat_ids == (5, 6, 7)


def test_durations_are_seconds():
    settings = load_settings(
        environ={"REEVE_PULSE_TIMEOUT": "1h30m", "REEVE_STOP_GRACE": "45"}
    )

    assert settings.pulse_timeout == 5400.0
    assert settings.stop_grace == 45.0


def test_derived_paths_follow_data_dir(tmp_path):
    settings = load_settings(
        flags={"data_dir": str(tmp_path / "d")},
        environ={"REEVE_CONFIG": str(tmp_path / "none.toml")},
    )

    assert settings.data_path == tmp_path / "d"
    assert settings.db_url == f"sqlite:///{tmp_path / 'd'}/reeve.db"
    assert settings.api_token_path == tmp_path / "d" / "api_token"
    assert settings.logs_path == tmp_path / "d" / "logs"
    assert settings.backups_path == tmp_path / "d" / "backups"


def test_database_url_setting_wins_over_data_dir(tmp_path):
    settings = load_settings(
        environ={
            "REEVE_DATA_DIR": str(tmp_path),
            "REEVE_DATABASE_URL": "postgresql://reeve@localhost/reeve",
        }
    )

    assert settings.db_url == "postgresql://reeve@localhost/reeve"


def test_secrets_lists_only_set_secrets():
    settings = load_settings(environ={"REEVE_TELEGRAM_TOKEN": "123:abc"})

    assert settings.secrets() == ["123:abc"]
    assert settings.redacted()["telegram_token"] == "********"


def test_load_settings_raises_config_error_for_bad_env():
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"REEVE_API_PORT": "-1"})

    assert caught.value.message == (
        "REEVE_API_PORT: must be a port between 0 and 65535, got -1"
    )


def test_issue_settings_exist_with_exact_env_names():
    required = {
        "REEVE_DATA_DIR", "REEVE_DATABASE_URL", "REEVE_TIMEZONE", "REEVE_DESK",
        "REEVE_EXECUTOR", "REEVE_AGENT_COMMAND", "REEVE_MAX_CONCURRENT",
        "REEVE_PULSE_TIMEOUT", "REEVE_API_HOST", "REEVE_API_PORT", "REEVE_API_TOKEN",
        "REEVE_TELEGRAM_TOKEN", "REEVE_TELEGRAM_CHAT_IDS", "REEVE_TELEGRAM_API_URL",
    }  # fmt: skip

    assert required <= {s.env for s in SETTINGS}
    assert SETTINGS_BY_NAME["api_token"].secret
    assert SETTINGS_BY_NAME["telegram_token"].secret


@pytest.mark.parametrize(
    ("tz", "expected"),
    [
        ("Asia/Tokyo", "Asia/Tokyo"),
        (":America/New_York", "America/New_York"),
        ("UTC", "UTC"),
    ],
)
def test_system_zone_reads_tz(monkeypatch, tz, expected):
    monkeypatch.setenv("TZ", tz)
    monkeypatch.delenv("REEVE_TIMEZONE")

    settings = load_settings()

    assert settings.timezone == expected
    assert settings.sources["timezone"] == "default"


def test_system_zone_ignores_posix_rule_strings(monkeypatch):
    from reeve_cli.config import system_zone

    monkeypatch.setenv("TZ", "CET-1CEST,M3.5.0,M10.5.0/3")

    assert system_zone() != "CET-1CEST,M3.5.0,M10.5.0/3"
