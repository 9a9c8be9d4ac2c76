"""systemd units (rendered and committed) and the sd_notify protocol."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time

import pytest

from tests.conftest import ROOT, reeve_bin

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed"
)
DIRECTIVE = re.compile(r"^[A-Za-z]+=")


def render(cli, tmp_path, mode):
    unit_dir = tmp_path / f"units-{mode}"
    result = cli("install-service", f"--{mode}", "--unit-dir", str(unit_dir))
    assert result.exit_code == 0, result.stderr
    return unit_dir


def verify(unit_dir, mode, tmp_path):
    env = dict(os.environ)
    args = [SYSTEMD_ANALYZE, "verify"]
    if mode == "user":
        # The user manager needs a runtime dir of its own (LIBRARIES.md §7).
        runtime = tmp_path / f"runtime-{mode}"
        runtime.mkdir(mode=0o700)
        env["XDG_RUNTIME_DIR"] = str(runtime)
        args.insert(1, "--user")
    units = sorted(str(p) for p in unit_dir.iterdir())
    return subprocess.run(
        args + units, capture_output=True, text=True, env=env, cwd=unit_dir, timeout=60
    )


@needs_analyze
@pytest.mark.parametrize("mode", ["user", "system"])
def test_rendered_units_pass_systemd_analyze_verify(cli, tmp_path, mode):
    unit_dir = render(cli, tmp_path, mode)

    done = verify(unit_dir, mode, tmp_path)

    # verify exits 0 on unknown keys and bad values, so stderr is the verdict.
    assert done.stderr == ""
    assert done.returncode == 0
    assert len(list(unit_dir.iterdir())) == 5


@needs_analyze
def test_verify_catches_a_misspelled_directive(cli, tmp_path):
    """The lint above can fail: a typo in a unit shows up on stderr."""
    unit_dir = render(cli, tmp_path, "system")
    unit = unit_dir / "reeve-daemon.service"
    unit.write_text(unit.read_text().replace("WatchdogSec=", "WatchdogSecs="))

    done = verify(unit_dir, "system", tmp_path)

    assert "Unknown key 'WatchdogSecs'" in done.stderr


def test_rendered_units_use_this_installation(cli, tmp_path, settings):
    unit_dir = render(cli, tmp_path, "user")

    daemon = (unit_dir / "reeve-daemon.service").read_text()

    assert f"ExecStart={reeve_bin()} daemon\n" in daemon
    assert f'Environment="REEVE_DATA_DIR={settings.data_path}"' in daemon
    assert f'Environment="REEVE_DESK={settings.desk_path}"' in daemon
    assert f"EnvironmentFile=-{settings.config_file.parent / 'env'}\n" in daemon
    assert "Type=notify\n" in daemon and "NotifyAccess=main\n" in daemon
    assert "TimeoutStopSec=45\n" in daemon  # stop grace 30 s + 15
    assert f"ReadWritePaths={settings.data_path} {settings.desk_path} " in daemon
    assert "WantedBy=default.target\n" in daemon


def test_timeout_stop_follows_the_stop_grace(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("REEVE_STOP_GRACE", "2m")

    daemon = (render(cli, tmp_path, "user") / "reeve-daemon.service").read_text()

    assert "TimeoutStopSec=135\n" in daemon


def test_system_units_run_as_a_user_after_the_network(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", os.environ.get("HOME", "/root"))
    unit_dir = tmp_path / "sys"
    result = cli(
        "install-service", "--system", "--unit-dir", str(unit_dir), "--run-as", "nobody"
    )
    assert result.exit_code == 0

    for name in ("reeve-daemon.service", "reeve-alert@.service"):
        assert "\nUser=nobody\n" in (unit_dir / name).read_text()
    daemon = (unit_dir / "reeve-daemon.service").read_text()
    assert "After=network-online.target\n" in daemon
    assert "WantedBy=multi-user.target\n" in daemon


def test_paths_with_spaces_and_percent_are_quoted(cli, tmp_path, monkeypatch):
    desk = tmp_path / "my desk 100%"
    desk.mkdir()
    monkeypatch.setenv("REEVE_DESK", str(desk))

    daemon = (render(cli, tmp_path, "user") / "reeve-daemon.service").read_text()

    escaped = str(desk).replace("%", "%%")
    assert f'Environment="REEVE_DESK={escaped}"' in daemon
    assert f'"{escaped}"' in daemon.split("ReadWritePaths=")[1].splitlines()[0]


def comment_gaps(text):
    """Directive lines not directly under a comment (section headers excepted)."""
    lines = text.splitlines()
    return [
        line
        for before, line in zip([""] + lines, lines, strict=False)
        if DIRECTIVE.match(line) and not before.startswith("#")
    ]


def committed_units():
    return sorted((ROOT / "systemd").iterdir())


def test_every_committed_directive_has_a_comment_above_it():
    units = committed_units()

    gaps = {p.name: comment_gaps(p.read_text()) for p in units}

    assert len(units) == 5
    assert gaps == {p.name: [] for p in units}


def test_comment_check_can_fail():
    assert comment_gaps("[Service]\n# why\nType=notify\nRestart=always\n") == [
        "Restart=always"
    ]


def test_committed_units_are_current():
    """`systemd/` is what `python -m reeve_cli.service systemd` writes."""
    from reeve_cli.service import render_repository_units

    expected = render_repository_units()

    assert {p.name: p.read_text() for p in committed_units()} == expected


@needs_analyze
def test_committed_units_verify_with_a_real_executable(tmp_path):
    unit_dir = tmp_path / "committed"
    unit_dir.mkdir()
    for path in committed_units():
        text = path.read_text().replace("%h/.local/bin/reeve", reeve_bin())
        (unit_dir / path.name).write_text(text)

    done = verify(unit_dir, "user", tmp_path)

    assert done.stderr == ""
    assert done.returncode == 0


# sd_notify against a real AF_UNIX datagram socket ---------------------------


@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    """A datagram socket standing in for systemd's; NOTIFY_SOCKET points at it."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(10)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def test_sd_notify_sends_each_state_as_one_datagram(notify_socket):
    from reeve_cli.systemd import sd_notify

    assert sd_notify("READY=1\nSTATUS=3 pending") is True
    assert sd_notify("WATCHDOG=1") is True

    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=3 pending"
    assert notify_socket.recv(4096) == b"WATCHDOG=1"


