"""A test's Parsl lifecycle: its run directory, loading its DataFlowKernel and cleaning up.

Parsl is imported here only inside functions.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import re
import shutil
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_parslflow.options import options_of
from pytest_parslflow.ownership import loaded_dfk
from pytest_parslflow.settings import (
    EXECUTOR_PARAM,
    MARKER,
    ParslSettings,
    SettingsError,
    build_settings,
)

if TYPE_CHECKING:
    from parsl.config import Config
    from parsl.dataflow.dflow import DataFlowKernel

    from pytest_parslflow.leaks import Guard
    from pytest_parslflow.origins import Owner
    from pytest_parslflow.report.observed import ObservedWindow
    from pytest_parslflow.shared import SharedRun, SharedRuns
    from pytest_parslflow.tasks import ParslTask, TaskWindow


@dataclass
class ParslTestRun:
    """What the plugin knows of one test's Parsl use."""

    settings: ParslSettings
    base: Path
    dfks: list[DataFlowKernel] = field(default_factory=list)
    windows: list[TaskWindow] = field(default_factory=list)
    #: the Config the plugin made for the test, whether it is the built-in one, and how to
    #: make another for a restart (``None`` where a conftest's fixture gave just one)
    made: Config | None = None
    builtin: bool = False
    fresh_config: Callable[[], tuple[Config, bool]] | None = None
    #: the module- or session-scoped DFK this test uses, if any
    shared: SharedRun | None = None
    #: the test's node id (the monitoring database's workflow name)
    name: str = ""
    #: the DFK that was loaded when the test loaded its own (a suite's, started by a
    #: broader owner): set aside, never cleaned up, and the loaded one again after the test
    set_aside: DataFlowKernel | None = None

    @property
    def run_dir(self) -> Path:
        """The test's ``parsl_run_dir``: the base that holds ``000/``, ``001/``, ..."""
        return self.base / "runinfo"

    @property
    def dfk(self) -> DataFlowKernel | None:
        return self.dfks[-1] if self.dfks else None

    def load(self, config: Config) -> DataFlowKernel:
        from pytest_parslflow.tasks import TaskRecorder, TaskWindow

        if config.monitoring is not None and config.monitoring.workflow_name is None:
            # else Parsl names the workflow after the first non-Parsl file on the stack
            config.monitoring.workflow_name = self.name or None
        self.set_aside_loaded()
        dfk = load_dfk(config)
        self.dfks.append(dfk)
        self.windows.append(TaskWindow(TaskRecorder(dfk, run=len(self.dfks) - 1)))
        return dfk

    def starts_processes(self) -> bool:
        """Whether any of the test's DFKs has an executor beyond threads, or monitoring:
        then processes may have been started outside the process tree."""
        from parsl.executors.threads import ThreadPoolExecutor

        return any(
            dfk.monitoring is not None
            or any(not isinstance(e, ThreadPoolExecutor) for e in dfk.executors.values())
            for dfk in self.dfks
        )

    def tasks(self) -> list[ParslTask]:
        return [task for window in self.windows for task in window.snapshot()]

    def set_aside_loaded(self) -> None:
        """Make room for the test's own DFK: a DFK loaded by someone else (a suite's
        session fixture, ``setup_module``) stops being the loaded one, untouched."""
        other = loaded_dfk()
        if other is None or other in self.dfks:
            return
        from parsl.dataflow.dflow import DataFlowKernelLoader

        if self.set_aside is None:
            self.set_aside = other
        DataFlowKernelLoader.clear()

    def restore_set_aside(self) -> None:
        """The DFK set aside for the test is the loaded one again (if nothing is loaded
        and its owner has not cleaned it up meanwhile)."""
        other = self.set_aside
        if other is None or other.cleanup_called or loaded_dfk() is not None:
            return
        from parsl.dataflow.dflow import DataFlowKernelLoader

        DataFlowKernelLoader._dfk = other

    def close(self) -> None:
        """Clean up every DFK this run loaded (a shared DFK outlives the test), and load
        again what was set aside for it; the first error is raised after all are done."""
        if self.shared is not None:
            self.restore_set_aside()
            return
        errors = [error for dfk in self.dfks if (error := cleanup_dfk(dfk)) is not None]
        self.restore_set_aside()
        if errors:
            raise errors[0]


