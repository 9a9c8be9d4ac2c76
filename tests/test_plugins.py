"""Plugin discovery, isolation of plugin failures, and `reeve plugins list`."""

import json
import logging
import sys
import textwrap

import pytest

from reeve_cli import hookimpl, plugins
from reeve_cli.errors import PluginError
from reeve_cli.model import Priority
from tests.executor_helpers import make_pulse

GOOD_PLUGIN = """
from reeve_cli import hookimpl

class Fake:
    name = "fake"
    description = "does nothing"

    async def run(self, request, on_start):
        raise NotImplementedError

class Memo:
    name = "memo"
    def is_configured(self, settings):
        return True
    def send(self, settings, message, priority):
        pass

@hookimpl
def register_executors(register):
    register(Fake())

@hookimpl
def register_notifiers(register):
    register(Memo())
"""

BROKEN_PLUGIN = "raise ImportError('needs the frobnicate package')\n"


def install_fake_dist(site, module, dist, version, ep_name, source):
    """Write a module and its .dist-info, as pip would, into `site`."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n"
    )
    (info / "entry_points.txt").write_text(f"[reeve]\n{ep_name} = {module}\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A site directory on sys.path holding a good and a broken plugin."""
    path = tmp_path / "site"
    path.mkdir()
    install_fake_dist(
        path, "reeve_fakeplug", "reeve-fakeplug", "1.2", "fakeplug", GOOD_PLUGIN
    )
    install_fake_dist(
        path, "reeve_broken", "reeve-broken", "0.1", "broken", BROKEN_PLUGIN
    )
    monkeypatch.syspath_prepend(str(path))
    yield path
    for name in ("reeve_fakeplug", "reeve_broken"):
        sys.modules.pop(name, None)


@pytest.fixture
def registry(monkeypatch):
    """A fresh registry without entry points, used as the process-wide one."""
    reg = plugins.new_registry(load_entry_points=False)
    reg.entry_points_loaded = True
    monkeypatch.setattr(plugins, "_registry", reg)
    return reg


@pytest.fixture(autouse=True)
def _fresh_registry():
    plugins.reset()
    yield
    plugins.reset()


class Named:
    def __init__(self, name, configured=True):
        self.name = name
        self.description = name
        self.configured = configured
        self.sent = []

    def is_configured(self, settings):
        if self.configured is None:
            raise RuntimeError("cannot tell")
        return self.configured

    def send(self, settings, message, priority):
        self.sent.append(message)


def plugin_with(**hooks):
    """Build a plugin object whose methods are the given hook functions."""
    namespace = {name: staticmethod(hookimpl(fn)) for name, fn in hooks.items()}
    return type("Plugin", (), namespace)()


def test_builtin_command_executor_needs_no_entry_points():
    reg = plugins.new_registry(load_entry_points=False)

    assert list(reg.executors()) == ["command"]
    assert reg.entry_points_loaded is False


def test_entry_point_plugin_is_discovered_from_its_distribution(site):
    reg = plugins.new_registry()

    rows = {row["name"]: row for row in _rows(reg)}
    assert "fake" in reg.executors()
    assert "memo" in reg.notifiers()
    assert rows["fakeplug"] == {
        "name": "fakeplug",
        "package": "reeve-fakeplug",
        "version": "1.2",
        "builtin": False,
        "hooks": ["register_executors", "register_notifiers"],
        "executors": ["fake"],
        "notifiers": ["memo"],
        "errors": [],
    }


def test_first_party_claude_plugin_is_an_entry_point():
    reg = plugins.new_registry()

    rows = {row["name"]: row for row in _rows(reg)}
    assert rows["claude"]["package"] == "reeve-claude"
    assert rows["claude"]["executors"] == ["claude", "hapi"]
    assert rows["reeve"]["builtin"] is True


def test_broken_plugin_is_a_warning_and_others_still_load(site, caplog):
    with caplog.at_level(logging.WARNING, logger="reeve_cli.plugins"):
        reg = plugins.new_registry()

    rows = {row["name"]: row for row in _rows(reg)}
    assert rows["broken"]["errors"] == [
        "cannot be loaded: ImportError: needs the frobnicate package"
    ]
    assert rows["broken"]["hooks"] == []
    assert {"fake", "command", "claude"} <= set(reg.executors())
    assert "Plugin 'broken' cannot be loaded" in caplog.text


def test_plugin_failing_in_register_hook_does_not_stop_others(registry):
    def register_executors(register):
        raise RuntimeError("boom")

    registry.register(plugin_with(register_executors=register_executors), "bad")

    assert list(plugins.executors()) == ["command"]
    [row] = [r for r in plugins.list_plugins() if r["name"] == "bad"]
    assert row["errors"] == ["failed in register_executors: RuntimeError: boom"]


def test_misspelled_hook_is_reported_by_check_pending(registry):
    def register_executor(register):
        pass

    registry.register(plugin_with(register_executor=register_executor), "typo")
    registry.check_pending()

    [row] = [r for r in plugins.list_plugins() if r["name"] == "typo"]
    assert row["errors"] == ["implements unknown hook 'register_executor'"]