def test_sd_notify_reaches_an_abstract_socket(monkeypatch):
    from reeve_cli.systemd import sd_notify

    name = f"reeve-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)

        assert sd_notify("STOPPING=1") is True
        assert sock.recv(4096) == b"STOPPING=1"


def test_sd_notify_is_a_no_op_outside_systemd(monkeypatch):
    from reeve_cli.systemd import sd_notify

    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)

    assert sd_notify("READY=1") is False


def test_sd_notify_survives_a_vanished_socket(tmp_path, monkeypatch):
    from reeve_cli.systemd import sd_notify

    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))

    assert sd_notify("READY=1") is False


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        pytest.param("60000000", None, 30.0, id="half-of-watchdogsec"),
        pytest.param("60000000", "self", 30.0, id="for-this-pid"),
        pytest.param("60000000", "other", None, id="for-another-pid"),
        pytest.param(None, None, None, id="no-watchdog"),
        pytest.param("junk", None, None, id="unreadable"),
    ],
)
def test_watchdog_interval(monkeypatch, usec, pid, expected):
    from reeve_cli.systemd import watchdog_interval

    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            value = {"self": str(os.getpid()), "other": "1"}.get(value, value)
            monkeypatch.setenv(name, value)

    assert watchdog_interval() == expected


def _daemon_available():
    return (ROOT / "tests" / "daemon_helpers.py").exists()


@pytest.mark.skipif(not _daemon_available(), reason="reeve daemon not built yet")
def test_real_daemon_speaks_sd_notify(notify_socket):
    """A real `reeve daemon` says READY, STATUS, WATCHDOG and, on SIGTERM, STOPPING."""
    from tests.daemon_helpers import start_daemon

    daemon = start_daemon({"WATCHDOG_USEC": "1000000"})  # a ping every 0.5 s
    messages = []
    try:
        while sum(m == "WATCHDOG=1" for m in messages) < 2:
            messages.append(notify_socket.recv(4096).decode())
        code = daemon.stop()
        while "STOPPING=1" not in messages[-1]:
            messages.append(notify_socket.recv(4096).decode())
    finally:
        daemon.kill()

    states = [line for m in messages for line in m.split("\n")]
    assert "READY=1" in states
    assert any(s.startswith("STATUS=") for s in states)
    assert states.index("READY=1") < states.index("WATCHDOG=1")
    assert "STOPPING=1" in states
    assert code == 0, daemon.log()
