"""pytest-parslflow's pytest hooks and wiring; the work lives in the modules named for it.

Loaded as ``pytest -p parslflow`` (entry point ``parslflow`` in group ``pytest11``).
Nothing here imports Parsl: that happens when a test first needs it.
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from typing import TYPE_CHECKING

import pytest

from pytest_parslflow import hookspecs
from pytest_parslflow.fixtures import (
    _parsl_marked,
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
    LEAK_BASELINE,
    LOADED_AT_SETUP,
    MANAGED,
    OBSERVED,
    PARSL_FIXTURES,
    PHASE_FAILED,
    REMOVER,
    REPORT,
    TEST_RUN,
    RunDirRemover,
    cleanup_dfk,
    item_settings,
    keep_run_dir,
    mark_session,
    opted_in,
    quiet_parsl_in_captured_logs,
    shared_run_bases,
)
from pytest_parslflow.options import OPTIONS, add_options, options_of, read_options
from pytest_parslflow.ownership import (
    DFLOW,
    OUTSIDE_TESTS,
    SUMMARY,
    Owner,
    fixture_owner,
    loaded_dfk,
    note,
    note_if_loaded,
    owner_of,
    owners_ended,
    warn,
)
from pytest_parslflow.report.summary import SessionSummary
from pytest_parslflow.settings import (
    EXECUTOR_PARAM,
    MARKER,
    MARKER_HELP,
    SettingsError,
    marked_executors,
)

if TYPE_CHECKING:
    from parsl.dataflow.dflow import DataFlowKernel

__all__ = [
    "_parsl_marked",
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
    mark_session()
    config.pluginmanager.register(SessionSummary(), SUMMARY)


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    quiet_parsl_in_captured_logs(session.config)
    session.config.stash[REMOVER] = RunDirRemover()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Whatever the checks allowed (``--parslflow-leaks off``), no Parsl process of this
    session outlives it."""
    if "parsl" in sys.modules:
        from pytest_parslflow.leaks import end_session_processes

        end_session_processes()
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


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[object], request: pytest.FixtureRequest
) -> Generator[None, object, object]:
    """A DFK loaded by a fixture (``setup_module``/``setup_class`` are fixtures too)
    belongs to the fixture's scope."""
    before = loaded_dfk()
    try:
        return (yield)
    finally:
        if DFLOW in sys.modules:
            note_if_loaded(before, fixture_owner(fixturedef, request))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Every marker argument is checked before the test runs: an error for this test alone.
    A test that did not opt in is only observed: at most, the loaded DFK's task count."""
    # A rerun (pytest-rerunfailures) runs the same item again: a new attempt, a new run.
    if TEST_RUN in item.stash:
        del item.stash[TEST_RUN]
    item.stash[PHASE_FAILED] = False
    item.stash[REPORT] = ""
    managed = item.stash[MANAGED] = opted_in(item)
    dfk = loaded_dfk()
    if dfk is not None and owner_of(dfk) is None:
        note(dfk, OUTSIDE_TESTS)
    if not managed:
        if dfk is not None:
            from pytest_parslflow.report.observed import ObservedWindow

            item.stash[OBSERVED] = ObservedWindow.start(dfk)
        return
    item.stash[LOADED_AT_SETUP] = dfk
    if DFLOW in sys.modules:
        # Parsl processes of earlier tests were ended after them: the baseline needs no
        # process scan unless module- or session-scoped DFKs run, whose processes it spares
        from pytest_parslflow.leaks import snapshot

        shared = bool(shared_run_bases(item.config))
        item.stash[LEAK_BASELINE] = snapshot(with_processes=shared)
    try:
        item_settings(item)
    except SettingsError as exc:
        message = str(exc)
    else:
        return
    pytest.fail(message, pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """A DFK loaded in the test's body belongs to the test."""
    before = loaded_dfk()
    try:
        return (yield)
    finally:
        if DFLOW in sys.modules:
            note_if_loaded(before, Owner("function", item.nodeid, "the test body"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, None, None]:
    """After a test that opted in: no DFK it started stays loaded, and what Parsl left
    running is named and ended (``--parslflow-leaks``). After any other test: a DFK its
    body left loaded is a warning, and nothing is touched. Then the DFKs of owners whose
    scope just ended (their finalizers ran) are checked, with a warning at most."""
    yield
    if DFLOW not in sys.modules:
        return
    mode = options_of(item.config).leaks
    message = ""
    if item.stash.get(MANAGED, False):
        message = _managed_leaks(item, mode)
    elif mode != "off":
        _observed_leftover(item)
    if mode != "off":
        for dfk, owner in owners_ended(nextitem):
            problem = "is still running" if not dfk.cleanup_called else "is still loaded"
            if dfk.cleanup_called and loaded_dfk() is not dfk:
                continue
            warn(
                item,
                f"the DataFlowKernel started by {owner.describe()} (run dir {dfk.run_dir}) "
                f"{problem} after its scope ended: call dfk.cleanup() in its teardown",
            )
    if not message:
        return
    if mode == "fail":
        pytest.fail(message, pytrace=False)
    warn(item, message)


def _managed_leaks(item: pytest.Item, mode: str) -> str:
    """What a test that opted in left behind, cleaned up and ended; the leak message."""
    leaks: list[str] = []
    leaked = loaded_dfk()
    run = item.stash.get(TEST_RUN, None)
    if leaked is not None and _started_by_test(item, leaked):
        error = cleanup_dfk(leaked)
        leaks.append(
            f"a loaded DataFlowKernel (run dir {leaked.run_dir}), now cleaned up"
            + (f" (its cleanup raised {error!r})" if error else "")
        )
        if run is not None:
            run.restore_set_aside()
    before = item.stash.get(LEAK_BASELINE, None)
    if mode != "off" and before is not None:
        starts_processes = leaked is not None or run is None or run.starts_processes()
        from pytest_parslflow.leaks import find_and_end_leaks

        shared = shared_run_bases(item.config)
        leaks += find_and_end_leaks(before, starts_processes, shared)
    if not leaks or mode == "off":
        return ""
    return (
        f"{item.nodeid} leaked Parsl resources: " + "; ".join(leaks) + ". Clean up in the "
        "test what it starts itself (parsl.dfk().cleanup(), wait for its tasks)"
    )


def _started_by_test(item: pytest.Item, dfk: DataFlowKernel) -> bool:
    """Whether the test (its body or function-scoped fixtures) started ``dfk``: what a
    broader owner started is left alone while that owner lives."""
    owner = owner_of(dfk)
    if owner is None:
        return dfk is not item.stash.get(LOADED_AT_SETUP, None)
    return owner.scope == "function" and owner.nodeid == item.nodeid


def _observed_leftover(item: pytest.Item) -> None:
    """A test that did not opt in and left a DFK of its own loaded: a warning, no more."""
    dfk = loaded_dfk()
    if dfk is None or not _started_by_test(item, dfk):
        return
    owner = owner_of(dfk)
    by = owner.what if owner is not None else "the test"
    state = "cleaned up but still loaded" if dfk.cleanup_called else "still loaded and running"
    warn(
        item,
        f"{item.nodeid}: the DataFlowKernel loaded by {by} (run dir {dfk.run_dir}) is {state} "
        f"after the test; later tests will find it loaded. Call parsl.dfk().cleanup() (and "
        f"parsl.clear()) at the test's end, or use @pytest.mark.parsl, which does it for you",
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """The failure report of a Parsl test; after teardown, ``--parslflow-keep`` and the figures
    for the session summary."""
    report = yield
    failed = report.failed or (report.skipped and hasattr(report, "wasxfail"))
    if failed:
        item.stash[PHASE_FAILED] = True
    run = item.stash.get(TEST_RUN, None)
    if run is None:
        if report.failed and DFLOW in sys.modules and not item.stash.get(REPORT, "x"):
            _observed_report(item, report)
        return report
    options = options_of(item.config)
    from pytest_parslflow.report.failure import SECTION, failure_report, summary_data

    text = item.stash.get(REPORT, "")
    if report.failed and not text:
        text = failure_report(item, run, options.log_lines, options.keep)
        if call.excinfo is not None and _loaded_twice(call.excinfo.value):
            text = LOADED_TWICE + text
        item.stash[REPORT] = text
        report.sections.append((SECTION, text))
    if failed and run.shared is not None:
        run.shared.failed = True  # its run directory is kept, per --parslflow-keep
    if report.when == "teardown":
        # JUnit XML writes captured output from the teardown report
        if text and (SECTION, text) not in report.sections:
            report.sections.append((SECTION, text))
        if run.shared is not None:  # removed or kept when the shared DFK closes
            keep = keep_run_dir(options.keep, run.shared.failed)
        else:
            keep = keep_run_dir(options.keep, item.stash.get(PHASE_FAILED, False))
            if not keep:
                item.config.stash[REMOVER].remove(run.base)
        report.parslflow = summary_data(run, run.base if keep else None)  # type: ignore[attr-defined]
        # the test is over: its DFKs and task records need not live as long as the session
        del item.stash[TEST_RUN]
    return report


#: the note on a failure report where the test's own parsl.load() found the marker's DFK
LOADED_TWICE = (
    "note: the parsl marker loaded this test's DataFlowKernel before the test ran, so the "
    "test's own parsl.load() found one loaded. Drop that parsl.load() and use the loaded "
    "DFK (parsl.dfk(), the parsl_dfk fixture); to give the marker your Config, override the "
    "parsl_config fixture in a conftest or implement pytest_parslflow_make_config; or run "
    "the test without the plugin (-p no:parslflow)\n"
)


def _loaded_twice(exc: BaseException) -> bool:
    """Whether ``exc`` is Parsl refusing a second ``parsl.load()``."""
    return type(exc).__name__ == "ConfigurationError" and "already been loaded" in str(exc)


def _observed_report(item: pytest.Item, report: pytest.TestReport) -> None:
    """A failed test that did not opt in, while a DFK is loaded: the tasks it submitted,
    read from that run's logs; the DFK itself is not touched."""
    dfk = loaded_dfk()
    if dfk is None:
        return
    from pytest_parslflow.report.failure import SECTION
    from pytest_parslflow.report.observed import ObservedWindow, observed_report

    window = item.stash.get(OBSERVED, None)
    if window is None or window.dfk is not dfk:
        window = ObservedWindow.whole(dfk)  # loaded during this test: all of it is the test's
    text = observed_report(window, options_of(item.config).log_lines)
    item.stash[REPORT] = text
    if text:
        report.sections.append((SECTION, text))
