"""DataFlowKernels shared by the tests of a module or a session (``scope="module"`` or
``"session"``): loaded on first use, checked before each test, closed at the scope's end.

Between its tests a shared DFK keeps running but is not Parsl's loaded DFK, so an
unrelated test in between can load its own.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_parslflow.lifecycle import (
    SHARED_RUNS,
    ParslTestRun,
    cleanup_dfk,
    keep_run_dir,
    load_dfk,
    load_problem,
    remove_run_base,
)
from pytest_parslflow.options import options_of
from pytest_parslflow.ownership import Owner, note
from pytest_parslflow.settings import ParslSettings

if TYPE_CHECKING:
    from parsl.config import Config
    from parsl.dataflow.dflow import DataFlowKernel

    from pytest_parslflow.tasks import TaskRecorder


@dataclass
class SharedRun:
    """One shared DFK (and its replacements) with its own run directory."""

    scope: str
    module: str | None
    base: Path
    dfk: DataFlowKernel | None = None
    recorder: TaskRecorder | None = None
    loads: int = 0
    failed: bool = False
    dfks: list[DataFlowKernel] = field(default_factory=list)

    @property
    def run_dir(self) -> Path:
        return self.base / "runinfo"


#: seconds a shared HTEX's interchange has to answer before a test
HEALTH_TIMEOUT = 5.0


def health_problem(dfk: DataFlowKernel) -> str:
    """Why a shared DFK cannot serve another test (a dead interchange, an executor in a
    bad state, a pool that lost its managers), or ``""``."""
    executor: Any
    for executor in dfk.executors.values():
        label = executor.label
        if getattr(executor, "bad_state_is_set", False):
            return f"executor {label} is in a bad state: {executor.executor_exception}"
        interchange = getattr(executor, "interchange_proc", None)
        if interchange is not None and interchange.poll() is not None:
            return f"the interchange of executor {label} exited with code {interchange.returncode}"
        if interchange is not None:
            try:
                managers = executor.command_client.run("MANAGERS", timeout_s=HEALTH_TIMEOUT)
            except Exception as exc:
                return f"the interchange of executor {label} does not answer: {exc!r}"
            if not managers and not _blocks_pending(executor):
                return f"executor {label} lost its managers and has no block starting"
    return ""


def _blocks_pending(executor: Any) -> bool:
    """Whether the executor has a block that is queued or running (a manager may yet come)."""
    try:
        statuses = executor.status()
    except Exception:
        return False
    return any(not status.terminal for status in statuses.values())


_SharedKey = tuple[str, str, ParslSettings]


class SharedRuns:
    """A plugin object: the session's shared DFKs, by scope, module and settings."""

    def __init__(self, config: pytest.Config) -> None:
        self._config = config
        self._runs: dict[_SharedKey, SharedRun] = {}

    def run_for(self, item: pytest.Item, settings: ParslSettings) -> SharedRun:
        """The shared run this test belongs to (made on first use)."""
        module = item.nodeid.split("::")[0] if settings.scope == "module" else None
        # the timeout is the test's own; everything else shapes the DFK
        key = (settings.scope, module or "", dataclasses.replace(settings, timeout=None))
        shared = self._runs.get(key)
        if shared is None:
            name = f"parsl_{settings.scope}_" + (Path(module).stem if module else "session")
            factory = self._config._tmp_path_factory  # type: ignore[attr-defined]
            base = factory.mktemp(re.sub(r"[\W]", "_", name)[:30], numbered=True)
            shared = self._runs[key] = SharedRun(settings.scope, module, base)
            shared.run_dir.mkdir()
        return shared

    def acquire(
        self,
        item: pytest.Item,
        run: ParslTestRun,
        shared: SharedRun,
        make_config: Callable[[], tuple[Config, bool]],
    ) -> DataFlowKernel:
        """Make the shared DFK the loaded one for this test, loading or replacing it."""
        from parsl.dataflow.dflow import DataFlowKernelLoader

        from pytest_parslflow.tasks import TaskRecorder, TaskWindow

        if shared.dfk is not None:
            problem = health_problem(shared.dfk)
            if problem:
                warnings.warn(
                    pytest.PytestWarning(
                        f"pytest-parslflow: the {shared.scope}-scoped DataFlowKernel "
                        f"({shared.dfk.run_dir}) was broken ({problem}); it was replaced "
                        f"for {item.nodeid}"
                    ),
                    stacklevel=1,
                )
                cleanup_dfk(shared.dfk)
                shared.dfk = None
        run.set_aside_loaded()
        if shared.dfk is None:
            config, builtin = make_config()
            problem = load_problem(run, config, builtin)
            if problem:
                pytest.fail(f"{item.nodeid}: {problem}", pytrace=False)
            # leak guard (issue 12): what it starts is the shared run's, not this test's
            from pytest_parslflow.origins import shared_owner

            owner = shared_owner(shared, f"the {shared.scope}-scoped DataFlowKernel")
            shared.dfk = load_dfk(config, owner)
            note(shared.dfk, Owner(shared.scope, shared.module or "", "the parsl marker"))
            shared.dfks.append(shared.dfk)
            shared.recorder = TaskRecorder(shared.dfk, run=shared.loads)
            shared.loads += 1
        else:
            DataFlowKernelLoader._dfk = shared.dfk
        assert shared.recorder is not None
        run.dfks.append(shared.dfk)
        run.windows.append(TaskWindow(shared.recorder, first_id=shared.dfk.task_count))
        return shared.dfk

    def release(self, run: ParslTestRun, shared: SharedRun) -> None:
        """After a test: its task window closes, and the DFK stops being the loaded one."""
        from parsl.dataflow.dflow import DataFlowKernelLoader

        for window in run.windows:
            window.stop_id = window.recorder.dfk.task_count
        if shared.dfk is not None and DataFlowKernelLoader._dfk is shared.dfk:
            DataFlowKernelLoader.clear()

    def close(self, shared: SharedRun) -> None:
        for dfk in shared.dfks:
            cleanup_dfk(dfk)
        # leak guard (issue 12): nothing its DFKs started outlives the shared run
        owner = getattr(shared, "_parslflow_owner", None)
        if owner is not None:
            from pytest_parslflow.leaks import end_owner

            end_owner(owner)
        shared.dfk = None
        if not keep_run_dir(options_of(self._config).keep, shared.failed):
            remove_run_base(shared.base)

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_teardown(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        """A module's shared DFKs end with the module's last test, the session's with the
        session's last test: inside the test loop, so that coverage measuring the session
        (pytest-cov combines its data when the loop ends) gets the data of their workers."""
        module = item.nodeid.split("::")[0]
        if nextitem is not None and nextitem.nodeid.split("::")[0] == module:
            return
        for key, shared in list(self._runs.items()):
            if shared.module == module or nextitem is None:
                self.close(shared)
                del self._runs[key]

    def alive_bases(self) -> list[Path]:
        return [shared.base for shared in self._runs.values() if shared.dfk is not None]

    def pytest_sessionfinish(self) -> None:
        for shared in self._runs.values():
            self.close(shared)
        self._runs.clear()


def shared_runs(config: pytest.Config) -> SharedRuns:
    """The session's shared DFKs, registered as a plugin when the first one is needed."""
    runs = config.stash.get(SHARED_RUNS, None)
    if runs is None:
        runs = config.stash[SHARED_RUNS] = SharedRuns(config)
        config.pluginmanager.register(runs, "parslflow-shared")
    return runs
