"""pytest-parslflow's pytest hooks and wiring; the work lives in the modules named for it.

Loaded as ``pytest -p parslflow`` (entry point ``parslflow`` in group ``pytest11``).
Nothing here imports Parsl: that happens when a test first needs it.
"""

from __future__ import annotations

import sys
from collections.abc import Generator

import pytest

from pytest_parslflow import hookspecs
from pytest_parslflow.fixtures import (
    _parsl_marked,
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
    PARSL_FIXTURES,
    PHASE_FAILED,
    REMOVER,
    REPORT,
    TEST_RUN,
    RunDirRemover,
    cleanup_dfk,
    item_settings,
    keep_run_dir,
    loaded_dfk,
    quiet_parsl_in_captured_logs,
    shared_run_bases,
    uses_parsl,
)
from pytest_parslflow.options import OPTIONS, add_options, options_of, read_options
from pytest_parslflow.report.summary import SessionSummary
from pytest_parslflow.settings import (
    EXECUTOR_PARAM,
    MARKER,
    MARKER_HELP,
    SettingsError,
    marked_executors,
)

__all__ = [
    "_parsl_marked",
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
    config.pluginmanager.register(SessionSummary(), "parslflow-summary")


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
    session outlives it."""
    if "pytest_parslflow.leaks" in sys.modules:
        from pytest_parslflow.interrupts import restore_handlers
        from pytest_parslflow.leaks import end_session

        end_session()
        restore_handlers()
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


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Every marker argument is checked before the test runs: an error for this test alone."""
    # A rerun (pytest-rerunfailures) runs the same item again: a new attempt, a new run.
    if TEST_RUN in item.stash:
        del item.stash[TEST_RUN]
    item.stash[PHASE_FAILED] = False
    item.stash[REPORT] = ""
    if not uses_parsl(item):
        return
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
        return
    pytest.fail(message, pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    """After every test, marked or not: no DataFlowKernel stays loaded, and what Parsl
    left running is named and ended (``--parslflow-leaks``)."""
    yield
    if "parsl" not in sys.modules:
        return
    leaks: list[str] = []
    leaked = loaded_dfk()
    if leaked is not None:
        error = cleanup_dfk(leaked)
        leaks.append(
            f"a loaded DataFlowKernel (run dir {leaked.run_dir}), now cleaned up"
            + (f" (its cleanup raised {error!r})" if error else "")
        )
    mode = options_of(item.config).leaks
    # --- leak guard (issue 12): a test that opted in; its processes are ended always ---
    guard = item.stash.get(LEAK_GUARD, None)
    hint = (
        "Use the parsl marker, or clean up in the test (parsl.dfk().cleanup(), wait for its tasks)"
    )
    if guard is not None:
        from pytest_parslflow.leaks import check

        del item.stash[LEAK_GUARD]
        findings = check(guard, with_threads=not shared_run_bases(item.config))
        leaks += findings.leaks
        for warning in findings.warnings:
            item.warn(pytest.PytestWarning(f"{item.nodeid}: {warning}"))
        hint = (
            "A test's tasks should end with it: wait for their futures, or give long apps "
            "a walltime (a thread cannot be stopped; processes were ended)"
        )
    # --- end leak guard ---
    if not leaks or mode == "off":
        return
    message = f"{item.nodeid} leaked Parsl resources: " + "; ".join(leaks) + ". " + hint
    if mode == "fail":
        pytest.fail(message, pytrace=False)
    item.warn(pytest.PytestWarning(message))


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
        return report
    options = options_of(item.config)
    from pytest_parslflow.report.failure import SECTION, failure_report, summary_data

    text = item.stash.get(REPORT, "")
    if report.failed and not text:
        text = item.stash[REPORT] = failure_report(item, run, options.log_lines, options.keep)
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
