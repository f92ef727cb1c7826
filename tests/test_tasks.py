"""parsl_tasks records every task; parsl_restart resumes from checkpoints; lazy failure."""

from __future__ import annotations

import pytest
from conftest import BOTH_EXECUTORS, FLAKY_APP


@BOTH_EXECUTORS
def test_records_of_retries_failures_and_dependencies(
    pytester: pytest.Pytester, run_parslflow, executor: str
) -> None:
    pytester.makepyfile(
        FLAKY_APP
        + """
import pytest
from parsl import python_app

@python_app
def after(x):
    return x

@pytest.mark.parsl(retries=2)
def test_two_failed_tries_then_success(tmp_path, parsl_tasks):
    assert flaky(str(tmp_path / "n"), 2).result() == 3
    (task,) = parsl_tasks
    assert (task.id, task.run, task.app, task.state) == (0, 0, "flaky", "exec_done")
    assert task.tries == 3
    assert [str(e) for e in task.exceptions] == ["transient failure 1", "transient failure 2"]
    assert all(isinstance(e, ValueError) for e in task.exceptions)
    assert task.executor in ("threads", "htex_local") and not task.from_memo
    assert task.duration is not None and parsl_tasks[0] == task

@pytest.mark.parsl(retries=1)
def test_retries_run_out(tmp_path, parsl_tasks):
    future = after(flaky(str(tmp_path / "n"), 2))
    future.exception()
    assert len(parsl_tasks) == 2
    assert [t.state for t in parsl_tasks] == ["failed", "dep_fail"]
    failed, dependent = parsl_tasks
    assert failed.tries == 2 and len(failed.exceptions) == 2
    assert dependent.tries == 0 and dependent.exceptions == ()
    assert dependent.depends_on == (0,) and dependent.root == 0
    assert parsl_tasks.failed == [failed, dependent]
    assert parsl_tasks.by_app("after") == [dependent]
    with pytest.raises(KeyError, match="no task 7"):
        parsl_tasks[7]
"""
    )
    run_parslflow("-v", f"--parslflow-executor={executor}").assert_outcomes(passed=2)


@BOTH_EXECUTORS
def test_a_join_app_failed_by_an_inner_app(
    pytester: pytest.Pytester, run_parslflow, executor: str
) -> None:
    """Parsl fails a join app with a JoinError outside any try: the record keeps it and
    names the inner task that caused it, and so does everything downstream."""
    pytester.makepyfile(
        """
import pytest
from parsl import join_app, python_app
from parsl.dataflow.errors import JoinError

@python_app
def measure(x):
    if x == 2:
        raise ValueError(f"sensor {x} offline")
    return x

@join_app
def survey(n):
    return [measure(i) for i in range(n)]

@python_app
def total(values):
    return sum(values)

@pytest.mark.parsl
def test_records(parsl_tasks):
    total(survey(3)).exception()
    outer = parsl_tasks.by_app("survey")[0]
    (inner,) = [t for t in parsl_tasks.by_app("measure") if t.state == "failed"]
    (dependent,) = parsl_tasks.by_app("total")
    assert outer.state == "failed" and outer.tries == 1
    assert [type(e) for e in outer.exceptions] == [JoinError]
    assert outer.root == inner.id and dependent.root == inner.id
    assert inner.root is None and str(inner.exceptions[0]) == "sensor 2 offline"

@pytest.mark.parsl
def test_report():
    assert total(survey(3)).result() == 3
"""
    )
    result = run_parslflow("-v", f"--parslflow-executor={executor}")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "task 0  survey  failed  tries=1  executor=_parsl_internal  root: task 4",
            "  try 0: JoinError: Join failure for task 0*",
            "task 4  measure  failed  tries=1  executor=*",
            "  try 0: ValueError: sensor 2 offline*",
            "task 1  total  dep_fail  root: task 4  (depends on 0)",
        ]
    )


@BOTH_EXECUTORS
def test_lazy_failure_and_memoization(
    pytester: pytest.Pytester, run_parslflow, executor: str
) -> None:
    pytester.makepyfile(
        """
import pytest
from parsl import python_app

@python_app
def measure(i):
    if i in (2, 5, 7):
        raise RuntimeError(f"sensor {i} offline")
    return i * 10

@python_app(cache=True)
def calibrate(x):
    return x + 1

@pytest.mark.parsl
def test_one_branch_fails_the_rest_completes(parsl_tasks):
    for i in range(10):
        measure(i)
    parsl_tasks.wait()
    assert len(parsl_tasks.succeeded) == 7
    assert sorted(t.id for t in parsl_tasks.failed) == [2, 5, 7]
    assert {str(t.exceptions[0]) for t in parsl_tasks.failed} == {
        "sensor 2 offline", "sensor 5 offline", "sensor 7 offline"}

@pytest.mark.parsl(app_cache=True)
def test_memoized(parsl_tasks):
    assert calibrate(1).result() == 2
    assert calibrate(1).result() == 2
    first, second = parsl_tasks
    assert (first.state, first.from_memo, first.tries) == ("exec_done", False, 1)
    assert (second.state, second.from_memo, second.tries) == ("memo_done", True, 0)
    assert parsl_tasks.memoized == [second]
"""
    )
    run_parslflow("-v", f"--parslflow-executor={executor}").assert_outcomes(passed=2)


