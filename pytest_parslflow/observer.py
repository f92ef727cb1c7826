"""Observing a session's Parsl use once Parsl is imported: who loads each DataFlowKernel,
DFKs left loaded, and reports for failed tests that did not opt in.

Registered as a plugin object only when Parsl is first seen in ``sys.modules`` (or a
test opts in), so a suite that never imports Parsl pays nothing per test. It never
cleans up, clears or unloads a DFK, and never ends a process: it notes, warns and
reports. What the plugin manages (tests that opted in) is in ``plugin.py``.
"""

from __future__ import annotations

import functools
from collections.abc import Generator

import pytest

from pytest_parslflow.lifecycle import MANAGED, OBSERVED, REPORT
from pytest_parslflow.options import options_of
from pytest_parslflow.ownership import (
    OUTSIDE_TESTS,
    Owner,
    fixture_owner,
    loaded_dfk,
    note,
    note_if_loaded,
    owner_of,
    owners_ended,
    started_by,
    warn,
)

#: the observer's name in the plugin manager
NAME = "parslflow-observer"


def observer(config: pytest.Config) -> ParslObserver | None:
    """The session's observer, if Parsl was seen."""
    found: ParslObserver | None = config.pluginmanager.get_plugin(NAME)
    return found


def start_observing(config: pytest.Config) -> ParslObserver:
    """Register the observer (once)."""
    found = observer(config)
    if found is None:
        found = ParslObserver()
        config.pluginmanager.register(found, NAME)
    return found


class ParslObserver:
    """A plugin object: notes who loads each DFK, warns about DFKs left loaded, and
    gives a failed test that did not opt in the tasks it submitted to the loaded DFK."""

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef[object], request: pytest.FixtureRequest
    ) -> Generator[None, object, object]:
        """A DFK loaded by a fixture (``setup_module``/``setup_class`` are fixtures too)
        belongs to the fixture's scope."""
        before = loaded_dfk()
        try:
            return (yield)
        finally:
            note_if_loaded(before, functools.partial(fixture_owner, fixturedef, request))

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        self.test_begins(item)

    def test_begins(self, item: pytest.Item) -> None:
        """A DFK loaded outside any test belongs to the session; for a test that did not
        opt in, where the loaded DFK stands (for its report, should it fail)."""
        item.stash[REPORT] = ""
        dfk = loaded_dfk()
        if dfk is None:
            return
        if owner_of(dfk) is None:
            note(dfk, OUTSIDE_TESTS)
        if not item.stash.get(MANAGED, False):
            from pytest_parslflow.report.observed import ObservedWindow

            item.stash[OBSERVED] = ObservedWindow.start(dfk)

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_teardown(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        """After the test's finalizers (``trylast``: after pytest's own teardown): a DFK
        loaded during the test that no fixture loaded was loaded by its body, and is the
        test's; left loaded by a test that did not opt in, it is a warning (a managed
        test's are cleaned up, in ``managed.py``). Then the DFKs of owners whose scope
        just ended are checked, with a warning at most."""
        dfk = loaded_dfk()
        if dfk is not None and owner_of(dfk) is None:
            note(dfk, Owner("function", item.nodeid, "the test body"))
        if options_of(item.config).leaks != "off":
            if not item.stash.get(MANAGED, False):
                self.left_loaded(item)
            self.scope_ended(item, nextitem)

    def left_loaded(self, item: pytest.Item) -> None:
        """A test that did not opt in and left a DFK of its own loaded: a warning."""
        dfk = loaded_dfk()
        if dfk is None or not started_by(item, dfk):
            return
        owner = owner_of(dfk)
        by = owner.what if owner is not None else "the test"
        state = "cleaned up but still loaded" if dfk.cleanup_called else "still loaded and running"
        warn(
            item,
            f"{item.nodeid}: the DataFlowKernel loaded by {by} (run dir {dfk.run_dir}) is "
            f"{state} after the test; later tests will find it loaded. Call "
            f"parsl.dfk().cleanup() (and parsl.clear()) at the test's end, or use "
            f"@pytest.mark.parsl, which does it for you",
        )

    def scope_ended(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        for dfk, owner in owners_ended(nextitem):
            if dfk.cleanup_called and loaded_dfk() is not dfk:
                continue
            problem = "is still loaded" if dfk.cleanup_called else "is still running"
            warn(
                item,
                f"the DataFlowKernel started by {owner.describe()} (run dir {dfk.run_dir}) "
                f"{problem} after its scope ended: call dfk.cleanup() in its teardown",
            )

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """A failed test that did not opt in, while a DFK is loaded: the tasks it
        submitted, read from that run's logs; the DFK itself is not touched."""
        report = yield
        if item.stash.get(MANAGED, False):
            return report
        text = item.stash.get(REPORT, "")
        if text and report.when == "teardown":
            from pytest_parslflow.report.failure import SECTION

            # JUnit XML writes captured output from the teardown report
            if (SECTION, text) not in report.sections:
                report.sections.append((SECTION, text))
        if not report.failed or text:
            return report
        dfk = loaded_dfk()
        if dfk is None:
            return report
        from pytest_parslflow.report.failure import SECTION
        from pytest_parslflow.report.observed import ObservedWindow, observed_report

        window = item.stash.get(OBSERVED, None)
        if window is None or window.dfk is not dfk:
            window = ObservedWindow.whole(dfk)  # loaded during the test: all of it is its
        text = item.stash[REPORT] = observed_report(window, options_of(item.config).log_lines)
        if text:
            report.sections.append((SECTION, text))
        return report
