"""`reeve mcp config`: a registration that works without any REEVE_* variable."""

import json
import shlex
import sys
from pathlib import Path

from tests.mcp_helpers import ZONE, McpServer, bare_env

REEVE = str(Path(sys.executable).with_name("reeve"))


def test_json_registration_has_absolute_command_and_settings_as_args(
    run_reeve, reeve_env, tmp_path
):
    result = run_reeve("mcp", "config", "--client", "json")

    assert result.returncode == 0, result.stderr
    server = json.loads(result.stdout)["mcpServers"]["reeve"]
    assert server["type"] == "stdio"
    assert server["command"] == REEVE
    assert server["args"] == [
        "--config",
        str(tmp_path / "config.toml"),
        "--data-dir",
        str(reeve_env),
        "--timezone",
        ZONE,
        "--set",
        f"desk={tmp_path}",  # REEVE_DESK, set by the reeve_env fixture
        "mcp",
        "serve",
    ]
    assert "env" not in server
    assert result.stderr == ""


def test_claude_registration_is_one_claude_mcp_add_command(run_reeve, reeve_env):
    result = run_reeve("mcp", "config")

    words = shlex.split(result.stdout)
    assert result.returncode == 0
    assert words[:6] == ["claude", "mcp", "add", "--scope", "user", "reeve"]
    assert words[6:8] == ["--", REEVE]
    assert words[-2:] == ["mcp", "serve"]
    assert words[words.index("--data-dir") + 1] == str(reeve_env)


def test_hapi_registration_explains_it_goes_through_claude(run_reeve):
    result = run_reeve("mcp", "config", "--client", "hapi")

    lines = result.stdout.splitlines()
    assert lines[0].startswith("# Hapi runs Claude Code")
    assert lines[1].startswith("claude mcp add --scope user reeve -- ")


def test_registration_carries_global_flags_and_env_settings(cli, tmp_path):
    result = cli(
        "--data-dir",
        str(tmp_path / "elsewhere"),
        "--database-url",
        f"sqlite:///{tmp_path / 'other.db'}",
        "--set",
        "max_retries=5",
        "mcp",
        "config",
        "--client",
        "json",
    )

    args = json.loads(result.stdout)["mcpServers"]["reeve"]["args"]
    assert args[args.index("--data-dir") + 1] == str(tmp_path / "elsewhere")
    assert args[args.index("--database-url") + 1] == f"sqlite:///{tmp_path}/other.db"
    sets = [args[i + 1] for i, arg in enumerate(args) if arg == "--set"]
    assert "max_retries=5" in sets


def test_registration_leaves_secrets_out_and_says_so(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("REEVE_TELEGRAM_TOKEN", "123456:secret-token-value")

    result = cli("mcp", "config")

    assert "secret-token-value" not in result.stdout
    assert "secret-token-value" not in result.stderr
    assert result.stderr == (
        "Not included (secrets would show in process lists): REEVE_TELEGRAM_TOKEN. "
        f"Put them in {tmp_path / 'env'} or the config file; the MCP server reads "
        "both.\n"
    )


def test_no_warning_when_the_units_env_file_has_the_secret(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("REEVE_TELEGRAM_TOKEN", "123456:secret-token-value")
    (tmp_path / "env").write_text("REEVE_TELEGRAM_TOKEN=123456:secret-token-value\n")

    result = cli("mcp", "config")

    assert result.exit_code == 0
    assert result.stderr == ""


def test_unknown_client_is_refused(cli):
    result = cli("mcp", "config", "--client", "cursor")

    assert result.exit_code == 1
    assert (
        result.stderr
        == "Error: Unknown client 'cursor'; use one of claude, hapi, json\n"
    )
    assert result.stdout == ""


def test_printed_registration_starts_a_working_server(run_reeve, db, tmp_path):
    """Spawn exactly what was printed, with a sanitised environment."""
    printed = json.loads(run_reeve("mcp", "config", "--client", "json").stdout)
    server = printed["mcpServers"]["reeve"]

    with McpServer(
        server["args"], bare_env(), tmp_path / "server.err", server["command"]
    ) as running:
        _, data = running.ok("schedule_pulse", when="in 10m", prompt="registered")

    from reeve_cli import store

    assert store.get_pulse(db, data["id"]).prompt == "registered"
