"""Records of every task a test submitted, collected while the tasks run.

Parsl deletes a finished task from ``dfk.tasks`` (``garbage_collect=True``) and
resets ``fail_history`` on every retry, so the recorder follows each task as it
goes: it wraps three of the DataFlowKernel's own methods on that one instance
(state changes, launches, and the end of each try). Records are plain,
immutable data, readable after the DFK is gone.
"""

from __future__ import annotations

import datetime
import os
import sysconfig
import threading
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from parsl.dataflow.dflow import DataFlowKernel

FAILED_STATES = frozenset({"failed", "dep_fail"})
FINAL_STATES = frozenset({"exec_done", "memo_done", "failed", "dep_fail"})


@dataclass(frozen=True)
class ParslTask:
    """One task of a test, as Parsl ran it.

    ``tries`` counts how often its body was started (0 for ``dep_fail`` and
    ``memo_done``); ``exceptions`` has one exception per failed try, not only
    the last; ``executor_ids`` one executor task id per try (HTEX), ``depends_on``
    the ids of the tasks it waited on, ``root`` for a ``dep_fail`` (and for a join
    app failed by the apps it joined) the task whose own failure caused it.
    """

    id: int
    run: int
    app: str
    state: str
    tries: int
    exceptions: tuple[BaseException, ...]
    from_memo: bool
    executor: str
    executor_ids: tuple[Any, ...]
    depends_on: tuple[int, ...]
    root: int | None
    submitted: datetime.datetime | None
    returned: datetime.datetime | None
    try_launched: tuple[datetime.datetime, ...]
    stdout: str | None = None
    stderr: str | None = None
    #: per failed try, its traceback's frames outside Parsl and the standard library,
    #: taken when the try ended (re-raising the exception later adds frames to it)
    frames: tuple[tuple[traceback.FrameSummary, ...], ...] = ()

    @property
    def failed(self) -> bool:
        return self.state in FAILED_STATES

    @property
    def done(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def duration(self) -> datetime.timedelta | None:
        """From submission to the final state (``None`` while in flight)."""
        if self.submitted is None or self.returned is None:
            return None
        return self.returned - self.submitted


_LIBRARY_DIRS = (
    *{sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]},
    *(os.sep + name + os.sep for name in ("parsl", "pytest_parslflow", "typeguard")),
)


def user_frames(exc: BaseException) -> tuple[traceback.FrameSummary, ...]:
    """The frames of ``exc``'s traceback in the user's code (remote frames included)."""
    frames = traceback.extract_tb(exc.__traceback__)
    return tuple(f for f in frames if not any(d in f.filename for d in _LIBRARY_DIRS))


def _std_path(spec: object) -> str | None:
    """A bash app's stdout/stderr spec as a path: a str, a PathLike or a (path, mode) tuple."""
    if isinstance(spec, tuple) and spec:
        spec = spec[0]
    if isinstance(spec, (str, os.PathLike)):
        return os.fspath(spec)
    return None


@dataclass
class _Tracking:
    """The mutable state of one task while it runs (guarded by the recorder's lock)."""

    id: int
    app: str
    executor: str
    submitted: datetime.datetime | None
    depends_on: tuple[int, ...] = ()
    state: str = "pending"
    tries: int = 0
    exceptions: list[BaseException] = field(default_factory=list)
    frames: list[tuple[traceback.FrameSummary, ...]] = field(default_factory=list)
    from_memo: bool = False
    executor_ids: list[Any] = field(default_factory=list)
    try_launched: list[datetime.datetime] = field(default_factory=list)
    returned: datetime.datetime | None = None
    stdout: str | None = None
    stderr: str | None = None
    future: Future[Any] | None = None
    #: for a join app failed by the apps it joined: their task ids (this DFK's)
    join_failures: tuple[int, ...] | None = None


def _dependency_ids(task_record: Any, dfk: DataFlowKernel) -> tuple[int, ...]:
    ids = []
    for dep in task_record.get("depends", ()):
        record = getattr(dep, "task_record", None)
        if record is not None and record.get("dfk") is dfk:
            ids.append(record["id"])
        elif getattr(dep, "tid", None) is not None:  # a DataFuture names its parent task
            ids.append(dep.tid)
    return tuple(ids)