#: per-test record of what Parsl did, in ``item.stash``
TEST_RUN = pytest.StashKey[ParslTestRun]()
#: whether any phase of the test failed, for the keep policy
PHASE_FAILED = pytest.StashKey[bool]()
#: the session's module- and session-scoped DFKs (made on first use, see ``shared``)
SHARED_RUNS: pytest.StashKey[SharedRuns] = pytest.StashKey()


def shared_run_bases(config: pytest.Config) -> list[Path]:
    """The run directories of the module- and session-scoped DFKs running now (their
    threads and processes belong to no single test)."""
    runs = config.stash.get(SHARED_RUNS, None)
    return runs.alive_bases() if runs is not None else []


#: whether the test opted in (and so is managed), set at its setup
MANAGED = pytest.StashKey[bool]()
#: for a test that did not opt in, where the loaded DFK stood when it began
OBSERVED: pytest.StashKey[ObservedWindow] = pytest.StashKey()
#: the leak guard's note at the start of a test that opted in (its owner, threads)
LEAK_GUARD: pytest.StashKey[Guard] = pytest.StashKey()
#: the test's failure report, made at its first failing phase
REPORT = pytest.StashKey[str]()


def run_base_name(item: pytest.Item) -> str:
    """A folder name for a test, as pytest's ``tmp_path`` makes one, naming a rerun's attempt."""
    name = re.sub(r"[\W]", "_", item.name)[:30]
    attempt: int = getattr(item, "execution_count", 1)  # set by pytest-rerunfailures
    return f"{name}_attempt{attempt}_" if attempt > 1 else name


#: seconds a DFK's cleanup may take before the test moves on (its executors' processes
#: are then ended by the leak guard)
CLEANUP_GRACE = 15.0


def _do_not_wait_for_threads(dfk: DataFlowKernel) -> None:
    """A ThreadPoolExecutor's shutdown waits for every running app, which may never end;
    Python cannot stop a thread, so the cleanup does not wait and the leak guard names
    the thread instead."""
    from parsl.executors.threads import ThreadPoolExecutor

    for executor in dfk.executors.values():
        if isinstance(executor, ThreadPoolExecutor):
            executor.shutdown = functools.partial(  # type: ignore[method-assign]
                ThreadPoolExecutor.shutdown, executor, block=False
            )


_Handlers = list[tuple[logging.Logger, logging.Handler]]
#: each DFK the plugin loaded: the handlers of its ``parsl.log``, found at load (a test
#: may clean up its DFK itself, and current Parsl then detaches them, still open)
_LOG_FILES: weakref.WeakKeyDictionary[DataFlowKernel, _Handlers] = weakref.WeakKeyDictionary()


def load_dfk(config: Config, owner: Owner | None = None) -> DataFlowKernel:
    """``parsl.load(config)``, noting the DFK's ``parsl.log`` handlers for its cleanup.

    What the DFK starts belongs to ``owner`` (by default the test that opted in and runs
    now); a DFK that fails to start is stopped here, and the threads it could not stop
    are named in the error."""
    import parsl

    # leak guard (issue 12): provenance, daemon thread workers, a failed start stopped
    from pytest_parslflow.leaks import guarded_load

    dfk: DataFlowKernel = guarded_load(parsl.load, config, owner)
    _LOG_FILES[dfk] = _log_file_handlers(dfk)
    return dfk


def _log_file_handlers(dfk: DataFlowKernel) -> _Handlers:
    """The handlers writing ``dfk``'s own ``parsl.log``, with the loggers holding them."""
    path = os.path.abspath(os.path.join(dfk.run_dir, "parsl.log"))
    return [
        (logger, handler)
        for logger in (logging.getLogger("parsl"), logging.getLogger("concurrent.futures"))
        for handler in logger.handlers
        if isinstance(handler, logging.FileHandler) and handler.baseFilename == path
    ]


