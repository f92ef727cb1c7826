"""pytest-parslflow's pytest hooks and wiring; the work lives in the modules named for it.

Loaded as ``pytest -p parslflow`` (entry point ``parslflow`` in group ``pytest11``).
Nothing here imports Parsl: that happens when a test first needs it.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from pytest_parslflow import hookspecs
from pytest_parslflow.fixtures import _parsl_marked, parsl_config, parsl_dfk, parsl_run_dir
from pytest_parslflow.lifecycle import (
    PHASE_FAILED,
    TEST_RUN,
    cleanup_dfk,
    item_settings,
    keep_run_dir,
    loaded_dfk,
    quiet_parsl_in_captured_logs,
    remove_run_base,
    uses_parsl,
)
from pytest_parslflow.options import OPTIONS, add_options, options_of, read_options
from pytest_parslflow.settings import (
    EXECUTOR_PARAM,
    MARKER,
    MARKER_HELP,
    SettingsError,
    marked_executors,
)

__all__ = ["_parsl_marked", "parsl_config", "parsl_dfk", "parsl_run_dir"]


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    config.stash[OPTIONS] = read_options(config)


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    quiet_parsl_in_captured_logs(session.config)


@pytest.hookimpl(trylast=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The executor matrix: a list of executors runs the test once per executor."""
    marks = list(metafunc.definition.iter_markers(MARKER))
    if not marks and {"parsl_dfk", "parsl_config"}.isdisjoint(metafunc.fixturenames):
        return
    executors = marked_executors(marks, options_of(metafunc.config).executors)
    if len(executors) > 1:
        metafunc.fixturenames.append(EXECUTOR_PARAM)
        metafunc.parametrize(EXECUTOR_PARAM, executors, ids=executors)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The marker's ``timeout`` is enforced by pytest-timeout."""
    for item in items:
        if item.get_closest_marker(MARKER) is None:
            continue
        try:
            timeout = item_settings(item).timeout
        except SettingsError:
            continue  # reported at the test's setup
        if timeout is not None:
            item.add_marker(pytest.mark.timeout(timeout))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Every marker argument is checked before the test runs: an error for this test alone."""
    # A rerun (pytest-rerunfailures) runs the same item again: a new attempt, a new run.
    for key in (TEST_RUN, PHASE_FAILED):
        if key in item.stash:
            del item.stash[key]
    if not uses_parsl(item):
        return
    try:
        item_settings(item)
    except SettingsError as exc:
        message = str(exc)
    else:
        return
    pytest.fail(message, pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    """After every test, marked or not, no DataFlowKernel stays loaded."""
    yield
    leaked = loaded_dfk()
    if leaked is None:
        return
    cleanup_dfk(leaked)
    leaks = options_of(item.config).leaks
    message = (
        f"{item.nodeid} left a DataFlowKernel loaded (run dir {leaked.run_dir}); "
        f"pytest-parslflow cleaned it up. Use the parsl marker, or call "
        f"parsl.dfk().cleanup() in the test"
    )
    if leaks == "fail":
        pytest.fail(message, pytrace=False)
    if leaks == "warn":
        item.warn(pytest.PytestWarning(message))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Record failures per phase; after teardown apply ``--parsl-keep`` to the run directory."""
    report = yield
    if report.failed or (report.skipped and hasattr(report, "wasxfail")):
        item.stash[PHASE_FAILED] = True
    if report.when == "teardown":
        run = item.stash.get(TEST_RUN, None)
        if run is not None:
            failed = item.stash.get(PHASE_FAILED, False)
            if not keep_run_dir(options_of(item.config).keep, failed):
                remove_run_base(run.base)
    return report