class TaskRecorder:
    """Follows the tasks of one DataFlowKernel (run ``run`` of a test)."""

    def __init__(self, dfk: DataFlowKernel, run: int) -> None:
        self.dfk = dfk
        self.run = run
        self._lock = threading.Lock()
        self._tasks: dict[int, _Tracking] = {}
        #: each task's record as of its last change (dropped when it changes)
        self._records: dict[int, ParslTask] = {}
        self._wrap()

    def _wrap(self) -> None:
        dfk = self.dfk
        # Parsl renamed update_task_state to _update_task_state in 2025.
        state_name = (
            "_update_task_state" if hasattr(dfk, "_update_task_state") else "update_task_state"
        )
        update_state: Callable[..., None] = getattr(dfk, state_name)
        launch: Callable[..., Future[Any]] = dfk.launch_task
        exec_update: Callable[..., None] = dfk.handle_exec_update
        join_update: Callable[..., None] = dfk.handle_join_update

        def state_changed(task_record: Any, new_state: Any) -> None:
            update_state(task_record, new_state)
            self._state(task_record, new_state.name)

        def launched(task_record: Any) -> Future[Any]:
            future = launch(task_record)
            self._launched(task_record, future)
            return future

        def try_ended(task_record: Any, future: Future[Any]) -> None:
            self._try_ended(task_record, future)
            exec_update(task_record, future)

        def join_ended(task_record: Any, inner_app_future: Future[Any] | None) -> None:
            join_update(task_record, inner_app_future)
            self._join_ended(task_record)

        setattr(dfk, state_name, state_changed)
        dfk.launch_task = launched  # type: ignore[method-assign]
        dfk.handle_exec_update = try_ended  # type: ignore[method-assign]
        dfk.handle_join_update = join_ended  # type: ignore[method-assign]

    def _state(self, task_record: Any, state: str) -> None:
        with self._lock:
            self._records.pop(task_record["id"], None)
            tracking = self._tasks.get(task_record["id"])
            if tracking is None:
                tracking = _Tracking(
                    id=task_record["id"],
                    app=task_record.get("func_name", "?"),
                    executor=task_record.get("executor", "?"),
                    submitted=task_record.get("time_invoked"),
                )
                self._tasks[tracking.id] = tracking
            if tracking.future is None:
                # Parsl before 2025.4 records a first state before the AppFuture and the
                # dependencies exist, so they are picked up at a later change.
                app_fu = task_record.get("app_fu")
                if app_fu is not None:
                    tracking.future = app_fu
                    tracking.depends_on = _dependency_ids(task_record, self.dfk)
                    tracking.stdout = _std_path(getattr(app_fu, "stdout", None))
                    tracking.stderr = _std_path(getattr(app_fu, "stderr", None))
            tracking.state = state
            if state in FINAL_STATES:
                tracking.returned = task_record.get("time_returned") or datetime.datetime.now()

    def _launched(self, task_record: Any, future: Future[Any]) -> None:
        with self._lock:
            self._records.pop(task_record["id"], None)
            tracking = self._tasks.get(task_record["id"])
            if tracking is None:
                return
            if task_record.get("from_memo"):
                tracking.from_memo = True
                return
            tracking.tries += 1
            tracking.try_launched.append(
                task_record.get("try_time_launched") or datetime.datetime.now()
            )
            executor_id = getattr(future, "parsl_executor_task_id", None)
            if executor_id is not None:
                tracking.executor_ids.append(executor_id)

    def _try_ended(self, task_record: Any, future: Future[Any]) -> None:
        from parsl.app.errors import RemoteExceptionWrapper
        from parsl.dataflow.errors import DependencyError

        # Read without raising: raising would add this frame to the exception that the
        # test later sees.
        exc = future.exception()
        if exc is None:
            result = future.result()
            if isinstance(result, RemoteExceptionWrapper):
                exc = result.get_exception()
        if exc is None or isinstance(exc, DependencyError):
            return
        frames = user_frames(exc)
        with self._lock:
            self._records.pop(task_record["id"], None)
            tracking = self._tasks.get(task_record["id"])
            if tracking is not None:
                tracking.exceptions.append(exc)
                tracking.frames.append(frames)

    def _join_ended(self, task_record: Any) -> None:
        """A join app failed by the apps it joined: Parsl fails it with a ``JoinError``
        outside any try, so it is recorded here with the ids of the failed inner tasks."""
        from parsl.dataflow.errors import JoinError

        app_fu = task_record.get("app_fu")
        if app_fu is None or not app_fu.done():
            return
        exc = app_fu.exception()
        if not isinstance(exc, JoinError):
            return
        joins = task_record.get("joins")
        joined = joins if isinstance(joins, list) else [joins]
        failed = tuple(
            record["id"]
            for future in joined
            if isinstance(future, Future)
            and future.done()
            and future.exception() is not None
            and (record := getattr(future, "task_record", {})).get("dfk") is self.dfk
        )
        with self._lock:
            self._records.pop(task_record["id"], None)
            tracking = self._tasks.get(task_record["id"])
            if tracking is not None and tracking.join_failures is None:
                tracking.exceptions.append(exc)
                tracking.frames.append(())
                tracking.join_failures = failed

    def _cause(self, task_id: int, seen: frozenset[int]) -> int | None:
        """The task whose own failure failed ``task_id``: itself where it failed in its
        body, else through the tasks it waited on or joined (under the lock)."""
        task = self._tasks.get(task_id)
        if task is None or task_id in seen:
            return None
        seen = seen | {task_id}
        if task.state == "failed" and task.join_failures is None:
            return task_id
        if task.state == "dep_fail":
            candidates: tuple[int, ...] = task.depends_on
        else:
            candidates = task.join_failures or ()
        for candidate in candidates:
            found = self._cause(candidate, seen)
            if found is not None:
                return found
        # a failed join whose inner tasks are not this DFK's: the join itself
        return task_id if task.state == "failed" else None

    def _record(self, t: _Tracking) -> ParslTask:
        """The immutable record of ``t`` (under the lock), made once per change of it: a
        ``dep_fail`` or failed join names its root only once the tasks it waited on ended,
        so a record stays right until its own task changes."""
        record = self._records.get(t.id)
        if record is not None:
            return record
        root = None
        if t.state == "dep_fail" or t.join_failures is not None:
            root = self._cause(t.id, frozenset())
        record = self._records[t.id] = ParslTask(
            id=t.id,
            run=self.run,
            app=t.app,
            state=t.state,
            tries=t.tries,
            exceptions=tuple(t.exceptions),
            from_memo=t.from_memo,
            executor=t.executor,
            executor_ids=tuple(t.executor_ids),
            depends_on=t.depends_on,
            root=root,
            submitted=t.submitted,
            returned=t.returned,
            try_launched=tuple(t.try_launched),
            stdout=t.stdout,
            stderr=t.stderr,
            frames=tuple(t.frames),
        )
        return record

    def record(self, task_id: int) -> ParslTask | None:
        """The record of one task, or ``None``; O(1) (a ``dep_fail`` walks to its root)."""
        # a dict read is atomic: a record read just before its task changes is one read
        # before the change
        record = self._records.get(task_id)
        if record is not None:
            return record
        with self._lock:
            tracking = self._tasks.get(task_id)
            return None if tracking is None else self._record(tracking)

    def snapshot(self) -> list[ParslTask]:
        """Every task so far, in submission order, as immutable records."""
        with self._lock:
            return [self._record(self._tasks[i]) for i in sorted(self._tasks)]

    def futures(self) -> list[tuple[int, Future[Any]]]:
        with self._lock:
            return [(t.id, t.future) for t in self._tasks.values() if t.future is not None]


