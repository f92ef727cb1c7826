"""DataFlowKernels shared by the tests of a module or a session (``scope="module"`` or
``"session"``): loaded on first use, checked before each test, closed at the scope's end.

Between its tests a shared DFK keeps running but is not Parsl's loaded DFK, so an
unrelated test in between can load its own.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Callable, Hashable
from concurrent.futures import Future
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
    #: the tasks the last test left running when it ended (a timeout), as text, with
    #: their futures: the next test gets a fresh DFK while any of them still runs
    held: str = ""
    held_futures: list[Future[Any]] = field(default_factory=list)
    #: why the DFK was replaced, for the reports of the tests after it
    replaced: list[str] = field(default_factory=list)

    @property
    def run_dir(self) -> Path:
        return self.base / "runinfo"


#: seconds a shared HTEX's interchange has to answer before a test
HEALTH_TIMEOUT = 5.0


def health_problem(dfk: DataFlowKernel) -> str:
    """Why a shared DFK cannot serve another test (a dead interchange, an executor in a
    bad state, a pool that lost its managers), or ``""``."""
    if dfk.cleanup_called:
        return "it was cleaned up, by a test or a fixture calling its cleanup()"
    executor: Any
    for executor in dfk.executors.values():
        label = executor.label
        pool = getattr(executor, "executor", None)  # a ThreadPoolExecutor's own pool
        if getattr(pool, "_shutdown", False):
            return f"executor {label} was shut down"
        # a dead interchange first: the watchdog soon puts the executor in a bad state
        # for it, and the plainer reason is the better one
        interchange = getattr(executor, "interchange_proc", None)
        if interchange is not None and interchange.poll() is not None:
            return f"the interchange of executor {label} exited with code {interchange.returncode}"
        if getattr(executor, "bad_state_is_set", False):
            return f"executor {label} is in a bad state: {executor.executor_exception}"
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


class _ByIdentity:
    """A setting that cannot be hashed, in a shared DFK's key: equal only to itself."""

    def __init__(self, value: object) -> None:
        self.value = value

    def __hash__(self) -> int:
        return id(self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ByIdentity) and other.value is self.value


_SharedKey = tuple[str, str, Hashable]


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _settings_key(settings: ParslSettings) -> tuple[Hashable, list[str]]:
    """What tests must have in common to share a DFK (all settings but the timeout, the
    test's own), and the names of the settings that, unhashable, are compared by identity."""
    shape = dataclasses.replace(settings, timeout=None)
    try:
        hash(shape)
    except TypeError:
        pass
    else:
        return shape, []
    key: list[Hashable] = []
    by_identity: list[str] = []
    for setting in dataclasses.fields(shape):
        if not setting.compare:
            continue
        value = getattr(shape, setting.name)
        try:
            hash(value)
        except TypeError:
            by_identity.append(setting.name)
            value = _ByIdentity(value)
        key.append((setting.name, value))
    return tuple(key), by_identity


class SharedRuns:
    """A plugin object: the session's shared DFKs, by scope, module and settings."""

    def __init__(self, config: pytest.Config) -> None:
        self._config = config
        self._runs: dict[_SharedKey, SharedRun] = {}

    def run_for(self, item: pytest.Item, settings: ParslSettings) -> SharedRun:
        """The shared run this test belongs to (made on first use)."""
        module = item.nodeid.split("::")[0] if settings.scope == "module" else None
        shape, by_identity = _settings_key(settings)
        key = (settings.scope, module or "", shape)
        shared = self._runs.get(key)
        if shared is None:
            if by_identity:
                values = ", ".join(f"{n}={_short(getattr(settings, n))}" for n in by_identity)
                warnings.warn(
                    pytest.PytestWarning(
                        f"pytest-parslflow: {values} of {item.nodeid} cannot be hashed, so "
                        f"tests share its {settings.scope}-scoped DataFlowKernel only when "
                        f"given the very same object"
                    ),
                    stacklevel=1,
                )
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
            if not problem and any(not f.done() for f in shared.held_futures):
                problem = f"{shared.held} still running"
            shared.held, shared.held_futures = "", []
            if problem:
                message = (
                    f"the {shared.scope}-scoped DataFlowKernel ({shared.dfk.run_dir}) was "
                    f"broken ({problem}); it was replaced for {item.nodeid}"
                )
                warnings.warn(pytest.PytestWarning(f"pytest-parslflow: {message}"), stacklevel=1)
                shared.replaced.append(message)
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
            loaded_by = Owner(shared.scope, shared.module or "", "the parsl marker")
            note(shared.dfk, loaded_by, checked=False)  # closed here, at its scope's end
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
        # a test that timed out leaves its tasks holding the workers: named here, and the
        # next test gets a fresh DFK while they run
        in_flight = [
            (task, window)
            for window in run.windows
            if window.recorder.dfk is shared.dfk
            for task in window.snapshot()
            if not task.done
        ]
        if in_flight:
            shown = ", ".join(f"{task.id} ({task.app})" for task, _ in in_flight[:10])
            more = f" and {len(in_flight) - 10} more" if len(in_flight) > 10 else ""
            plural = "s" if len(in_flight) > 1 else ""
            shared.held = f"{run.name} left task{plural} {shown}{more}"
            shared.held_futures = [
                f for window in {id(w): w for _, w in in_flight}.values() for f in window.futures()
            ]
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