RESTART = """
import pathlib
import parsl
import pytest
from parsl import python_app

@python_app(cache=True)
def simulate(side_effects, step):
    with open(side_effects, "a") as f:
        f.write(f"{step}\\n")
    return step * step

@pytest.mark.parsl(checkpoint=MODE)
def test_restart_reruns_nothing(tmp_path, parsl_dfk, parsl_restart, parsl_tasks, parsl_run_dir):
    side = tmp_path / "ran.txt"
    assert [simulate(str(side), s).result() for s in range(3)] == [0, 1, 4]
    if MODE == "manual":
        parsl_restart.checkpoint()
    new_dfk = parsl_restart()
    assert new_dfk is parsl.dfk() and new_dfk is not parsl_dfk
    assert new_dfk.run_dir == str(parsl_run_dir / "001")
    assert [simulate(str(side), s).result() for s in range(3)] == [0, 1, 4]
    assert side.read_text().splitlines() == ["0", "1", "2"]  # no body ran twice
    second_run = [t for t in parsl_tasks if t.run == 1]
    assert [t.state for t in second_run] == ["memo_done"] * 3
    assert all(t.from_memo and t.tries == 0 for t in second_run)
    assert len(parsl_tasks) == 6 and parsl_tasks[0].run == 1
"""


@pytest.mark.parametrize("mode", ["task_exit", "periodic", "dfk_exit", "manual"])
@BOTH_EXECUTORS
def test_restart_reuses_checkpoints(
    pytester: pytest.Pytester, run_parslflow, mode: str, executor: str
) -> None:
    source = RESTART.replace(
        "checkpoint=MODE",
        f"checkpoint={mode!r}" + (", checkpoint_period='00:00:01'" if mode == "periodic" else ""),
    ).replace("MODE ==", f"{mode!r} ==")
    pytester.makepyfile(source)
    run_parslflow("-v", f"--parslflow-executor={executor}").assert_outcomes(passed=1)


def test_restart_without_checkpoints_is_a_clear_error(
    pytester: pytest.Pytester, run_parslflow
) -> None:
    pytester.makepyfile(
        """
import pytest

@pytest.mark.parsl
def test_restart(parsl_restart):
    parsl_restart()
"""
    )
    result = run_parslflow()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*ParslRestartError: test_restart_without_checkpoints_is_a_clear_error.py::test_restart: parsl_restart: this test's DFK has no checkpoint mode*checkpoint='task_exit'*"
        ]
    )


def test_lookups_by_id_and_by_future_take_no_snapshot(
    pytester: pytest.Pytester, run_parslflow
) -> None:
    """``parsl_tasks[future.tid]`` reads one record (it was a scan of every task, so a
    loop of lookups was quadratic); ``parsl_tasks[future]`` finds the task of any run."""
    pytester.makepyfile(
        """
import pytest
import pytest_parslflow.tasks as tasks_module
from parsl import python_app

@python_app
def ok(i):
    return i

@python_app
def boom():
    raise ValueError("boom")

@python_app
def after(x):
    return x

@pytest.mark.parsl
def test_lookups(parsl_tasks, monkeypatch):
    futures = [ok(i) for i in range(50)]
    failed = after(boom())
    parsl_tasks.wait()
    seventh = parsl_tasks[futures[7].tid]

    def no_snapshot(self):
        pytest.fail("a lookup built the records of every task")

    monkeypatch.setattr(tasks_module.TaskRecorder, "snapshot", no_snapshot)
    assert parsl_tasks[futures[7].tid] is seventh
    assert parsl_tasks[futures[8]].id == futures[8].tid
    assert parsl_tasks[failed].state == "dep_fail" and parsl_tasks[failed].root == 50
    with pytest.raises(TypeError, match="takes a task id"):
        parsl_tasks["7"]
    monkeypatch.undo()
    assert len(parsl_tasks.failed) == 2
"""
    )
    run_parslflow().assert_outcomes(passed=1)
