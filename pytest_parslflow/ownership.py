"""Who a DataFlowKernel belongs to: the test that loaded it, or a broader owner.

A DFK belongs to whoever started it: the test (its body and its function-scoped
fixtures), or a class-, module-, package- or session-scoped fixture (pytest runs
``setup_module``/``setup_class`` as such fixtures), or a session hook
(``pytest_configure``, ``pytest_sessionstart``): a DFK already loaded when the
first test starts. The plugin cleans up only what a test that opted in started
itself; what a broader owner started is left alone while that owner lives, and
is looked at, with a warning at most, once the owner's scope has ended.

Loads are noticed where they happen (a fixture's setup, a test's call) by
comparing the loaded DFK before and after: Parsl is never patched for it, and
nothing is looked at before Parsl is imported. The lifecycle and the leak guard
both read this registry.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from parsl.dataflow.dflow import DataFlowKernel

#: pytest's scopes, narrowest first
SCOPES = ("function", "class", "module", "package", "session")


@dataclass(frozen=True)
class Owner:
    """Who started a DFK: ``scope`` is pytest's scope name; ``nodeid`` the node whose
    scope it is (a test, a class, a module, a package; ``""`` for the session);
    ``what`` names the starter for a person (``fixture 'context'``, ``the test body``)."""

    scope: str
    nodeid: str
    what: str

    @property
    def broader(self) -> bool:
        """Whether the owner outlives a single test."""
        return self.scope != "function"

    def describe(self) -> str:
        where = f" of {self.nodeid}" if self.nodeid else ""
        return f"{self.what}{where} ({self.scope} scope)"


#: a DFK found loaded at a test's start that no fixture or test loaded: a session hook
#: (``pytest_configure``, ``pytest_sessionstart``) or a conftest's module-level code
OUTSIDE_TESTS = Owner("session", "", "code outside any test (a session hook or a conftest)")

#: the module holding Parsl's loaded DFK; imported with ``parsl``
DFLOW = "parsl.dataflow.dflow"


class ParslflowWarning(pytest.PytestWarning):
    """What pytest-parslflow found and left alone (a DFK left loaded by a test that did
    not opt in, or by a broader owner after its scope ended)."""


#: the DFK loaded when a managed test's setup began (not the test's to clean up)
LOADED_AT_SETUP = pytest.StashKey["DataFlowKernel | None"]()

_OWNERS: weakref.WeakKeyDictionary[DataFlowKernel, Owner] = weakref.WeakKeyDictionary()
#: DFKs of broader owners, until their scope ends and they are checked
_PENDING: weakref.WeakKeyDictionary[DataFlowKernel, Owner] = weakref.WeakKeyDictionary()


def loaded_dfk() -> DataFlowKernel | None:
    """The currently loaded DFK, without importing Parsl where nothing imported it."""
    dflow = sys.modules.get(DFLOW)
    if dflow is None:
        return None
    dfk: DataFlowKernel | None = dflow.DataFlowKernelLoader._dfk
    return dfk


def note(dfk: DataFlowKernel, owner: Owner, checked: bool = True) -> None:
    """``owner`` started ``dfk`` (the first owner noted wins: a DFK is started once).
    A broader owner's DFK is looked at when its scope ends, unless not ``checked``
    (a DFK the plugin itself shares, and closes, with ``scope="module"``/``"session"``)."""
    if dfk in _OWNERS:
        return
    _OWNERS[dfk] = owner
    if checked and owner.broader and owner is not OUTSIDE_TESTS:
        _PENDING[dfk] = owner


def owner_of(dfk: DataFlowKernel) -> Owner | None:
    return _OWNERS.get(dfk)


def note_if_loaded(
    before: DataFlowKernel | None, owner: Callable[[], Owner]
) -> DataFlowKernel | None:
    """After code that may have called ``parsl.load()``: the DFK it loaded, noted as the
    ``owner()``'s, or ``None`` where the loaded DFK did not change."""
    after = loaded_dfk()
    if after is None or after is before:
        return None
    note(after, owner())
    return after


def fixture_owner(fixturedef: pytest.FixtureDef[object], request: pytest.FixtureRequest) -> Owner:
    """The owner of what a fixture starts: its scope and the node that scope belongs to."""
    scope = fixturedef.scope
    name = fixturedef.argname
    # pytest runs setup_module/setup_class/setup_method as fixtures named after them
    what = (
        f"{name.split('_fixture_')[0].lstrip('_').replace('xunit_setup_', 'setup_')}()"
        if name.startswith("_xunit_setup_")
        else f"fixture {name!r}"
    )
    return Owner(scope, _scope_nodeid(request.node, scope), what)


def _scope_nodeid(node: pytest.Item | pytest.Collector, scope: str) -> str:
    """The node id of the node that ``scope`` belongs to, seen from ``node``."""
    kinds: dict[str, type] = {
        "class": pytest.Class,
        "module": pytest.Module,
        "package": pytest.Package,
    }
    if scope == "session":
        return ""
    if scope == "function":
        return node.nodeid
    kind = kinds.get(scope)
    found = node.getparent(kind) if kind is not None else None
    return found.nodeid if found is not None else node.nodeid


def scope_ended(owner: Owner, nextitem: pytest.Item | None) -> bool:
    """Whether a broader ``owner``'s scope ends before ``nextitem`` (after the current
    test's teardown, which runs the finalizers of every scope that ends with it)."""
    if nextitem is None:
        return True
    if owner.scope == "session":
        return False
    return not any(node.nodeid == owner.nodeid for node in nextitem.listchain())


def owners_ended(nextitem: pytest.Item | None) -> list[tuple[DataFlowKernel, Owner]]:
    """The DFKs of broader owners whose scope ends before ``nextitem``, each once."""
    if not _PENDING:
        return []
    ended = [(dfk, owner) for dfk, owner in _PENDING.items() if scope_ended(owner, nextitem)]
    for dfk, _ in ended:
        del _PENDING[dfk]
    return ended


#: the name of the session summary's plugin object, which lists warnings that could
#: not be issued
SUMMARY = "parslflow-summary"


def warn(item: pytest.Item, message: str) -> None:
    """A warning about ``item`` that never fails it, even where warnings are errors
    (``-W error``): then the session summary lists it instead."""
    try:
        item.warn(ParslflowWarning(message))
    except Warning:
        summary = item.config.pluginmanager.get_plugin(SUMMARY)
        if summary is not None:
            summary.notes.append(message)


def started_by(item: pytest.Item, dfk: DataFlowKernel) -> bool:
    """Whether the test (its body or its function-scoped fixtures) started ``dfk``."""
    owner = owner_of(dfk)
    if owner is None:  # loaded where nothing noticed: the test's unless loaded before it
        return dfk is not item.stash.get(LOADED_AT_SETUP, None)
    return owner.scope == "function" and owner.nodeid == item.nodeid
