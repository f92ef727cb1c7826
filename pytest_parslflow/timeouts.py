"""The marker's ``timeout``: enforced by pytest-timeout, whether or not pytest loaded it.

Where pytest-timeout is an active plugin the test gets a ``pytest.mark.timeout``, as if
the user had written it. Where it is installed but not loaded (plugin autoloading off, or
``-p no:timeout``) its timer is set around the test from here, and no ``timeout`` mark is
added (``--strict-markers`` would reject it). Where it is not installed at all, a test
that sets ``timeout`` errors in its setup saying so: the limit is never silently dropped.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Generator
from types import ModuleType

import pytest

from pytest_parslflow.lifecycle import item_settings
from pytest_parslflow.settings import MARKER, SettingsError

#: the marker's timeout of a test that the fallback enforces, in ``item.stash``
TIMEOUT = pytest.StashKey[float]()
_FALLBACK = "parslflow-timeout"


def _timeout_module() -> ModuleType | None:
    """pytest-timeout's module, or ``None`` where it is not installed."""
    try:
        return importlib.import_module("pytest_timeout")
    except ImportError:
        return None


def timeout_plugin_active(config: pytest.Config) -> bool:
    """Whether pytest-timeout runs as a plugin of this session."""
    module = sys.modules.get("pytest_timeout")
    return module is not None and config.pluginmanager.is_registered(module)


def apply_timeouts(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give each marked test with a ``timeout`` its pytest-timeout limit."""
    active: bool | None = None
    fallback = False
    for item in items:
        if item.get_closest_marker(MARKER) is None:
            continue
        try:
            timeout = item_settings(item).timeout
        except SettingsError:
            continue  # reported at the test's setup
        if timeout is None:
            continue
        if active is None:
            active = timeout_plugin_active(config)
        if active:
            item.add_marker(pytest.mark.timeout(timeout))
        else:
            item.stash[TIMEOUT] = timeout
            fallback = True
    if fallback and not config.pluginmanager.has_plugin(_FALLBACK):
        config.pluginmanager.register(TimeoutFallback(), _FALLBACK)


class TimeoutFallback:
    """Sets pytest-timeout's own timer around a test where pytest-timeout is not loaded:
    the same failure (``Timeout >Ns`` with every thread's stack) as when it is."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        timeout = item.stash.get(TIMEOUT, None)
        if timeout is None or _timeout_module() is not None:
            return
        pytest.fail(
            f"{item.nodeid}: parsl marker argument timeout={timeout:g} needs pytest-timeout, "
            f"which is not installed; `pip install pytest-timeout`, or remove timeout=",
            pytrace=False,
        )

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, object, object]:
        timeout = item.stash.get(TIMEOUT, None)
        module = _timeout_module() if timeout is not None else None
        if module is None:
            return (yield)
        values = {"timeout": timeout, "method": module.DEFAULT_METHOD}
        settings = module.Settings(*(values.get(name, False) for name in module.Settings._fields))
        module.pytest_timeout_set_timer(item=item, settings=settings)
        try:
            return (yield)
        finally:
            module.pytest_timeout_cancel_timer(item=item)