def _close_log_file(handlers: _Handlers) -> None:
    """Detach and close a DFK's ``parsl.log`` handler. Parsl's cleanup leaves it open
    (current Parsl detaches it without closing it, Parsl 2025.1 does not even detach it):
    one open file per test while the plugin keeps the DFK for its report, and on 2025.1
    every later test's lines written into every earlier test's ``parsl.log``."""
    for logger, handler in handlers:
        logger.removeHandler(handler)
        handler.close()


def cleanup_dfk(dfk: DataFlowKernel) -> BaseException | None:
    """Clean up ``dfk`` (once, within ``CLEANUP_GRACE`` seconds), close its ``parsl.log``
    and make sure it is no longer the loaded DFK. Returns what went wrong, if anything."""
    from parsl.dataflow.dflow import DataFlowKernelLoader

    errors: list[BaseException] = []
    log_file = _LOG_FILES.pop(dfk, None) or _log_file_handlers(dfk)
    if not dfk.cleanup_called:
        _do_not_wait_for_threads(dfk)

        def cleanup() -> None:
            try:
                dfk.cleanup()
            except BaseException as exc:
                errors.append(exc)

        worker = threading.Thread(target=cleanup, name="parslflow-cleanup", daemon=True)
        worker.start()
        worker.join(CLEANUP_GRACE)
        if worker.is_alive():
            errors.append(
                TimeoutError(
                    f"the cleanup of the DataFlowKernel in {dfk.run_dir} did not finish in "
                    f"{CLEANUP_GRACE:.0f} s; its executors' processes are ended"
                )
            )
    _close_log_file(log_file)
    if DataFlowKernelLoader._dfk is dfk:
        DataFlowKernelLoader.clear()
    return errors[0] if errors else None


def keep_run_dir(keep: str, failed: bool) -> bool:
    return keep == "all" or (keep == "failed" and failed)


def remove_run_base(base: Path) -> None:
    shutil.rmtree(base, ignore_errors=True)


class RunDirRemover:
    """Removes finished tests' run directories in a background thread, while the next
    test runs (an HTEX run directory holds dozens of files); :meth:`flush` waits until
    every one handed over is gone."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Path | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def remove(self, base: Path) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="parslflow-run-dir-remover", daemon=True
            )
            self._thread.start()
        self._queue.put(base)

    def _run(self) -> None:
        while (base := self._queue.get()) is not None:
            remove_run_base(base)

    def flush(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None


#: the session's :class:`RunDirRemover`
REMOVER = pytest.StashKey[RunDirRemover]()


#: the validated settings of a Parsl test, in ``item.stash``
SETTINGS = pytest.StashKey[ParslSettings]()

#: asking for any of these opts a test in (parsl_run_dir alone does not load). Not
#: ``parsl_config``: many suites define a fixture of that name for their own use.
PARSL_FIXTURES = frozenset(
    {
        "parsl_dfk",
        "parsl_run_dir",
        "parsl_tasks",
        "parsl_restart",
        "parsl_faults",
        "parsl_monitoring",
    }
)


def opted_in(item: pytest.Item) -> bool:
    """Whether the test opted in, and so is managed: marked ``parsl`` (on it, its class
    or its module) or asking for one of the plugin's own fixtures. Every other test is
    only observed."""
    if item.get_closest_marker(MARKER) is not None:
        return True
    return not PARSL_FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))


def item_settings(item: pytest.Item) -> ParslSettings:
    """The test's settings, validated once; raises ``SettingsError`` naming the test."""
    settings = item.stash.get(SETTINGS, None)
    if settings is not None:
        return settings
    callspec = getattr(item, "callspec", None)
    chosen = callspec.params.get(EXECUTOR_PARAM) if callspec is not None else None
    try:
        settings = build_settings(
            item.iter_markers(MARKER),
            options_of(item.config).executors,
            chosen,
            function_marks=getattr(getattr(item, "obj", None), "pytestmark", ()),
        )
    except SettingsError as exc:
        message = f"{item.nodeid}: {exc}"
    else:
        item.stash[SETTINGS] = settings
        return settings
    raise SettingsError(message)


