"""The failure report of a Parsl test: a task summary and log excerpts chosen by task.

The whole report is one ``Captured stdout parsl`` section of the test report, with
headings of its own inside: report sections travel to xdist's controller, and
pytest's JUnit XML writes captured stdout (``junit_logging = system-out`` or
``all``) without the section names, so the headings must be in the text.
"""

from __future__ import annotations

import datetime
import os
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from pytest_parslflow.lifecycle import ParslTestRun
from pytest_parslflow.monitoring import monitoring_errors, monitoring_view
from pytest_parslflow.report.jsonlog import twins
from pytest_parslflow.report.logs import (
    MAX_LINE_BYTES,
    clip,
    excerpt,
    executor_logs,
    relative,
    submit_outputs,
    tail_of,
    task_pattern,
)
from pytest_parslflow.report.stacks import thread_stacks
from pytest_parslflow.tasks import ParslTask, state_counts

SECTION = "Captured stdout parsl"
#: failed tasks detailed in the summary; the rest are counted
MAX_FAILED_SHOWN = 10
#: innermost frames of a try's traceback shown for the final try
TRACEBACK_FRAMES = 3
#: bytes of one exception's text in the summary
MAX_EXCEPTION_BYTES = 500
#: lines listing one task's tries: identical tries in a row fold into one line, and of
#: more groups than this the first and the last are shown
MAX_TRY_LINES = 12
#: bytes of the whole report (the task summary comes first, so it survives a cut)
MAX_REPORT_BYTES = 200_000
_WIDTH = 78


