"""`reeve install-service`: dry runs, user installs, the printed commands."""

from __future__ import annotations

import getpass
import json
import os
import pwd
import stat

import pytest

from tests.conftest import reeve_bin

UNITS = [
    "reeve-alert@.service",
    "reeve-backup.service",
    "reeve-backup.timer",
    "reeve-daemon.service",
    "reeve-telegram.service",
]


def test_dry_run_prints_units_and_commands_and_writes_nothing(cli, tmp_path):
    unit_dir = tmp_path / "units"

    result = cli("install-service", "--dry-run", "--unit-dir", str(unit_dir))

    assert result.exit_code == 0
    headers = [line for line in result.stdout.splitlines() if line.startswith("# /")]
    assert sorted(h.rsplit("/", 1)[1] for h in headers) == UNITS
    assert f"ExecStart={reeve_bin()} daemon" in result.stdout
    assert result.stdout.endswith(
        "# Then run:\n"
        "systemctl --user daemon-reload\n"
        "systemctl --user enable --now reeve-daemon.service reeve-backup.timer\n"
        f"loginctl enable-linger {getpass.getuser()}\n"
    )
    assert not unit_dir.exists()
    assert not (tmp_path / "env").exists()


@pytest.fixture
def other_home(monkeypatch):
    """install-service --system --run-as switches HOME; restore it afterwards."""
    monkeypatch.setenv("HOME", os.environ.get("HOME", "/root"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)


def test_system_dry_run_uses_system_paths(cli, other_home):
    result = cli("install-service", "--system", "--dry-run", "--run-as", "nobody")

    assert result.exit_code == 0
    assert "# /etc/systemd/system/reeve-daemon.service\n" in result.stdout
    assert "\nUser=nobody\n" in result.stdout
    assert result.stdout.endswith(
        "systemctl daemon-reload\n"
        "systemctl enable --now reeve-daemon.service reeve-backup.timer\n"
    )


def test_telegram_unit_is_enabled_when_a_token_is_set(cli, monkeypatch):
    monkeypatch.setenv("REEVE_TELEGRAM_TOKEN", "123456:" + "A" * 35)

    result = cli("install-service", "--dry-run")

    assert (
        "systemctl --user enable --now reeve-daemon.service reeve-backup.timer "
        "reeve-telegram.service\n"
    ) in result.stdout
    assert "A" * 35 not in result.stdout


def test_user_install_writes_into_xdg_config_home(run_reeve, tmp_path, reeve_env):
    home = tmp_path / "home"
    config_home = tmp_path / "xdg-config"
    home.mkdir()

    done = run_reeve(
        "install-service",
        "--user",
        env={"HOME": str(home), "XDG_CONFIG_HOME": str(config_home)},
    )

    assert done.returncode == 0, done.stderr
    unit_dir = config_home / "systemd" / "user"
    assert sorted(p.name for p in unit_dir.iterdir()) == UNITS
    assert done.stdout.startswith("systemctl --user daemon-reload\n")
    assert f"Wrote {unit_dir / 'reeve-daemon.service'}\n" in done.stderr
    daemon = (unit_dir / "reeve-daemon.service").read_text()
    assert f"ReadWritePaths={reeve_env} " in daemon
    assert f"-{home / '.claude'} " in daemon
    assert stat.S_IMODE(reeve_env.stat().st_mode) == 0o700


def test_install_creates_a_private_env_file_and_keeps_an_existing_one(cli, tmp_path):
    env_file = tmp_path / "env"  # next to REEVE_CONFIG

    first = cli("install-service", "--unit-dir", str(tmp_path / "u"))
    created_mode = stat.S_IMODE(env_file.stat().st_mode)
    env_file.write_text("REEVE_TELEGRAM_TOKEN=keep-me\n")
    second = cli("install-service", "--unit-dir", str(tmp_path / "u"))

    assert first.exit_code == second.exit_code == 0
    assert created_mode == 0o600
    assert env_file.read_text() == "REEVE_TELEGRAM_TOKEN=keep-me\n"


# reeve alert: what reeve-alert@.service runs --------------------------------


def test_alert_without_a_notifier_fails_with_the_fix(cli):
    done = cli("alert", "--unit", "reeve-daemon.service")

    assert done.exit_code == 1
    assert done.stderr == (
        "Error: No notifier configured; set REEVE_TELEGRAM_TOKEN and "
        "REEVE_TELEGRAM_CHAT_IDS\n"
    )


def test_alert_reports_the_failed_unit_through_telegram(run_reeve):
    import socket

    from tests.fake_bot_api import CHAT, FakeBotApi

    bot = FakeBotApi().start()
    try:
        done = run_reeve(
            "alert",
            "--unit",
            "reeve-backup.service",
            "--json",
            env={
                "REEVE_TELEGRAM_TOKEN": bot.token,
                "REEVE_TELEGRAM_CHAT_IDS": str(CHAT),
                "REEVE_TELEGRAM_API_URL": bot.url,
            },
        )
        sent = bot.calls_of("sendMessage")
    finally:
        bot.stop()

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "sent"
    assert len(sent) == 1
    text = sent[0][1]["text"]
    assert text.startswith(
        f"Reeve on {socket.gethostname()}: reeve-backup.service failed."
    )
    assert text.endswith("Details: journalctl --user -u reeve-backup.service -n 50")
    assert bot.token not in done.stdout + done.stderr


def test_alert_unit_passes_the_failed_unit_name(cli, tmp_path):
    unit_dir = tmp_path / "u"
    cli("install-service", "--unit-dir", str(unit_dir))

    alert = (unit_dir / "reeve-alert@.service").read_text()
    daemon = (unit_dir / "reeve-daemon.service").read_text()

    assert f"ExecStart={reeve_bin()} alert --unit %i\n" in alert
    assert "OnFailure=reeve-alert@%n.service\n" in daemon
    assert "\nOnFailure=" not in alert  # a failed alert must not alert again


def test_system_install_resolves_paths_as_the_service_user(
    cli, other_home, monkeypatch
):
    """Under sudo HOME is root's; the units must use the service user's paths."""
    monkeypatch.delenv("REEVE_DATA_DIR")
    monkeypatch.delenv("REEVE_DESK")
    monkeypatch.delenv("REEVE_CONFIG")
    home = pwd.getpwnam("nobody").pw_dir

    result = cli("install-service", "--system", "--dry-run", "--run-as", "nobody")

    assert result.exit_code == 0
    assert f'Environment="REEVE_DATA_DIR={home}/.local/share/reeve"' in result.stdout
    assert f'Environment="REEVE_DESK={home}"' in result.stdout
    assert f"EnvironmentFile=-{home}/.config/reeve/env" in result.stdout


def test_system_install_for_an_unknown_user_fails(cli, other_home):
    result = cli("install-service", "--system", "--dry-run", "--run-as", "no-such-xyz")

    assert result.exit_code == 1
    assert result.stderr == (
        "Error: No user 'no-such-xyz' on this system; give an existing one to "
        "--run-as\n"
    )


def test_system_alert_unit_points_at_the_system_journal(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", os.environ.get("HOME", "/root"))
    unit_dir = tmp_path / "s"
    cli("install-service", "--system", "--unit-dir", str(unit_dir))

    alert = (unit_dir / "reeve-alert@.service").read_text()

    assert f"ExecStart={reeve_bin()} alert --unit %i --system\n" in alert