class QuietParslRecords(logging.Filter):
    """Keeps Parsl's records out of pytest's "Captured log" sections.

    Every one of them is in the run's ``parsl.log``, and the failure report shows
    the lines of it that matter (the failed tasks', warnings and errors, with the
    tracebacks once). Critical records still pass. The ``caplog`` fixture is left
    alone, so a test can still assert on Parsl's records.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        if name != "parsl" and not name.startswith("parsl."):
            return True
        return record.levelno >= logging.CRITICAL


def quiet_parsl_in_captured_logs(config: pytest.Config) -> None:
    logging_plugin = config.pluginmanager.get_plugin("logging-plugin")
    handler = getattr(logging_plugin, "report_handler", None)
    if handler is not None:
        handler.addFilter(QuietParslRecords())


def load_problem(run: ParslTestRun, config: Config, builtin: bool) -> str:
    """Why this test's DFK cannot be loaded, or ``""``; applies the settings to ``config``."""
    from pytest_parslflow.config import ConfigFileError, apply_settings
    from pytest_parslflow.monitoring import MonitoringUnavailable

    try:
        apply_settings(config, run.settings, run.run_dir, builtin)
    except (ConfigFileError, MonitoringUnavailable) as exc:
        return str(exc)
    return ""


class ParslRestartError(RuntimeError):
    """``parsl_restart`` cannot work for this test; the message says why and what to do."""


def checkpoint_mode(dfk: DataFlowKernel) -> str | None:
    """The loaded DFK's checkpoint mode, wherever the installed Parsl keeps it."""
    mode = getattr(getattr(dfk, "memoizer", None), "checkpoint_mode", None)
    return mode or getattr(dfk, "checkpoint_mode", None)


class ParslRestart:
    """The ``parsl_restart`` fixture: ``parsl_restart()`` ends the current DFK and loads a
    fresh one with the same settings and run directory, reusing its checkpoints.

    ``parsl_restart.checkpoint()`` takes a manual checkpoint of the current DFK, on
    either side of Parsl's move of checkpointing into ``BasicMemoizer``.
    """

    def __init__(self, run: ParslTestRun, nodeid: str) -> None:
        self._run = run
        self._nodeid = nodeid

    def _fail(self, why: str) -> ParslRestartError:
        return ParslRestartError(f"{self._nodeid}: parsl_restart: {why}")

    def checkpoint(self) -> None:
        dfk = self._run.dfk
        if dfk is None:
            raise self._fail("no DataFlowKernel is loaded")
        # Current Parsl: dfk.memoizer.checkpoint(); before the move: dfk.checkpoint().
        owner: Any = dfk.memoizer if hasattr(dfk.memoizer, "checkpoint") else dfk
        owner.checkpoint()

    def __call__(self) -> DataFlowKernel:
        run = self._run
        dfk = run.dfk
        if run.settings.scope != "function":
            raise self._fail(
                f"a DFK shared by scope={run.settings.scope!r} cannot be restarted by one "
                f"test; use scope='function' for restart tests"
            )
        if dfk is None:
            raise self._fail("no DataFlowKernel is loaded")
        if checkpoint_mode(dfk) is None:
            raise self._fail(
                "this test's DFK has no checkpoint mode, so a restart would reuse nothing; "
                "set @pytest.mark.parsl(checkpoint='task_exit' | 'periodic' | 'dfk_exit' | "
                "'manual')"
            )
        if run.fresh_config is None:
            raise self._fail(
                "the conftest's parsl_config fixture gives one Config, and Parsl cannot load "
                "a Config twice; return it from a pytest_parslflow_make_config hook instead"
            )
        error = cleanup_dfk(dfk)
        if error is not None:
            raise error
        config, builtin = run.fresh_config()
        problem = load_problem(run, config, builtin)
        if problem:
            raise self._fail(problem)
        return run.load(config)
