"""``monitoring=True``: Parsl's MonitoringHub writing its SQLite database into the test's
run directory, and the ``parsl_monitoring`` fixture that reads it."""

from __future__ import annotations

import inspect
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from parsl.monitoring import MonitoringHub

    from pytest_parslflow.lifecycle import ParslTestRun

INSTALL_HINT = "pip install 'pytest-parslflow[monitoring]' (Parsl's monitoring needs SQLAlchemy)"


class MonitoringUnavailable(Exception):
    """Parsl's monitoring extras are not installed; the message says what to install."""


def make_hub() -> MonitoringHub:
    """A MonitoringHub for a test: the database goes to the run directory (Parsl's default,
    ``<run_dir>/monitoring.db``); no periodic resource sampling, only start and end."""
    try:
        import sqlalchemy  # noqa: F401
    except ImportError:
        raise MonitoringUnavailable(f"monitoring=True needs {INSTALL_HINT}") from None
    from parsl.monitoring import MonitoringHub

    kwargs: dict[str, Any] = {"resource_monitoring_interval": 0}
    if "hub_address" in inspect.signature(MonitoringHub.__init__).parameters:
        hub_address = inspect.signature(MonitoringHub.__init__).parameters["hub_address"]
        if hub_address.default is inspect.Parameter.empty:  # Parsl before 2025.4
            kwargs["hub_address"] = "127.0.0.1"
    return MonitoringHub(**kwargs)


class ParslMonitoring:
    """Read access to a test's monitoring database.

    Parsl writes the database from a separate process and completes it only when
    the DataFlowKernel is cleaned up, so the first read ends the test's Parsl run:
    submit every task before reading.
    """

    def __init__(self, run: ParslTestRun) -> None:
        self._run = run

    @property
    def db_path(self) -> Path:
        """The SQLite file."""
        return self._run.run_dir / "monitoring.db"

    def finish(self) -> None:
        """Wait for every task, then end the test's Parsl run, so that the database is
        complete."""
        from pytest_parslflow.lifecycle import cleanup_dfk

        for dfk in self._run.dfks:
            if not dfk.cleanup_called:
                dfk.wait_for_current_tasks()
            error = cleanup_dfk(dfk)
            if error is not None:
                raise error

    def query(self, sql: str, *parameters: object) -> list[dict[str, Any]]:
        """Rows of ``sql`` as dicts (column name to value)."""
        self.finish()
        connection = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)
        try:
            connection.row_factory = sqlite3.Row
            return [dict(row) for row in connection.execute(sql, parameters)]
        finally:
            connection.close()

    def tasks(self) -> list[dict[str, Any]]:
        """One dict per task: Parsl's task-table columns and the task's last status
        (``task_status_name``) and how many tries it had (``tries``)."""
        return self.query(
            """
            SELECT task.*,
                   (SELECT status.task_status_name FROM status
                     WHERE status.task_id = task.task_id AND status.run_id = task.run_id
                     ORDER BY status.timestamp DESC, status.rowid DESC LIMIT 1)
                     AS task_status_name,
                   (SELECT COUNT(*) FROM try
                     WHERE try.task_id = task.task_id AND try.run_id = task.run_id)
                     AS tries
              FROM task ORDER BY task.run_id, task.task_id
            """
        )


def monitoring_view(run: ParslTestRun, task_ids: list[tuple[int, int]]) -> list[str]:
    """What monitoring saw of the given (run, task id) pairs, one line per task; the
    run is finished first so that the database is complete."""
    monitoring = ParslMonitoring(run)
    if not any(dfk.monitoring is not None for dfk in run.dfks) or not task_ids:
        return []
    try:
        rows = monitoring.tasks()
    except (sqlite3.Error, OSError) as exc:
        return [f"(monitoring database {monitoring.db_path} not readable: {exc})"]
    run_ids = [dfk.run_id for dfk in run.dfks]
    wanted = {(run_ids[index], task_id) for index, task_id in task_ids if index < len(run_ids)}
    lines = []
    for row in rows:
        if (row["run_id"], row["task_id"]) in wanted:
            lines.append(
                f"task {row['task_id']}  {row['task_func_name']}  last status "
                f"{row['task_status_name']}  tries={row['tries']}  "
                f"fail_count={row['task_fail_count']}  invoked {row['task_time_invoked']}  "
                f"returned {row['task_time_returned']}"
            )
    return lines or ["(monitoring recorded none of the failed tasks)"]


#: the logs of Parsl's monitoring processes in a DFK's run directory (text or JSON)
MONITORING_LOGS = (
    "database_manager.log",
    "database_manager.jsonlog",
    "monitoring_*.log",
    "monitoring_*.jsonlog",
)
_LEVELS = re.compile(r"\b(ERROR|CRITICAL)\b")
# a new record: Parsl's text format (epoch, then date), set_file_logger's (date first, as
# the database manager writes) or its JSON format
_RECORD = re.compile(r"^(\d+\.\d+ \d{4}-\d\d-\d\d |\d{4}-\d\d-\d\d |\{)")
# set_file_logger's format: "2026-11-29 20:57:23.287 parsl.x:603 [ERROR] [thread 1] text"
_FILE_LOGGER = re.compile(r"^\d{4}-\d\d-\d\d (\d\d:\d\d:\d\d)\S* \S+ \[(\w+)\] \[[^\]]*\] (.*)$")


def monitoring_errors(run: ParslTestRun, max_lines: int) -> list[tuple[str, list[str]]]:
    """ERROR and CRITICAL lines (with the traceback lines after them) that Parsl's
    monitoring processes (database manager, router, radios) logged, per file relative to
    the run directory; at most ``max_lines`` lines a file. Parsl otherwise loses
    monitoring data without a word where the test can see it.

    Where no task is in flight the test's run is finished first (as for
    :func:`monitoring_view`), so that the monitoring processes have handled every message.
    """
    from pytest_parslflow.report.jsonlog import readable
    from pytest_parslflow.report.logs import relative

    if not any(dfk.monitoring is not None for dfk in run.dfks):
        return []
    if run.shared is None and all(task.done for task in run.tasks()):
        ParslMonitoring(run).finish()
    found: list[tuple[str, list[str]]] = []
    for dfk in run.dfks:
        if dfk.monitoring is None:
            continue
        folder = Path(dfk.run_dir)
        paths = sorted({p for pattern in MONITORING_LOGS for p in folder.glob(pattern)})
        for path in paths:
            chosen: list[str] = []
            more = 0
            in_error = False
            try:
                handle = path.open(encoding="utf-8", errors="replace")
            except OSError:
                continue
            with handle:
                for raw in handle:
                    line = raw.rstrip("\n")
                    if _RECORD.match(line):
                        text = readable(line)
                        level = text.split()[1] if text else ""
                        in_error = (
                            level in ("ERROR", "CRITICAL")
                            if text
                            else bool(_LEVELS.search(line[:200]))
                        )
                    if not in_error:
                        continue
                    if len(chosen) < max_lines:
                        chosen.append(_shown(line, readable))
                    else:
                        more += 1
            if chosen:
                if more:
                    chosen.append(f"[... {more} more error lines ...]")
                found.append((relative(path, [run.run_dir, folder]), chosen))
    return found


def _shown(line: str, readable: Callable[[str], str | None]) -> str:
    from pytest_parslflow.report.logs import _decode

    text = readable(line)
    if text is not None:
        return text
    file_logger = _FILE_LOGGER.match(line)
    if file_logger:
        time, level, message = file_logger.groups()
        return f"{time} {level:<7} {message}"
    return _decode(line.encode())