@dataclass
class TaskWindow:
    """The tasks of one recorder that belong to one test: all of them, or, in a DFK
    shared by several tests, those with ids from ``first_id`` up to ``stop_id``."""

    recorder: TaskRecorder
    first_id: int = 0
    stop_id: int | None = None

    def _wanted(self, task_id: int) -> bool:
        return task_id >= self.first_id and (self.stop_id is None or task_id < self.stop_id)

    def snapshot(self) -> list[ParslTask]:
        return [t for t in self.recorder.snapshot() if self._wanted(t.id)]

    def get(self, task_id: int) -> ParslTask | None:
        return self.recorder.record(task_id) if self._wanted(task_id) else None

    def futures(self) -> list[Future[Any]]:
        return [f for task_id, f in self.recorder.futures() if self._wanted(task_id)]


class ParslTasks:
    """The ``parsl_tasks`` fixture: records of every task the test submitted.

    Holds the records of every DFK the test loaded, in submission order.
    ``parsl_tasks[3]`` is task 3 of the current (latest) run.
    """

    def __init__(self, windows: list[TaskWindow]) -> None:
        self._windows = windows

    def _all(self) -> list[ParslTask]:
        return [task for window in self._windows for task in window.snapshot()]

    def __len__(self) -> int:
        return len(self._all())

    def __iter__(self) -> Iterator[ParslTask]:
        return iter(self._all())

    def __getitem__(self, key: int | Future[Any]) -> ParslTask:
        """``parsl_tasks[3]``: task 3 of the current run; ``parsl_tasks[future]``: the task
        of an app's future, of whichever run of this test submitted it. O(1) either way."""
        if type(key) is int and self._windows:  # the common case first, and fast
            window = self._windows[-1]
            if key >= window.first_id and (window.stop_id is None or key < window.stop_id):
                found = window.recorder.record(key)
                if found is not None:
                    return found
        if isinstance(key, Future):
            record = getattr(key, "task_record", None)
            task_id = getattr(key, "tid", None)
            if record is not None and task_id is not None:
                for window in reversed(self._windows):
                    if window.recorder.dfk is record.get("dfk"):
                        found = window.get(task_id)
                        if found is not None:
                            return found
            raise KeyError(f"{key!r} is not the future of a task this test submitted")
        if isinstance(key, bool) or not isinstance(key, int):
            raise TypeError(
                f"parsl_tasks[...] takes a task id (int) or an app's future, "
                f"not {type(key).__name__}"
            )
        found = self._windows[-1].get(key) if self._windows else None
        if found is None:
            raise KeyError(f"no task {key} in the current Parsl run of this test")
        return found

    def __repr__(self) -> str:
        tasks = self._all()
        return f"<parsl_tasks: {len(tasks)} tasks: {state_counts(tasks) or 'none'}>"

    @property
    def failed(self) -> list[ParslTask]:
        """Tasks whose final state is ``failed`` or ``dep_fail``."""
        return [t for t in self._all() if t.failed]

    @property
    def succeeded(self) -> list[ParslTask]:
        """Tasks whose final state is ``exec_done`` or ``memo_done``."""
        return [t for t in self._all() if t.state in ("exec_done", "memo_done")]

    @property
    def memoized(self) -> list[ParslTask]:
        """Tasks served from the app cache or a checkpoint."""
        return [t for t in self._all() if t.from_memo]

    def by_app(self, name: str) -> list[ParslTask]:
        """Tasks of the app called ``name``."""
        return [t for t in self._all() if t.app == name]

    def wait(self, timeout: float | None = None) -> ParslTasks:
        """Wait for every task submitted so far to reach a final state, failures included
        (Parsl's lazy failure: nothing stops at the first failure). Returns ``self``."""
        import concurrent.futures

        for window in self._windows:
            concurrent.futures.wait(window.futures(), timeout=timeout)
        return self


def state_counts(tasks: list[ParslTask]) -> str:
    """``"3 exec_done, 1 failed"``: counts per state, in order of first appearance."""
    counts: dict[str, int] = {}
    for task in tasks:
        counts[task.state] = counts.get(task.state, 0) + 1
    return ", ".join(f"{n} {state}" for state, n in counts.items())
