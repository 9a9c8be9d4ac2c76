"""`reeve config show` and `reeve config path` as users see them."""

import json

import pytest

from reeve_cli.config import SETTINGS


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


def test_secrets_are_masked_in_json_and_table(cli, monkeypatch, config_file):
    monkeypatch.setenv("REEVE_API_TOKEN", "s3cret-api-token")
    config_file("telegram_token = '123:bot-secret'\n")

    as_json = cli("config", "show", "--json")
    as_table = cli("config", "show")

    shown = json.loads(as_json.stdout)
    assert shown["api_token"]["value"] == "********"
    assert shown["telegram_token"]["value"] == "********"
    for result in (as_json, as_table):
        assert result.exit_code == 0
        assert "s3cret-api-token" not in result.stdout + result.stderr
        assert "bot-secret" not in result.stdout + result.stderr
    assert "********" in as_table.stdout


def test_unset_secret_shows_null(cli):
    assert show(cli)["api_token"]["value"] is None


def test_config_show_table_lists_every_setting(cli):
    result = cli("config", "show")

    assert result.exit_code == 0
    for setting in SETTINGS:
        assert setting.env in result.stdout


def test_config_path(cli, tmp_path, reeve_env):
    result = cli("config", "path")
    as_json = cli("config", "path", "--json")

    assert result.exit_code == 0
    assert result.stdout == (
        f"config file: {tmp_path / 'config.toml'} (not present)\n"
        f"data dir:    {reeve_env}\n"
    )
    assert json.loads(as_json.stdout) == {
        "config_file": str(tmp_path / "config.toml"),
        "config_file_exists": False,
        "data_dir": str(reeve_env),
        "database_url": f"sqlite:///{reeve_env}/reeve.db",
    }


def test_config_path_when_file_exists(cli, config_file, reeve_env):
    path = config_file("")

    result = cli("config", "path")

    assert result.stdout.splitlines()[0] == f"config file: {path}"


def test_set_with_unknown_key_is_a_usage_error(cli):
    result = cli("--set", "colour=blue", "config", "show")

    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        "Error: Invalid value for --set: 'colour=blue' is not KEY=VALUE with a "
        "known key; see 'reeve config show'"
    )


def test_config_show_entry_point(run_reeve, monkeypatch):
    monkeypatch.setenv("REEVE_TELEGRAM_TOKEN", "99:very-secret")

    result = run_reeve("config", "show", "--json")

    assert result.returncode == 0
    shown = json.loads(result.stdout)
    assert shown["telegram_token"] == {
        "value": "********",
        "source": "env",
        "env": "REEVE_TELEGRAM_TOKEN",
    }
    assert shown["timezone"]["value"] == "Europe/Berlin"
    assert "very-secret" not in result.stdout + result.stderr


def test_config_without_command_shows_help(cli):
    result = cli("config")

    assert "show" in result.stdout + result.stderr
    assert "path" in result.stdout + result.stderr
