"""Where a test hangs: the Python stack of each thread still running one of its tasks, as
Parsl's own test suite dumps every thread's stack (``sys._current_frames()``).

A thread-executor task runs in a thread of this process: the thread is found by the
executor future its work item holds, so the stack shown is that task's, not a guess by
name. HTEX tasks run in worker processes, whose stacks this process cannot read.
"""

from __future__ import annotations

import sys
import threading
import traceback
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_parslflow.lifecycle import ParslTestRun
    from pytest_parslflow.tasks import ParslTask

#: innermost frames shown per thread, and threads shown
MAX_FRAMES = 12
MAX_THREADS = 10


def _work_item_future(frame: FrameType | None) -> Any:
    """The future of the ``concurrent.futures`` work item this thread is running, if any."""
    while frame is not None:
        if frame.f_code.co_name == "run":
            item = frame.f_locals.get("self")
            future = getattr(item, "future", None)
            if future is not None and hasattr(item, "fn"):
                return future
        frame = frame.f_back
    return None


def _task_frames(frame: FrameType) -> list[FrameType]:
    """The frames from the work item's ``run`` inwards (the thread's own plumbing left out)."""
    frames: list[FrameType] = []
    current: FrameType | None = frame
    while current is not None:
        frames.append(current)
        if current.f_code.co_name == "run" and hasattr(current.f_locals.get("self"), "fn"):
            break
        current = current.f_back
    return frames[::-1][1:]  # outermost first, without run() itself


def thread_stacks(
    run: ParslTestRun, tasks: list[ParslTask], heading: Callable[[str], str]
) -> list[str]:
    """A section with the stack of each thread running a task of the test still in flight."""
    in_flight = {(t.run, t.id): t for t in tasks if not t.done}
    if not in_flight:
        return []
    futures: dict[int, ParslTask] = {}
    for index, dfk in enumerate(run.dfks):
        for task_id, record in list(dfk.tasks.items()):
            task = in_flight.get((index, task_id))
            future = record.get("exec_fu")
            if task is not None and future is not None:
                futures[id(future)] = task
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    lines: list[str] = []
    shown = 0
    for ident, frame in sys._current_frames().items():
        future = _work_item_future(frame)
        task = futures.get(id(future)) if future is not None else None
        if task is None:
            continue
        shown += 1
        if shown > MAX_THREADS:
            continue
        frames = _task_frames(frame)[-MAX_FRAMES:]
        lines.append(
            f"thread {names.get(ident, '?')} ({ident}) running task {task.id} {task.app}"
            + (f" (run {task.run})" if len(run.dfks) > 1 else "")
            + ", innermost last:"
        )
        summary = traceback.StackSummary.extract(
            ((f, f.f_lineno) for f in frames), lookup_lines=True
        )
        for text in summary.format():
            lines.extend(text.rstrip("\n").split("\n"))
    if shown > MAX_THREADS:
        lines.append(f"... and {shown - MAX_THREADS} more threads running tasks")
    elsewhere = len(in_flight) - shown
    if not lines and not elsewhere:
        return []
    if elsewhere:
        lines.append(
            f"{elsewhere} tasks in flight run in no thread of this process (they wait for "
            f"a dependency or a worker, or run in an HTEX worker): no stack to show"
        )
    return [heading("parsl: stacks of threads running tasks"), *lines]
