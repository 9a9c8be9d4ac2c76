"""How `reeve mcp serve` finds its settings from a trimmed environment."""

from reeve_cli.envfile import read_env_file
from reeve_cli.mcp_server import load_server_settings


def test_read_env_file_understands_the_unit_file_syntax(tmp_path):
    path = tmp_path / "env"
    path.write_text(
        "# Secrets for Reeve's systemd units\n"
        "; another comment\n"
        "\n"
        "REEVE_TELEGRAM_TOKEN=123:abc\n"
        'REEVE_TELEGRAM_CHAT_IDS="11, 22"\n'
        "REEVE_NOTIFIER = 'telegram'\n"
        "PATH=/elsewhere\n"
        "not an assignment\n"
    )

    assert read_env_file(path) == {
        "REEVE_TELEGRAM_TOKEN": "123:abc",
        "REEVE_TELEGRAM_CHAT_IDS": "11, 22",
        "REEVE_NOTIFIER": "telegram",
    }
    assert read_env_file(tmp_path / "missing") == {}


def test_server_settings_take_secrets_from_the_env_file(tmp_path):
    (tmp_path / "env").write_text("REEVE_TELEGRAM_TOKEN=123:from-file\n")
    flags = {"config": str(tmp_path / "config.toml"), "data_dir": str(tmp_path)}

    settings = load_server_settings(flags, environ={})

    assert settings.telegram_token == "123:from-file"
    assert settings.sources["telegram_token"] == "env"


def test_real_environment_and_flags_win_over_the_env_file(tmp_path):
    (tmp_path / "env").write_text("REEVE_TELEGRAM_TOKEN=123:file\nREEVE_TIMEZONE=UTC\n")
    flags = {"config": str(tmp_path / "config.toml"), "timezone": "Asia/Tokyo"}

    settings = load_server_settings(
        flags, environ={"REEVE_TELEGRAM_TOKEN": "123:environment"}
    )

    assert settings.telegram_token == "123:environment"
    assert settings.timezone == "Asia/Tokyo"
