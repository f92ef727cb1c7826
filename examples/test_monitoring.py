"""Monitoring: run the screen with Parsl's monitoring on and query what it recorded.

Tutorial section: "Monitoring". ``@pytest.mark.parsl(monitoring=True)`` adds
Parsl's ``MonitoringHub``, which records every task's states and tries in an
SQLite database in the test's run directory. ``parsl_monitoring`` reads it:
``.tasks()`` gives one row per task (Parsl's task table plus its last status,
``task_status_name``, and its ``tries``), ``.query(sql)`` runs any SQL. The
database is complete only once the DataFlowKernel ends, so the first read ends
the test's Parsl run: submit everything before reading.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_parslflow import ParslMonitoring

from kmerscreen import SampleSpec, screen_samples


@pytest.mark.parsl(monitoring=True, retries=1)
def test_monitoring_records_every_task_and_the_retry(
    samples: list[SampleSpec], tmp_path: Path, parsl_monitoring: ParslMonitoring
) -> None:
    screen_samples(samples, tmp_path, mirror_failures=1).report.result()

    rows = parsl_monitoring.tasks()
    assert {row["task_status_name"] for row in rows} == {"exec_done"}
    (fetch,) = [row for row in rows if row["task_func_name"] == "fetch_adapter_panel"]
    assert (fetch["tries"], fetch["task_fail_count"]) == (2, 1)

    # Any SQL: how many tasks each step of the workflow ran, and how long they took.
    steps = parsl_monitoring.query(
        """
        SELECT task_func_name AS app, COUNT(*) AS tasks,
               SUM(julianday(task_time_returned) - julianday(task_time_invoked)) * 86400
                 AS seconds
          FROM task GROUP BY task_func_name ORDER BY seconds DESC
        """
    )
    per_app = {step["app"]: step["tasks"] for step in steps}
    assert per_app["simulate_reads"] == per_app["count_kmers"] == len(samples)
    assert per_app["merge_counts"] == per_app["summarise"] == 1
    assert all(step["seconds"] >= 0 for step in steps)
