"""The report of a failed test that did not opt in, while a DataFlowKernel is loaded.

Such a test runs on its suite's DFK, which the plugin does not touch: no task
records were taken for it. What it submitted is read back from the part of the
run's ``parsl.log`` written since the test began (Parsl logs every task's
submission, state changes, tries and failures at INFO), and its excerpts are
chosen by those task ids, as a managed test's are.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_parslflow.ownership import owner_of
from pytest_parslflow.report.failure import heading
from pytest_parslflow.report.logs import excerpt, executor_logs, relative, task_pattern

if TYPE_CHECKING:
    from parsl.dataflow.dflow import DataFlowKernel

#: failed tasks detailed in the summary; the rest are counted
MAX_FAILED_SHOWN = 10
_READ = 1 << 20


@dataclass(frozen=True)
class ObservedWindow:
    """Where a loaded DFK stood when a test began: its next task id and the size of
    its ``parsl.log``."""

    dfk: DataFlowKernel
    first_task: int
    log_offset: int

    @classmethod
    def start(cls, dfk: DataFlowKernel) -> ObservedWindow:
        try:
            size = os.stat(os.path.join(dfk.run_dir, "parsl.log")).st_size
        except OSError:
            size = 0
        return cls(dfk, dfk.task_count, size)

    @classmethod
    def whole(cls, dfk: DataFlowKernel) -> ObservedWindow:
        """A DFK loaded during the test: all of it is the test's."""
        return cls(dfk, 0, 0)


@dataclass
class _Seen:
    """One task as its log lines tell it."""

    id: int
    app: str = "?"
    state: str = "pending"
    executor: str = ""
    executor_ids: list[str] = field(default_factory=list)
    tries: int = 0
    exceptions: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.state in ("failed", "dep_fail")


_SUBMITTED = re.compile(rb"Task (\d+) submitted for App (\S+?),")
# current Parsl logs every state change; 2025.1 only the final one ("completed (a -> b)")
_STATE = re.compile(
    rb"Task (\d+) (?:changing state from \w+ to|initializing state to|completed \(\w+ ->) (\w+)"
)
_LAUNCHED = re.compile(
    rb"Parsl task (\d+) try \d+ launched on executor (\S+?)(?: with executor id (\d+))?\s*$"
)
_TRY_FAILED = re.compile(rb"Task (\d+) try \d+ failed with exception of type (\w+)")
_DEP_FAIL = re.compile(rb"Task (\d+) failed due to dependency failure")
# Parsl 2025.1 logs no state change for a task that failed for good, only this
_FAILED = re.compile(rb"Task (\d+) failed after \d+ retry attempts")


def _read_tasks(log: Path, window: ObservedWindow, last_task: int) -> dict[int, _Seen]:
    """The tasks with ids in the window, as ``parsl.log`` tells them from the window on."""
    tasks: dict[int, _Seen] = {}

    def seen(raw: bytes) -> _Seen | None:
        task_id = int(raw)
        if not window.first_task <= task_id < last_task:
            return None
        return tasks.setdefault(task_id, _Seen(task_id))

    with log.open("rb") as handle:
        handle.seek(window.log_offset)
        for line in handle:
            if b"ask " not in line:
                continue
            line = line.rstrip(b"\r\n")
            if match := _SUBMITTED.search(line):
                if task := seen(match[1]):
                    task.app = match[2].decode(errors="replace")
            elif match := _STATE.search(line):
                if task := seen(match[1]):
                    task.state = match[2].decode()
            elif match := _LAUNCHED.search(line):
                if task := seen(match[1]):
                    task.tries += 1
                    task.executor = match[2].decode(errors="replace")
                    if match[3]:
                        task.executor_ids.append(match[3].decode())
            elif match := _TRY_FAILED.search(line):
                if task := seen(match[1]):
                    task.exceptions.append(match[2].decode())
            elif match := _DEP_FAIL.search(line):
                if task := seen(match[1]):
                    task.state = "dep_fail"
            elif match := _FAILED.search(line):
                if task := seen(match[1]):
                    task.state = "failed"
    return tasks


def observed_report(window: ObservedWindow, max_lines: int) -> str:
    """The report text for the tasks submitted during the test, or ``""`` if none were."""
    dfk = window.dfk
    last_task = dfk.task_count
    if last_task <= window.first_task:
        return ""
    run_dir = Path(dfk.run_dir)
    log = run_dir / "parsl.log"
    tasks = _read_tasks(log, window, last_task) if log.is_file() else {}
    owner = owner_of(dfk)
    loaded_by = f"loaded by {owner.describe()}" if owner else "loaded outside the plugin"
    ids = range(window.first_task, last_task)
    counts: dict[str, int] = {}
    for task_id in ids:
        state = tasks[task_id].state if task_id in tasks else "unknown"
        counts[state] = counts.get(state, 0) + 1
    lines = [
        heading("parsl: tasks"),
        f"run dir: {run_dir} (the suite's DataFlowKernel, {loaded_by}; not managed by "
        f"pytest-parslflow: opt in with @pytest.mark.parsl for records, isolation and cleanup)",
        f"{len(ids)} tasks submitted during this test (ids {ids[0]}-{ids[-1]}): "
        + ", ".join(f"{n} {state}" for state, n in counts.items()),
    ]
    failed = sorted((t for t in tasks.values() if t.failed), key=lambda t: (t.state, t.id))
    for task in failed[:MAX_FAILED_SHOWN]:
        executor_ids = ", ".join(task.executor_ids)
        lines.append(
            f"task {task.id}  {task.app}  {task.state}"
            + (f"  tries={task.tries}  executor={task.executor}" if task.tries else "")
            + (f"  executor ids {executor_ids}" if executor_ids else "")
        )
        lines.extend(f"  try {n}: {name}" for n, name in enumerate(task.exceptions))
    if len(failed) > MAX_FAILED_SHOWN:
        lines.append(f"... and {len(failed) - MAX_FAILED_SHOWN} more failed tasks")
    wanted = failed or [t for t in tasks.values() if t.state not in ("exec_done", "memo_done")]
    if log.is_file():
        about = ", ".join(str(t.id) for t in wanted) or "warnings and tail"
        chosen = excerpt(
            log, task_pattern(t.id for t in wanted), max_lines, start=window.log_offset
        )
        if chosen.lines:
            lines += [
                heading(f"parsl: parsl.log since the test began (task {about})"),
                *chosen.lines,
            ]
    ran = [i for t in wanted for i in t.executor_ids]
    pattern = task_pattern(ran, executor=True)
    if pattern is not None:
        found = executor_logs(run_dir)
        for path in found["interchange"] + found["manager"] + found["worker"]:
            chosen = excerpt(path, pattern, max_lines)
            if chosen.task_lines:
                title = f"parsl: {relative(path, [run_dir])} (executor tasks {', '.join(ran)})"
                lines += [heading(title), *chosen.lines]
    return "\n".join(lines) + "\n"