def test_executor_name_clash_keeps_the_first_registered(registry):
    registry.register(
        plugin_with(register_executors=lambda register: register(Named("command"))),
        "copycat",
    )

    found = plugins.executors()

    assert type(found["command"]).__name__ == "CommandExecutor"
    [row] = [r for r in plugins.list_plugins() if r["name"] == "copycat"]
    assert row["errors"] == ["executor 'command' clashes with plugin 'reeve'; ignored"]


def test_get_executor_names_the_known_ones(registry):
    with pytest.raises(PluginError) as info:
        plugins.get_executor("clod")

    assert info.value.message == (
        "Unknown executor 'clod'; known executors: command (see 'reeve plugins list')"
    )


def test_get_notifier_picks_the_first_configured(registry, settings):
    quiet, loud = Named("quiet", configured=False), Named("loud")
    broken = Named("broken", configured=None)
    registry.register(
        plugin_with(
            register_notifiers=lambda register: [
                register(n) for n in (quiet, broken, loud)
            ]
        ),
        "notes",
    )

    assert plugins.get_notifier(settings) is loud


def test_get_notifier_without_any_configured_is_none(registry, settings):
    assert plugins.get_notifier(settings) is None


def test_get_notifier_rejects_unknown_setting(registry, monkeypatch):
    from reeve_cli.config import load_settings

    monkeypatch.setenv("REEVE_NOTIFIER", "pigeon")

    with pytest.raises(PluginError) as info:
        plugins.get_notifier(load_settings())

    assert info.value.message == (
        "Unknown notifier 'pigeon'; known notifiers: none (see 'reeve plugins list')"
    )


def test_attempt_finished_hook_failure_is_logged_and_others_run(registry, caplog):
    seen = []

    def failing(pulse, attempt):
        raise RuntimeError("nope")

    def recording(pulse, attempt):
        seen.append((pulse.id, attempt))

    registry.register(plugin_with(on_attempt_finished=failing), "failing")
    registry.register(plugin_with(on_attempt_finished=recording), "recording")

    with caplog.at_level(logging.ERROR, logger="reeve_cli.plugins"):
        plugins.attempt_finished(make_pulse(), "attempt")

    assert seen == [(42, "attempt")]
    assert "Plugin 'failing' failed in on_attempt_finished" in caplog.text


def test_plugins_list_json_in_a_real_process(site, run_reeve):
    result = run_reeve("plugins", "list", "--json", env={"PYTHONPATH": str(site)})

    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert {"reeve", "claude", "fakeplug", "broken"} <= set(rows)
    assert rows["claude"]["executors"] == ["claude", "hapi"]
    assert rows["fakeplug"]["version"] == "1.2"
    assert rows["broken"]["errors"] == [
        "cannot be loaded: ImportError: needs the frobnicate package"
    ]


def test_plugins_list_for_people_warns_about_failed_plugins(site, cli):
    result = cli("plugins", "list")

    assert result.exit_code == 0
    assert "reeve-claude" in result.stdout
    assert "executor fake" in result.stdout
    assert (
        "Warning: plugin 'broken' cannot be loaded: ImportError: needs the "
        "frobnicate package"
    ) in result.stderr


def test_every_hookspec_is_documented():
    from pathlib import Path

    from reeve_cli import hookspecs

    text = (Path(__file__).parent.parent / "docs" / "plugins.md").read_text()
    names = [n for n in vars(hookspecs) if n.startswith(("register_", "on_"))]

    assert names == ["register_executors", "register_notifiers", "on_attempt_finished"]
    for name in names:
        assert f"### {name}" in text


def test_notifier_protocol_matches_a_plugin_object():
    from reeve_cli.executor import Notifier

    assert isinstance(Named("x"), Notifier)
    assert Priority.NORMAL.value == "normal"


def _rows(reg):
    reg.executors()
    reg.notifiers()
    old, plugins._registry = plugins._registry, reg
    try:
        return plugins.list_plugins()
    finally:
        plugins._registry = old


def _docs_example():
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "plugins.md").read_text()
    start = text.index('"""Reeve plugin: the \'shout\' executor')
    return text[start : text.index("```", start)]


async def test_docs_example_plugin_runs(tmp_path, monkeypatch, registry, settings):
    """The example plugin in docs/plugins.md works as printed."""
    from tests.executor_helpers import make_request

    settings.data_path.mkdir(parents=True)
    (tmp_path / "reeve_shout.py").write_text(_docs_example())
    monkeypatch.syspath_prepend(str(tmp_path))
    import reeve_shout

    try:
        registry.register(reeve_shout, "shout")
        request = make_request(tmp_path, "hello there", settings=settings)
        started = []

        result = await plugins.get_executor("shout").run(request, started.append)
        plugins.get_notifier(settings).send(settings, "hi", Priority.HIGH)
    finally:
        sys.modules.pop("reeve_shout", None)

    assert result.ok is True
    assert result.result_text == "HELLO THERE"
    assert len(started) == 1
    assert (settings.data_path / "notifications.txt").read_text() == "[high] hi\n"
