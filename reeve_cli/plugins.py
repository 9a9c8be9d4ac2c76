"""The plugin manager: built-in plugins, entry-point plugins, and their registries.

Plugins are found through the entry-point group `reeve`, loaded once and lazily
(the first time Reeve needs an executor or notifier), and registered on one
`PluginManager("reeve")` next to the built-in plugins. A plugin that fails to
load, or fails inside a hook, is a warning shown by `reeve plugins list`; it
never takes the caller down.

Built-in plugins are modules of reeve_cli listed in `BUILTIN_MODULES` (each
implements hooks with `reeve_cli.hookimpl`), plus the object that registers the
`command` executor.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pluggy

from reeve_cli import hookspecs
from reeve_cli.errors import PluginError

if TYPE_CHECKING:
    from reeve_cli.config import Settings
    from reeve_cli.executor import Executor, Notifier
    from reeve_cli.model import Attempt, Pulse

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "reeve"
BUILTIN_NAME = "reeve"
# Modules of reeve_cli that implement hooks, registered as built-in plugins. A
# listed module that does not exist is skipped. First-party plugins with extra
# dependencies live in plugins/ as packages instead (reeve-claude, reeve-telegram).
BUILTIN_MODULES: tuple[str, ...] = ()

hookimpl = pluggy.HookimplMarker("reeve")


class _BuiltinExecutors:
    """Registers the executors that live in reeve_cli itself."""

    @hookimpl
    def register_executors(self, register: Callable[[Executor], None]) -> None:
        from reeve_cli.executor import CommandExecutor

        register(CommandExecutor())


@dataclass
class PluginInfo:
    """What Reeve knows about one plugin, loaded or not."""

    name: str
    package: str | None = None
    version: str | None = None
    builtin: bool = False
    errors: list[str] = field(default_factory=list)
    executors: list[str] = field(default_factory=list)
    notifiers: list[str] = field(default_factory=list)


@dataclass
class Registry:
    """A plugin manager with its loaded plugins, executors and notifiers."""

    pm: pluggy.PluginManager
    infos: dict[str, PluginInfo] = field(default_factory=dict)
    entry_points_loaded: bool = False
    _executors: dict[str, Executor] | None = None
    _notifiers: dict[str, Notifier] | None = None

    def register(
        self, plugin: object, name: str, info: PluginInfo | None = None
    ) -> None:
        """Register a plugin object under `name`; a failure is recorded, not raised."""
        info = info or self.infos.get(name) or PluginInfo(name=name)
        self.infos[name] = info
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:
            self._fail(info, f"cannot be registered: {exc}")
        self._executors = self._notifiers = None

    def load_entry_points(self) -> None:
        """Import every entry point of the group `reeve` once and register it."""
        if self.entry_points_loaded:
            return
        self.entry_points_loaded = True
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            info = PluginInfo(
                name=ep.name,
                package=dist.name if dist else None,
                version=dist.version if dist else None,
            )
            if self.pm.has_plugin(ep.name) or ep.name in self.infos:
                self._fail(info, f"name clashes with plugin '{ep.name}'; not loaded")
                self.infos[f"{ep.name} ({info.package})"] = info
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                self.infos[ep.name] = info
                self._fail(info, f"cannot be loaded: {type(exc).__name__}: {exc}")
                continue
            self.register(plugin, ep.name, info)
        self.check_pending()

    def check_pending(self) -> None:
        """Record hook implementations that match no hookspec (e.g. misspelled)."""
        for name, caller in self.pm.hook.__dict__.items():
            if name.startswith("_") or caller.spec is not None:
                continue
            for impl in caller.get_hookimpls():
                if impl.hookwrapper or impl.optionalhook:
                    continue
                info = self.infos.setdefault(
                    impl.plugin_name, PluginInfo(name=impl.plugin_name)
                )
                self._fail(info, f"implements unknown hook '{name}'")

    def _fail(self, info: PluginInfo, message: str) -> None:
        info.errors.append(message)
        logger.warning("Plugin '%s' %s", info.name, message)

    def _collect(self, hook_name: str, kind: str) -> dict[str, Any]:
        found: dict[str, Any] = {}
        owners: dict[str, str] = {}
        caller = getattr(self.pm.hook, hook_name)
        # Oldest registration first, so built-ins win a name clash.
        for impl in caller.get_hookimpls():
            info = self.infos.setdefault(
                impl.plugin_name, PluginInfo(name=impl.plugin_name)
            )

            def register(obj: Any, _info: PluginInfo = info) -> None:
                name = getattr(obj, "name", None)
                if not isinstance(name, str) or not name:
                    self._fail(_info, f"registered a {kind} without a name")
                elif name in found:
                    self._fail(
                        _info,
                        f"{kind} '{name}' clashes with plugin '{owners[name]}'; "
                        "ignored",
                    )
                else:
                    found[name] = obj
                    owners[name] = _info.name
                    getattr(_info, kind + "s").append(name)

            try:
                impl.function(register=register)
            except Exception as exc:
                logger.exception(
                    "Plugin '%s' failed in %s", impl.plugin_name, hook_name
                )
                self._fail(info, f"failed in {hook_name}: {type(exc).__name__}: {exc}")
        return found

    def executors(self) -> dict[str, Executor]:
        with _lock:
            if self._executors is None:
                for info in self.infos.values():
                    info.executors.clear()
                self._executors = self._collect("register_executors", "executor")
            return self._executors

    def notifiers(self) -> dict[str, Notifier]:
        with _lock:
            if self._notifiers is None:
                for info in self.infos.values():
                    info.notifiers.clear()
                self._notifiers = self._collect("register_notifiers", "notifier")
            return self._notifiers


def new_registry(load_entry_points: bool = True) -> Registry:
    """Build a fresh plugin manager with the built-in plugins (and entry points)."""
    pm = pluggy.PluginManager("reeve")
    pm.add_hookspecs(hookspecs)
    registry = Registry(pm)
    from reeve_cli import __version__

    registry.register(
        _BuiltinExecutors(),
        BUILTIN_NAME,
        PluginInfo(BUILTIN_NAME, "reeve", __version__, builtin=True),
    )
    for module_name in BUILTIN_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            registry.infos[module_name] = info = PluginInfo(module_name, builtin=True)
            registry._fail(info, f"cannot be loaded: {exc}")
            continue
        except Exception as exc:
            registry.infos[module_name] = info = PluginInfo(module_name, builtin=True)
            registry._fail(info, f"cannot be loaded: {type(exc).__name__}: {exc}")
            continue
        registry.register(module, module_name, PluginInfo(module_name, builtin=True))
    if load_entry_points:
        registry.load_entry_points()
    else:
        registry.check_pending()
    return registry


_registry: Registry | None = None
# The daemon asks for notifiers from worker threads; load plugins only once.
_lock = threading.RLock()


def registry(load_entry_points: bool = True) -> Registry:
    """Return the process-wide registry, loading entry points on first need."""
    global _registry
    with _lock:
        if _registry is None:
            _registry = new_registry(load_entry_points)
        elif load_entry_points and not _registry.entry_points_loaded:
            _registry.load_entry_points()
            _registry._executors = _registry._notifiers = None
        return _registry


def reset() -> None:
    """Forget the process-wide registry; the next call builds a new one (tests)."""
    global _registry
    _registry = None


def plugin_manager(load_entry_points: bool = True) -> pluggy.PluginManager:
    """Return the process-wide `PluginManager("reeve")`, built once."""
    return registry(load_entry_points).pm


def executors() -> dict[str, Executor]:
    """Return every registered executor by name."""
    return registry().executors()


def get_executor(name: str) -> Executor:
    """Return the executor called `name`.

    Raises:
        PluginError: no plugin registers an executor of that name.
    """
    found = executors()
    try:
        return found[name]
    except KeyError:
        known = ", ".join(sorted(found)) or "none"
        raise PluginError(
            f"Unknown executor '{name}'; known executors: {known} "
            "(see 'reeve plugins list')"
        ) from None


def notifiers() -> dict[str, Notifier]:
    """Return every registered notifier by name."""
    return registry().notifiers()


def get_notifier(settings: Settings) -> Notifier | None:
    """Return the notifier to use: `settings.notifier`, else the first configured.

    Raises:
        PluginError: `settings.notifier` names a notifier no plugin registers.
    """
    found = notifiers()
    wanted = settings.notifier
    if wanted:
        if wanted not in found:
            known = ", ".join(sorted(found)) or "none"
            raise PluginError(
                f"Unknown notifier '{wanted}'; known notifiers: {known} "
                "(see 'reeve plugins list')"
            )
        return found[wanted]
    for notifier in found.values():
        try:
            if notifier.is_configured(settings):
                return notifier
        except Exception:
            logger.exception("Notifier '%s' failed in is_configured", notifier.name)
    return None


def attempt_finished(pulse: Pulse, attempt: Attempt) -> None:
    """Call every `on_attempt_finished` hook; a failing plugin is logged, not raised."""
    for impl in _impls("on_attempt_finished"):
        try:
            impl.function(pulse=pulse, attempt=attempt)
        except Exception:
            logger.exception(
                "Plugin '%s' failed in on_attempt_finished", impl.plugin_name
            )


def _impls(hook_name: str) -> Iterator[Any]:
    yield from getattr(plugin_manager().hook, hook_name).get_hookimpls()


def list_plugins() -> list[dict[str, Any]]:
    """Describe every plugin for `reeve plugins list --json`, failed ones included."""
    reg = registry()
    reg.executors()
    reg.notifiers()
    rows = []
    for name, info in reg.infos.items():
        plugin = reg.pm.get_plugin(name)
        hooks = (
            sorted(caller.name for caller in reg.pm.get_hookcallers(plugin) or [])
            if plugin is not None
            else []
        )
        rows.append(
            {
                "name": name,
                "package": info.package,
                "version": info.version,
                "builtin": info.builtin,
                "hooks": hooks,
                "executors": list(info.executors),
                "notifiers": list(info.notifiers),
                "errors": list(info.errors),
            }
        )
    return rows
