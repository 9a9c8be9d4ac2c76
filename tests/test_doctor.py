"""`reeve doctor`: a healthy installation passes; each problem fails with a fix."""

from __future__ import annotations

import fcntl
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

TOKEN = "123456789:" + "A" * 35


@pytest.fixture
def healthy(cli, tmp_path, monkeypatch, reeve_env):
    """A set-up with nothing to complain about (the daemon is simply stopped)."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".claude.json").write_text(
        json.dumps({"mcpServers": {"reeve": {"command": "reeve"}}})
    )
    agent = tmp_path / "agent"
    agent.write_text(f"#!{sys.executable}\nprint('fake-agent 1.2.3')\n")
    agent.chmod(0o755)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("REEVE_AGENT_COMMAND", str(agent))
    monkeypatch.setenv("REEVE_API_TOKEN", "s3cret-api-token-value")
    monkeypatch.setenv("REEVE_TELEGRAM_TOKEN", TOKEN)
    monkeypatch.setenv("REEVE_TELEGRAM_CHAT_IDS", "4242")
    assert cli("db", "upgrade").exit_code == 0
    return agent


def doctor_json(cli, *args):
    result = cli("doctor", "--json", *args)
    report = json.loads(result.stdout)
    states = {}
    for check in report["checks"]:
        states.setdefault(check["name"], check)
    return result, report, states


def test_healthy_installation_passes(cli, healthy):
    result, report, states = doctor_json(cli)

    assert result.exit_code == 0
    assert report["ok"] is True
    assert {name: c["state"] for name, c in states.items()} == {
        "config": "ok",
        "data dir": "ok",
        "database file": "ok",
        "database": "ok",
        "daemon": "warn",
        "api token": "ok",
        "executor": "ok",
        "agent": "ok",
        "desk": "ok",
        "mcp": "ok",
        "systemd units": "ok",
        "telegram": "ok",
    }
    assert states["agent"]["detail"] == f"{healthy}: fake-agent 1.2.3"
    assert states["daemon"]["fix"].startswith("systemctl --user start reeve-daemon")


def test_secrets_never_appear_in_the_report(cli, healthy):
    human = cli("doctor")
    machine = cli("doctor", "--json")

    for text in (human.stdout, human.stderr, machine.stdout):
        assert TOKEN not in text
        assert "s3cret-api-token-value" not in text


def test_human_output_is_a_checklist_with_fixes(cli, healthy, settings):
    settings.data_path.chmod(0o755)

    result = cli("doctor")

    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("✓ config")
    assert f"✗ data dir       {settings.data_path} is 0755; others can read it" in lines
    assert f"fix: chmod 700 {settings.data_path}" in result.stdout
    assert result.stderr == "1 problem, 1 warning\n"


@pytest.mark.parametrize(
    ("name", "path", "mode", "fix"),
    [
        pytest.param("api token file", "data/api_token", 0o644, "600", id="token"),
        pytest.param("environment file", "env", 0o640, "600", id="env-file"),
        pytest.param("database file", "data/reeve.db", 0o664, "600", id="database"),
    ],
)
def test_loose_secret_files_fail(cli, healthy, tmp_path, name, path, mode, fix):
    target = tmp_path / path
    if not target.exists():
        target.write_text("secret\n")
    target.chmod(mode)

    result, report, states = doctor_json(cli)

    assert result.exit_code == 1
    assert report["ok"] is False
    assert states[name]["state"] == "fail"
    assert states[name]["detail"] == f"{target} is {mode:04o}; others can read it"
    assert states[name]["fix"] == f"chmod {fix} {target}"


def test_config_file_must_be_private_only_when_it_holds_a_secret(
    cli, healthy, tmp_path
):
    config = tmp_path / "config.toml"
    config.write_text('timezone = "Europe/Berlin"\n')
    config.chmod(0o644)

    _, _, plain = doctor_json(cli)
    config.write_text('telegram_token = "123456789:' + "B" * 35 + '"\n')
    result, _, secret = doctor_json(cli)

    assert "config file" not in plain
    assert result.exit_code == 1
    assert secret["config file"]["fix"] == f"chmod 600 {config}"


def test_missing_agent_fails(cli, healthy, monkeypatch):
    monkeypatch.setenv("REEVE_AGENT_COMMAND", "no-such-agent-xyz --flag")

    result, _, states = doctor_json(cli)

    assert result.exit_code == 1
    assert states["agent"] == {
        "name": "agent",
        "state": "fail",
        "detail": "'no-such-agent-xyz' not found on PATH",
        "fix": "install 'no-such-agent-xyz', or point REEVE_AGENT_COMMAND at the "
        "agent program",
    }


def test_agent_that_cannot_report_its_version_fails(cli, healthy):
    healthy.write_text(f"#!{sys.executable}\nimport sys; sys.exit(3)\n")

    result, _, states = doctor_json(cli)

    assert result.exit_code == 1
    assert states["agent"]["detail"] == f"'{healthy} --version' exited with 3"


def test_missing_desk_fails(cli, healthy, tmp_path, monkeypatch):
    monkeypatch.setenv("REEVE_DESK", str(tmp_path / "gone"))

    result, _, states = doctor_json(cli)

    assert result.exit_code == 1
    assert states["desk"]["state"] == "fail"
    assert states["desk"]["fix"].startswith(f"mkdir -p {tmp_path / 'gone'}")


def test_damaged_database_fails(cli, healthy, tmp_path, monkeypatch):
    bad = tmp_path / "damaged.db"
    bad.write_bytes(b"garbage" * 1000)
    monkeypatch.setenv("REEVE_DATABASE_URL", f"sqlite:///{bad}")

    result, _, states = doctor_json(cli)

    assert result.exit_code == 1
    assert states["database"] == {
        "name": "database",
        "state": "fail",
        "detail": f"{bad} cannot be read: file is not a database",
        "fix": "restore a backup: reeve db restore <backup>",
    }


def test_bad_config_file_fails_first(cli, healthy, tmp_path):
    (tmp_path / "config.toml").write_text("api_port = [\n")

    result, report, _ = doctor_json(cli)

    assert result.exit_code == 1
    assert [c["name"] for c in report["checks"]] == ["config"]
    assert report["checks"][0]["detail"].startswith(
        f"Config file {tmp_path / 'config.toml'} is not valid TOML"
    )


@pytest.mark.parametrize(
    ("env", "detail"),
    [
        pytest.param(
            {"REEVE_TELEGRAM_TOKEN": "not-a-token-at-all"},
            "REEVE_TELEGRAM_TOKEN does not look like a bot token (digits:secret)",
            id="token-format",
        ),
        pytest.param(
            {"REEVE_TELEGRAM_CHAT_IDS": ""},
            "REEVE_TELEGRAM_CHAT_IDS is empty, so no chat is served",
            id="no-chats",
        ),
    ],
)
def test_telegram_misconfiguration_fails(cli, healthy, monkeypatch, env, detail):
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    result, _, states = doctor_json(cli)

    assert result.exit_code == 1
    assert states["telegram"]["state"] == "fail"
    assert states["telegram"]["detail"] == detail


def test_missing_mcp_registration_is_a_warning_with_the_command(cli, healthy):
    (healthy.parent / "home" / ".claude.json").write_text("{}")

    result, _, states = doctor_json(cli)

    assert result.exit_code == 0
    assert states["mcp"]["state"] == "warn"
    assert "reeve mcp config" in states["mcp"]["fix"]


def test_fresh_install_only_warns_about_what_first_use_creates(
    cli, tmp_path, monkeypatch
):
    agent = tmp_path / "agent"
    agent.write_text(f"#!{sys.executable}\nprint('1.0')\n")
    agent.chmod(0o755)
    monkeypatch.setenv("REEVE_AGENT_COMMAND", str(agent))

    result, _, states = doctor_json(cli)

    assert result.exit_code == 0
    assert states["data dir"]["state"] == "warn"
    assert states["database"]["state"] == "warn"


# A daemon answering (or not) on a real socket --------------------------------


class Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802 (http.server's naming)
        body = json.dumps({"status": "ok" if self.status == 200 else "error"})
        self.send_response(self.status if self.path == "/api/health" else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_daemon(settings):
    """Hold the daemon lock and serve /api/health like a running daemon."""

    def start(status):
        handler = type("H", (Health,), {"status": status})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        lock = open(settings.data_path / "daemon.lock", "a+")  # noqa: SIM115
        fcntl.flock(lock, fcntl.LOCK_EX)
        info = {"pid": os.getpid(), "host": "here", "started_at": None, "api_url": url}
        (settings.data_path / "daemon.json").write_text(json.dumps(info))
        started.append((server, lock))
        return url

    started = []
    yield start
    for server, lock in started:
        server.shutdown()
        server.server_close()
        lock.close()


def test_reachable_daemon_passes(cli, healthy, fake_daemon):
    url = fake_daemon(200)

    result, _, states = doctor_json(cli)

    assert result.exit_code == 0
    assert states["daemon"]["state"] == "ok"
    assert states["daemon"]["detail"] == f"running (pid {os.getpid()}) at {url}"


def test_unhealthy_daemon_fails(cli, healthy, fake_daemon):
    fake_daemon(503)

    result, _, states = doctor_json(cli)

    assert result.exit_code == 1
    assert states["daemon"]["state"] == "fail"
    assert "GET /api/health answered 503" in states["daemon"]["detail"]


# --online: the Bot API on loopback -------------------------------------------


@pytest.mark.parametrize(("status", "state"), [(200, "ok"), (401, "fail")])
def test_online_asks_the_bot_api(cli, healthy, monkeypatch, status, state):
    seen = []

    class BotApi(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append(self.path)
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b'{"ok": true}')

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), BotApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv(
        "REEVE_TELEGRAM_API_URL", f"http://127.0.0.1:{server.server_address[1]}"
    )
    try:
        result, _, states = doctor_json(cli, "--online")
    finally:
        server.shutdown()
        server.server_close()

    assert seen == [f"/bot{TOKEN}/getMe"]
    assert states["telegram"]["state"] == state
    assert TOKEN not in result.stdout


def test_real_daemon_is_reachable(cli, healthy):
    from tests.daemon_helpers import start_daemon

    daemon = start_daemon()
    try:
        result, _, states = doctor_json(cli)
    finally:
        daemon.stop()

    assert result.exit_code == 0
    assert states["daemon"] == {
        "name": "daemon",
        "state": "ok",
        "detail": f"running (pid {daemon.pid}) at {daemon.api_url}",
        "fix": None,
    }


def test_installed_units_of_another_installation_are_flagged(
    cli, healthy, tmp_path, monkeypatch
):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert cli("install-service", "--user").exit_code == 0
    _, _, current = doctor_json(cli)
    monkeypatch.setenv("REEVE_DESK", str(tmp_path / "home"))

    result, _, moved = doctor_json(cli)

    assert current["systemd units"]["state"] == "ok"
    assert result.exit_code == 0
    assert moved["systemd units"]["state"] == "warn"
    assert moved["systemd units"]["fix"] == (
        "reeve install-service --user, then systemctl --user daemon-reload"
    )
