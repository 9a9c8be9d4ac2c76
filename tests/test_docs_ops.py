"""Every command in the operations docs runs, and shows what the docs say.

Each ```console block is a shell session: `$ ` lines are commands, the lines
under them what they print. A page's commands run in order in a fresh HOME, so
the defaults (~/.local/share/reeve, ~/.config/reeve) point into tmp_path.
`reeve daemon` starts a real daemon in the background; systemctl and loginctl
lines are checked against what `reeve install-service` prints and installs.
Error lines (`Error: ...`, with `…` for the parts that differ) must match stderr
exactly; other shown lines must appear in the output.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, ZONE, reeve_bin

DOCS = ROOT / "docs"
PAGES = [
    "index.md",
    "getting-started.md",
    "deployment.md",
    "troubleshooting.md",
    "architecture.md",
]
UNITS = {
    "reeve-daemon.service",
    "reeve-telegram.service",
    "reeve-backup.service",
    "reeve-backup.timer",
}
SYSTEMCTL_VERBS = {
    "daemon-reload",
    "enable",
    "start",
    "stop",
    "restart",
    "status",
    "list-timers",
}
# Commands whose documented exit codes include more than success.
EXIT_CODES = {"reeve status": {0, 3}}
SHELL_TOOLS = {"echo", "chmod", "ls", "cp"}


def console_blocks(text):
    """Yield each console block as a list of (command, shown lines)."""
    block = None
    for raw in text.splitlines():
        line = raw.strip()
        if block is None:
            if line == "```console":
                block = []
            continue
        if line == "```":
            yield block
            block = None
        elif line.startswith("$ "):
            block.append((line[2:], []))
        elif block:
            block[-1][1].append(line)


def pattern(shown):
    """A shown line as a regex: `…` stands for anything."""
    return re.compile(".*".join(re.escape(part) for part in shown.split("…")))


class Session:
    """One page's shell: a private HOME, PATH with this venv, maybe a daemon."""

    def __init__(self, tmp_path):
        self.home = tmp_path / "home"
        self.work = tmp_path / "work"
        self.home.mkdir()
        self.work.mkdir()
        agent = tmp_path / "agent"
        agent.write_text(
            f"#!{sys.executable}\nimport sys\n"
            "print('agent 1.0') if '--version' in sys.argv else sys.stdin.read()\n"
        )
        agent.chmod(0o755)
        env = {k: v for k, v in os.environ.items() if not k.startswith("REEVE_")}
        env.pop("XDG_CONFIG_HOME", None)
        env.pop("XDG_DATA_HOME", None)
        env.update(
            HOME=str(self.home),
            USER=getpass.getuser(),
            PATH=f"{Path(reeve_bin()).parent}:{env.get('PATH', '')}",
            REEVE_TIMEZONE=ZONE,
            REEVE_API_PORT="0",
            REEVE_EXECUTOR="command",
            REEVE_AGENT_COMMAND=str(agent),
            REEVE_STOP_GRACE="5",
        )
        self.env = env
        self.daemon = None
        self.unit_dir = tmp_path / "system-units"

    def run(self, command, timeout=60):
        return subprocess.run(
            ["bash", "-c", command],
            cwd=self.work,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start_daemon(self):
        data = self.home / ".local/share/reeve"
        data.mkdir(parents=True, exist_ok=True)
        log = open(self.work.parent / "daemon.log", "wb")  # noqa: SIM115
        self.daemon = subprocess.Popen(
            [reeve_bin(), "daemon"], env=self.env, stdout=log, stderr=log
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                info = json.loads((data / "daemon.json").read_text())
            except (OSError, ValueError):
                info = {}
            if info.get("pid") == self.daemon.pid:
                return
            assert self.daemon.poll() is None, "the daemon exited at start"
            time.sleep(0.05)
        raise AssertionError("the daemon was not ready within 30 s")

    def close(self):
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.terminate()
            try:
                self.daemon.wait(30)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()

    def installed_commands(self, mode):
        done = self.run(f"reeve install-service --{mode} --dry-run")
        assert done.returncode == 0, done.stderr
        return done.stdout.split("# Then run:\n", 1)[1].splitlines()

    def check_systemctl(self, command):
        words = shlex.split(command)
        mode = "user" if "--user" in words else "system"
        rest = [w for w in words[1:] if w not in ("--user", "--now")]
        verb, units = rest[0], rest[1:]
        assert verb in SYSTEMCTL_VERBS, command
        assert all(u in UNITS or f"{u}.service" in UNITS for u in units), command
        if verb in ("daemon-reload", "enable"):
            assert command in self.installed_commands(mode), command

    def execute(self, command, shown):
        """Run or check one documented command; return a failure text or None."""
        if command.startswith("sudo "):
            command = command[len("sudo ") :]
        first = shlex.split(command)[0]

        if first == "systemctl":
            self.check_systemctl(command)
            return None
        if first == "loginctl":
            expanded = command.replace("$USER", getpass.getuser())
            assert expanded in self.installed_commands("user"), command
            return None
        if command == "reeve daemon" and self.daemon is None:
            self.start_daemon()
            return None
        if first == "journalctl":
            command += " --no-pager"
        elif "install-service" in command and "--system" in command:
            if "--dry-run" not in command and "--unit-dir" not in command:
                command += f" --unit-dir {self.unit_dir}"
        elif first == "cp" and command.endswith(" /etc/systemd/system/"):
            # Never the real /etc: the same copy into a directory of the test.
            self.unit_dir.mkdir(exist_ok=True)
            command = command.replace(" /etc/systemd/system/", f" {self.unit_dir}/")
        runnable = first in ("reeve", "journalctl", *SHELL_TOOLS)
        if not (runnable or re.match(r"REEVE_\w+=", first)):
            return f"the doc check cannot run: {command}"

        done = self.run(command)
        errors = [line for line in shown if line.startswith("Error:")]
        if errors:
            if done.returncode == 0 or not pattern(errors[0]).fullmatch(
                done.stderr.rstrip("\n")
            ):
                return f"{command}: expected {errors[0]!r}, got {done.stderr!r}"
            return None
        allowed = EXIT_CODES.get(command, {0})
        if done.returncode not in allowed:
            return f"{command}: exit {done.returncode}: {done.stderr.strip()}"
        output = (done.stdout + done.stderr).splitlines()
        for line in shown:
            if not any(pattern(line).fullmatch(out.strip()) for out in output):
                return f"{command}: {line!r} not in its output {output!r}"
        return None


@pytest.mark.parametrize("page", PAGES)
def test_every_console_command_runs_as_shown(page, tmp_path):
    blocks = list(console_blocks((DOCS / page).read_text()))
    session = Session(tmp_path)
    problems = []
    try:
        for block in blocks:
            for command, shown in block:
                problem = session.execute(command, shown)
                if problem:
                    problems.append(problem)
    finally:
        session.close()

    assert problems == []


def sections(text):
    """Yield (heading code text, section body) for each `### `...`` section."""
    parts = re.split(r"^### `(.+?)`.*$", text, flags=re.M)
    for index in range(1, len(parts), 2):
        yield parts[index], parts[index + 1]


def source_text():
    """Every string in the code, adjacent literals joined as Python joins them."""
    files = [*(ROOT / "reeve_cli").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")]
    text = "\n".join(p.read_text() for p in files)
    return re.sub(r"\"\s+f?\"", "", text)


def test_troubleshooting_headings_are_real_messages():
    """Each heading matches a reproduced line, or its fixed parts are in the code."""
    text = (DOCS / "troubleshooting.md").read_text()
    source = source_text()
    missing = []

    for heading, body in sections(text):
        shown = [
            line
            for block in console_blocks(body)
            for _, lines in block
            for line in lines
        ]
        if shown:
            # A heading may stop early, before the long list of accepted forms.
            if not any(pattern(heading).match(line) for line in shown):
                missing.append(heading)
            continue
        message = heading.removeprefix("Error: ")
        fragments = [f for f in message.split("…") if len(f.strip()) >= 4]
        if not all(fragment in source for fragment in fragments):
            missing.append(heading)

    assert len(list(sections(text))) >= 20
    assert missing == []


def test_console_parser_reads_commands_and_output():
    text = "```console\n$ reeve a\nout\n$ reeve b\n```\n  ```console\n  $ x\n  ```\n"

    assert list(console_blocks(text)) == [
        [("reeve a", ["out"]), ("reeve b", [])],
        [("x", [])],
    ]
