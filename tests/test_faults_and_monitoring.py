"""Deterministic fault injection, and monitoring=True with parsl_monitoring."""

from __future__ import annotations

import pytest
from conftest import BOTH_EXECUTORS

APPS = """
import os
import pytest
from parsl import python_app

@python_app
def measure(i):
    if i == 2:
        raise ValueError("sensor 2 offline")
    return i
"""


@BOTH_EXECUTORS
def test_fail_first_tries_then_succeed_or_run_out(
    pytester: pytest.Pytester, run_parslflow, executor: str
) -> None:
    pytester.makepyfile(
        APPS
        + """
@pytest.mark.parsl(retries=2)
def test_two_injected_failures_are_retried(parsl_faults, parsl_tasks):
    flaky = parsl_faults.fail(measure, tries=2, exception=OSError("disk full"))
    assert [flaky(i).result() for i in (0, 1)] == [0, 1]
    for task in parsl_tasks:
        assert task.tries == 3 and task.state == "exec_done" and task.app == "measure"
        assert [str(e) for e in task.exceptions] == ["disk full", "disk full"]

@pytest.mark.parsl(retries=1)
def test_retries_run_out(parsl_faults, parsl_tasks):
    flaky = parsl_faults.fail(measure, tries=2)
    with pytest.raises(Exception, match="injected failure of try 2 of measure"):
        flaky(0).result()
    assert parsl_tasks[0].state == "failed" and parsl_tasks[0].tries == 2

@pytest.mark.parsl(retries=1)
def test_tries_counted_by_argument_values_not_identities(parsl_faults, parsl_tasks, tmp_path):
    from parsl.data_provider.files import File
    (tmp_path / "d").write_text("abc")

    @python_app
    def size(inputs=()):
        return len(open(inputs[0].filepath).read())

    lost = parsl_faults.lose_worker(size, on_try=1)
    assert lost(inputs=[File(str(tmp_path / "d"))]).result() == 3
    assert parsl_tasks[0].tries == 2

@pytest.mark.parsl(retries=1)
def test_lost_worker_on_first_try(parsl_faults, parsl_tasks):
    lost = parsl_faults.lose_worker(measure, on_try=1)
    assert lost(5).result() == 5
    (task,) = parsl_tasks
    assert task.tries == 2 and type(task.exceptions[0]).__name__ == "WorkerLost"
"""
    )
    run_parslflow("-v", f"--parslflow-executor={executor}").assert_outcomes(passed=4)


@BOTH_EXECUTORS
def test_monitoring_database_and_report(
    pytester: pytest.Pytester, run_parslflow, executor: str
) -> None:
    pytester.makepyfile(
        APPS
        + """
@pytest.mark.parsl(monitoring=True)
def test_every_task_has_a_row(parsl_monitoring, parsl_tasks, parsl_run_dir):
    for i in range(4):
        measure(i)
    parsl_tasks.wait()
    rows = parsl_monitoring.tasks()
    assert parsl_monitoring.db_path == parsl_run_dir / "monitoring.db"
    assert [r["task_status_name"] for r in rows] == ["exec_done", "exec_done", "failed", "exec_done"]
    assert [r["task_func_name"] for r in rows] == ["measure"] * 4
    (workflow,) = parsl_monitoring.query("SELECT * FROM workflow")
    assert workflow["tasks_failed_count"] == 1
    assert workflow["workflow_name"].endswith("::test_every_task_has_a_row")

@pytest.mark.parsl(monitoring=True)
def test_monitored_failure():
    measure(2).result()

@pytest.mark.parsl
def test_monitoring_fixture_without_monitoring(parsl_monitoring):
    pass

def test_no_monitoring_process_outlives_its_test():
    import psutil
    from pytest_parslflow.htex.warm import warm_parent_pids
    # the session's HTEX warm parent is the session's own
    children = [
        p for p in psutil.Process().children(recursive=True)
        if "resource_tracker" not in " ".join(p.cmdline()) and p.pid not in warm_parent_pids()
    ]
    assert children == []
"""
    )
    result = run_parslflow("-v", f"--parslflow-executor={executor}")
    result.assert_outcomes(passed=2, failed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*- parsl: monitoring.db (1 failed tasks) -*",
            "task 0  measure  last status failed  tries=1  fail_count=1  *",
        ]
    )
    result.stdout.fnmatch_lines(["*parsl_monitoring needs @pytest.mark.parsl(monitoring=True)"])
