"""The tests that opted in: their hooks, registered only when a collected test opted in
(so a suite without such tests runs no wrapper of the plugin's per test): cleanup and
the leak guard after each, its failure report, the keep policy and the session figures.
"""

from __future__ import annotations

import sys
from collections.abc import Generator

import pytest

from pytest_parslflow.lifecycle import (
    LEAK_GUARD,
    MANAGED,
    PHASE_FAILED,
    REMOVER,
    REPORT,
    TEST_RUN,
    cleanup_dfk,
    keep_run_dir,
    shared_run_bases,
)
from pytest_parslflow.options import options_of
from pytest_parslflow.ownership import loaded_dfk, started_by, warn
from pytest_parslflow.report.ci import ParslCITests

#: the names of the managed tests' hooks and of the CI integrations in the plugin manager
MANAGED_TESTS = "parslflow-managed"
CI = "parslflow-ci"


def request_dfk_first(item: pytest.Item) -> None:
    """A marked test gets its DFK without asking: ``parsl_dfk`` joins the test's fixtures,
    set up before its first function-scoped one (as a plugin's autouse fixture would be,
    without an autouse fixture's cost to every other test)."""
    names: list[str] = getattr(item, "fixturenames", [])
    if "parsl_dfk" in names:
        return
    definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    position = len(names)
    for index, name in enumerate(names):
        defs = definitions.get(name)
        if defs and defs[-1].scope == "function":
            position = index
            break
    # a copy: parametrized items of one function share the list
    item.fixturenames = [*names[:position], "parsl_dfk", *names[position:]]  # type: ignore[attr-defined]


def register_managed_tests(config: pytest.Config) -> None:
    """The hooks of tests that opt in (the plugin's and its CI integrations'), once."""
    manager = config.pluginmanager
    if manager.has_plugin(MANAGED_TESTS):
        return
    manager.register(ManagedTests(), MANAGED_TESTS)
    ci = manager.get_plugin(CI)
    if ci is not None:
        manager.register(ParslCITests(ci), f"{CI}-tests")


class ManagedTests:
    """The hooks for tests that opted in; registered only when a collected test did, so
    that a suite without them pays for no hook wrapper per test."""

    @staticmethod
    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(
        fixturedef: pytest.FixtureDef[object], request: pytest.FixtureRequest
    ) -> Generator[None, object, object]:
        """Leak guard (issue 12): what a fixture of broader scope starts while a test that
        opted in is set up (a suite's session fixture calling parsl.load()) is not the
        test's to leak."""
        if fixturedef.scope == "function" or "pytest_parslflow.leaks" not in sys.modules:
            return (yield)
        from pytest_parslflow.leaks import broader_setup

        with broader_setup():
            return (yield)

    @staticmethod
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
        """After a test that opted in: no DFK it started stays loaded, and what Parsl left
        running is named and ended (``--parslflow-leaks``)."""
        yield
        if not item.stash.get(MANAGED, False):
            return
        mode = options_of(item.config).leaks
        message = _managed_leaks(item, mode)
        if not message:
            return
        if mode == "fail":
            pytest.fail(message, pytrace=False)
        warn(item, message)

    @staticmethod
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """The failure report of a test that opted in; after teardown, ``--parslflow-keep``
        and the figures for the session summary."""
        report = yield
        if item.stash.get(MANAGED, False):
            _report_managed(item, call, report)
        return report


def _managed_leaks(item: pytest.Item, mode: str) -> str:
    """What a test that opted in left behind, cleaned up and ended; the leak message."""
    leaks: list[str] = []
    leaked = loaded_dfk()
    run = item.stash.get(TEST_RUN, None)
    if leaked is not None and started_by(item, leaked):
        error = cleanup_dfk(leaked)
        leaks.append(
            f"a loaded DataFlowKernel (run dir {leaked.run_dir}), now cleaned up"
            + (f" (its cleanup raised {error!r})" if error else "")
        )
        if run is not None:
            run.restore_set_aside()
    # --- leak guard (issue 12): the test's processes are ended whatever the mode ---
    guard = item.stash.get(LEAK_GUARD, None)
    if guard is not None:
        from pytest_parslflow.leaks import check

        del item.stash[LEAK_GUARD]
        findings = check(guard, with_threads=not shared_run_bases(item.config))
        leaks += findings.leaks
        if mode != "off":
            for warning in findings.warnings:
                warn(item, f"{item.nodeid}: {warning}")
    # --- end leak guard ---
    if not leaks or mode == "off":
        return ""
    return (
        f"{item.nodeid} leaked Parsl resources: " + "; ".join(leaks) + ". A test's tasks "
        "should end with it: wait for their futures, give long apps a walltime, clean up "
        "what it loads itself (parsl.dfk().cleanup()); a thread cannot be stopped, "
        "processes were ended"
    )


def _report_managed(
    item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport
) -> None:
    failed = report.failed or (report.skipped and hasattr(report, "wasxfail"))
    if failed:
        item.stash[PHASE_FAILED] = True
    run = item.stash.get(TEST_RUN, None)
    if run is None:
        return
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