def heading(title: str) -> str:
    text = f" {title} "
    pad = max(_WIDTH - len(text), 6)
    return "-" * (pad // 2) + text + "-" * (pad - pad // 2)


def _where(frames: tuple[traceback.FrameSummary, ...]) -> str:
    if not frames:
        return ""
    frame = frames[-1]
    return f"   ({Path(frame.filename).name}:{frame.lineno} in {frame.name})"


def _describe(exc: BaseException) -> str:
    """``Type: first line of the message``, bounded in bytes."""
    try:
        text = str(exc)
    except Exception as error:  # a hostile __str__ must not end the report
        text = f"<str() raised {type(error).__name__}>"
    text = text.strip()
    # the first line, found and cut without copying a message of any length
    end = min((at for at in (text.find("\n"), text.find("\r")) if at >= 0), default=len(text))
    first = text[: min(end, MAX_EXCEPTION_BYTES)]
    first = first.encode("utf-8", "replace")[:MAX_EXCEPTION_BYTES].decode("utf-8", "ignore")
    if end > len(first):
        first = f"{first} [... {end - len(first):,} more characters cut]"
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _try_lines(task: ParslTask) -> list[str]:
    """One line per try, identical tries in a row folded into one
    (``tries 3-498: same ValueError (496 times)``), at most ``MAX_TRY_LINES`` lines."""
    frames_per_try = list(task.frames) + [()] * (len(task.exceptions) - len(task.frames))
    groups: list[tuple[int, int, str, str]] = []  # first try, last try, text, type name
    for number, (exc, frames) in enumerate(zip(task.exceptions, frames_per_try, strict=True)):
        text = f"{_describe(exc)}{_where(frames)}"
        if groups and groups[-1][2] == text:
            groups[-1] = (groups[-1][0], number, text, groups[-1][3])
        else:
            groups.append((number, number, text, type(exc).__name__))
    lines: list[tuple[int, str]] = []  # (first try of the line, line)
    for first, last, text, name in groups:
        lines.append((first, f"  try {first}: {text}"))
        if last == first + 1:
            lines.append((last, f"  try {last}: {text}"))
        elif last > first:
            lines.append(
                (first + 1, f"  tries {first + 1}-{last}: same {name} ({last - first} times)")
            )
    if len(lines) <= MAX_TRY_LINES:
        return [line for _, line in lines]
    half = MAX_TRY_LINES // 2
    head, tail = lines[:half], lines[-half:]
    low, high = lines[half][0], tail[0][0] - 1
    skipped = f"  [... tries {low}-{high}: {high - low + 1} more failed tries ...]"
    return [line for _, line in head] + [skipped] + [line for _, line in tail]


def _task_lines(task: ParslTask) -> list[str]:
    ids = ", ".join(str(i) for i in task.executor_ids)
    head = f"task {task.id}  {task.app}  {task.state}"
    if task.state == "dep_fail":
        root = f"root: task {task.root}" if task.root is not None else "root: unknown"
        deps = ", ".join(str(d) for d in task.depends_on)
        return [f"{head}  {root}  (depends on {deps})"]
    lines = [
        f"{head}  tries={task.tries}  executor={task.executor}"
        + (f"  executor ids {ids}" if ids else "")
        + (f"  root: task {task.root}" if task.root not in (None, task.id) else "")
    ]
    lines.extend(_try_lines(task))
    if task.frames:
        frames = task.frames[-1][-TRACEBACK_FRAMES:]
        if len(frames) > 1 or (frames and frames[-1].line):
            lines.append("  traceback (innermost last):")
            for frame in frames:
                lines.append(f"    {Path(frame.filename).name}:{frame.lineno} in {frame.name}")
                if frame.line:
                    lines.append(f"      {clip(frame.line.strip(), MAX_LINE_BYTES)}")
    return lines


def _dfk_dirs(run: ParslTestRun) -> list[Path]:
    return [Path(dfk.run_dir) for dfk in run.dfks]


def task_summary(run: ParslTestRun, tasks: list[ParslTask], kept: str) -> list[str]:
    lines = [heading("parsl: tasks")]
    for path in _dfk_dirs(run):
        lines.append(f"run dir: {path} ({kept})")
    if run.shared is not None:  # what held the shared DFK's workers before this test
        lines.extend(f"note: {note}" for note in run.shared.replaced[-3:])
    lines.append(f"{len(tasks)} tasks: {state_counts(tasks) or 'none submitted'}")
    failed = sorted(
        (t for t in tasks if t.failed), key=lambda t: (t.state == "dep_fail", t.run, t.id)
    )
    for task in failed[:MAX_FAILED_SHOWN]:
        prefix = f"[run {task.run}] " if len(run.dfks) > 1 else ""
        first, *rest = _task_lines(task)
        lines.append(prefix + first)
        lines.extend(rest)
    if len(failed) > MAX_FAILED_SHOWN:
        lines.append(f"... and {len(failed) - MAX_FAILED_SHOWN} more failed tasks")
    in_flight = [t for t in tasks if not t.done]
    if in_flight:
        lines.append(f"{len(in_flight)} tasks in flight:")
        now = datetime.datetime.now()
        for task in in_flight[:MAX_FAILED_SHOWN]:
            since = task.try_launched[-1] if task.try_launched else task.submitted
            age = f"  for {(now - since).total_seconds():.1f} s" if since else ""
            ids = ", ".join(str(i) for i in task.executor_ids)
            lines.append(
                f"task {task.id}  {task.app}  {task.state}  executor={task.executor}"
                + (f"  executor ids {ids}" if ids else "")
                + age
            )
        if len(in_flight) > MAX_FAILED_SHOWN:
            lines.append(f"... and {len(in_flight) - MAX_FAILED_SHOWN} more in flight")
    return lines


def _ids(values: Iterable[Any]) -> str:
    return ", ".join(str(v) for v in values)


def excerpts(
    run: ParslTestRun, tasks: list[ParslTask], max_lines: int, extra: Iterable[Path]
) -> list[str]:
    """Excerpts of every relevant log, each under a heading naming the file (relative to
    the run directory) and the tasks it was searched for."""
    lines: list[str] = []
    # the failed tasks, and on a timeout the ones still running
    relevant = [t for t in tasks if t.failed or not t.done]
    dfk_dirs = _dfk_dirs(run)
    bases = [run.run_dir, *dfk_dirs]

    def add(path: Path, about: str, chosen: Iterable[str]) -> None:
        body = list(chosen)
        if body:
            title = f"parsl: {relative(path, bases)}" + (f" ({about})" if about else "")
            lines.append(heading(title))
            lines.extend(body)

    for index, dfk_dir in enumerate(dfk_dirs):
        run_relevant = [t for t in relevant if t.run == index]
        parsl_ids = [t.id for t in run_relevant]
        executor_ids = [i for t in run_relevant for i in t.executor_ids]
        for log in twins(dfk_dir / "parsl.log"):  # and parsl.jsonlog (report/jsonlog.py)
            about = f"task {_ids(parsl_ids)}" if parsl_ids else ""
            add(log, about, excerpt(log, task_pattern(parsl_ids), max_lines).lines)
        wanted = task_pattern(executor_ids, executor=True)
        about = f"executor tasks {_ids(executor_ids)}" if executor_ids else ""
        found = executor_logs(dfk_dir)
        for path in found["interchange"] + found["manager"]:
            add(path, about, excerpt(path, wanted, max_lines).lines)
        for path in found["worker"]:
            if wanted is None:
                continue
            chosen = excerpt(path, wanted, max_lines)
            if chosen.task_lines:  # only the worker logs that ran the failed tasks
                add(path, about, chosen.lines)
        app_failed = all(t.frames and t.frames[-1] for t in run_relevant)
        for path, code in submit_outputs(dfk_dir):
            # LocalProvider writes "-" to the .ec file while the block runs
            ended_badly = code not in (None, "-", "0")
            if (ended_badly or not app_failed) and path.stat().st_size:
                about = f"exit code {code}" if ended_badly else "block still running"
                add(path, about, tail_of(path, max_lines))
    for task in relevant:
        for stream in (task.stdout, task.stderr):
            if stream and os.path.isfile(stream):
                add(Path(stream), f"task {task.id} {task.app}", tail_of(Path(stream), max_lines))
    for path in extra:
        if path.is_file():
            add(path, "", excerpt(path, task_pattern(t.id for t in relevant), max_lines).lines)
    return lines


def failure_report(item: pytest.Item, run: ParslTestRun, max_lines: int, keep: str) -> str:
    """The whole report text for a failed Parsl test."""
    tasks = run.tasks()
    kept = "kept" if keep in ("failed", "all") else "removed after the test: --parslflow-keep none"
    extra: list[Path] = []
    for result in item.ihook.pytest_parslflow_log_files(run_dir=run.run_dir):
        extra.extend(Path(p) for p in result or ())
    failed = [(t.run, t.id) for t in tasks if t.failed]
    lines = task_summary(run, tasks, kept)
    # -- on a timeout, where the apps still running are stuck (report/stacks.py) --
    lines += thread_stacks(run, tasks, heading)
    # --
    seen = monitoring_view(run, failed)
    if seen:
        lines += [heading(f"parsl: monitoring.db ({len(failed)} failed tasks)"), *seen]
    # -- what Parsl's monitoring processes logged as errors (monitoring.py) --
    for name, found in monitoring_errors(run, max_lines):
        lines += [heading(f"parsl: {name} (monitoring errors)"), *found]
    # --
    lines += excerpts(run, tasks, max_lines, extra)
    return bounded(lines, MAX_REPORT_BYTES)


def bounded(lines: list[str], limit: int) -> str:
    """``lines`` as one text of at most about ``limit`` bytes: the lines past it are
    dropped, with a last line saying how many and where the whole logs are."""
    size = 0
    for index, line in enumerate(lines):
        size += len(line.encode("utf-8", "replace")) + 1
        if size > limit:
            rest = len(lines) - index
            marker = (
                f"[... report cut at {limit:,} bytes: {rest} more line"
                f"{'s' if rest != 1 else ''}; the run directory holds the whole logs ...]"
            )
            return "\n".join([*lines[:index], marker]) + "\n"
    return "\n".join(lines) + "\n"


def summary_data(run: ParslTestRun, kept: Path | None) -> dict[str, Any]:
    """Plain figures for the session summary (they travel to xdist's controller)."""
    tasks = run.tasks()
    return {
        "tasks": len(tasks),
        "retried": sum(1 for t in tasks if t.tries > 1),
        "memo": sum(1 for t in tasks if t.from_memo),
        "failed": sum(1 for t in tasks if t.failed),
        "kept": os.fspath(kept) if kept else None,
    }
