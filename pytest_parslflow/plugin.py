"""pytest-parslflow's pytest hooks and wiring; the work lives in the modules named for it.

Loaded as ``pytest -p parslflow`` (entry point ``parslflow`` in group ``pytest11``).
Nothing here imports Parsl: that happens when a test first needs it.
"""

from __future__ import annotations

import os
import sys

import pytest

from pytest_parslflow import hookspecs
from pytest_parslflow.fixtures import (
    _parslflow_config,
    parsl_config,
    parsl_dfk,
    parsl_faults,
    parsl_monitoring,
    parsl_restart,
    parsl_run_dir,
    parsl_tasks,
)
from pytest_parslflow.lifecycle import (
    LEAK_GUARD,
    MANAGED,
    PARSL_FIXTURES,
    PHASE_FAILED,
    REMOVER,
    REPORT,
    TEST_RUN,
    RunDirRemover,
    item_settings,
    opted_in,
    quiet_parsl_in_captured_logs,
)
from pytest_parslflow.managed import CI, register_managed_tests, request_dfk_first
from pytest_parslflow.observer import observer, start_observing
from pytest_parslflow.options import OPTIONS, add_options, options_of, read_options
from pytest_parslflow.ownership import (
    DFLOW,
    LOADED_AT_SETUP,
    SUMMARY,
    Owner,
    loaded_dfk,
    note,
)
from pytest_parslflow.report.ci import ParslCI
from pytest_parslflow.report.summary import SessionSummary
from pytest_parslflow.settings import (
    EXECUTOR_PARAM,
    MARKER,
    MARKER_HELP,
    SettingsError,
    marked_executors,
)

#: the switch of the HTEX warm start (``htex.warm``)
WARM_START_SWITCH = "PARSLFLOW_WARM_START"

__all__ = [
    "_parslflow_config",
    "parsl_config",
    "parsl_dfk",
    "parsl_faults",
    "parsl_monitoring",
    "parsl_restart",
    "parsl_run_dir",
    "parsl_tasks",
]


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    config.stash[OPTIONS] = read_options(config)
    if WARM_START_SWITCH in os.environ:  # the HTEX warm start's module loads when needed
        from pytest_parslflow.htex.warm import check_warm_start_switch

        check_warm_start_switch()
    config.pluginmanager.register(SessionSummary(), SUMMARY)
    config.pluginmanager.register(ParslCI(config), CI)


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    quiet_parsl_in_captured_logs(session.config)
    session.config.stash[REMOVER] = RunDirRemover()


def pytest_keyboard_interrupt() -> None:
    """Ctrl-C, or SIGTERM/SIGHUP turned into it: Parsl's processes end first, before
    the fixtures' teardown (which then has nothing to wait for)."""
    if "pytest_parslflow.leaks" in sys.modules:
        from pytest_parslflow.leaks import end_session

        end_session()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Whatever the checks allowed (``--parslflow-leaks off``), no Parsl process of this
    session outlives it, nor does its HTEX warm parent."""
    if "pytest_parslflow.leaks" in sys.modules:
        from pytest_parslflow.interrupts import restore_handlers
        from pytest_parslflow.leaks import end_session

        end_session()
        restore_handlers()
    warm = sys.modules.get("pytest_parslflow.htex.warm")
    if warm is not None:
        warm.stop_warm_parent()  # the HTEX warm parent, if one runs
    if REMOVER in session.config.stash:
        session.config.stash[REMOVER].flush()


@pytest.hookimpl(trylast=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The executor matrix: a list of executors runs the test once per executor."""
    marks = list(metafunc.definition.iter_markers(MARKER))
    if not marks and PARSL_FIXTURES.isdisjoint(metafunc.fixturenames):
        return
    executors = marked_executors(marks, options_of(metafunc.config).executors)
    if len(executors) > 1:
        metafunc.fixturenames.append(EXECUTOR_PARAM)
        metafunc.parametrize(EXECUTOR_PARAM, executors, ids=executors)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Which tests opted in, once; the marker's ``timeout`` is enforced by pytest-timeout,
    loaded or not (``timeouts``)."""
    managed = []
    for item in items:
        if opted_in(item):
            item.stash[MANAGED] = True
            managed.append(item)
        else:
            item.stash[MANAGED] = False
    if managed:
        from pytest_parslflow.timeouts import apply_timeouts

        apply_timeouts(config, managed)


def pytest_collection_finish(session: pytest.Session) -> None:
    managed = any(item.stash.get(MANAGED, False) for item in session.items)
    if managed:
        register_managed_tests(session.config)
    if managed or DFLOW in sys.modules:
        start_observing(session.config)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Every marker argument is checked before the test runs: an error for this test alone.
    A test that did not opt in is not looked at until Parsl is imported, and then only
    observed (``observer``)."""
    managed = item.stash.get(MANAGED, None)
    if managed is None:  # an item that skipped collection's hooks
        managed = item.stash[MANAGED] = opted_in(item)
        if managed:
            register_managed_tests(item.config)
    if not managed:
        if DFLOW in sys.modules and observer(item.config) is None:
            start_observing(item.config).test_begins(item)
        return
    # A rerun (pytest-rerunfailures) runs the same item again: a new attempt, a new run.
    if TEST_RUN in item.stash:
        del item.stash[TEST_RUN]
    item.stash[PHASE_FAILED] = False
    item.stash[REPORT] = ""
    item.stash[LOADED_AT_SETUP] = loaded_dfk()
    # --- leak guard (issue 12): what Parsl starts from here on is this test's ---
    from pytest_parslflow import origins
    from pytest_parslflow.interrupts import install_handlers
    from pytest_parslflow.leaks import start

    origins.set_tmp_root(item.config._tmp_path_factory.getbasetemp())  # type: ignore[attr-defined]
    install_handlers()
    item.stash[LEAK_GUARD] = start(item.nodeid)
    # --- end leak guard ---
    try:
        item_settings(item)
    except SettingsError as exc:
        message = str(exc)
    else:
        if item.get_closest_marker(MARKER) is not None:
            request_dfk_first(item)
        return
    pytest.fail(message, pytrace=False)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """After the test's finalizers: if Parsl was first imported in the body of a test that
    did not opt in, the observer starts, and what the test loaded is its own."""
    if DFLOW not in sys.modules or observer(item.config) is not None:
        return
    start_observing(item.config)
    dfk = loaded_dfk()
    if dfk is not None and not item.stash.get(MANAGED, False):
        note(dfk, Owner("function", item.nodeid, "the test body"))
