"""Retries: surviving transient failures, and not retrying the ones that are not.

Tutorial section: "Retries". ``@pytest.mark.parsl(retries=N)`` sets Parsl's
``Config.retries``; ``retry_handler`` sets its ``Config.retry_handler``, a
callable ``(exception, task_record) -> float`` whose result is the cost of
that failure (the task is retried while the summed cost stays within
``retries``). ``parsl_faults`` makes failures deterministic: a copy of an app
that fails on its first N tries, or loses its worker on a chosen try. The
``parsl_tasks`` records show what each task went through: ``tries``, the
exception of every failed try, the executor ids of every try.
"""

from __future__ import annotations

from pathlib import Path

import parsl
import pytest
from parsl.data_provider.files import File
from parsl.executors.high_throughput.errors import WorkerLost
from pytest_parslflow import ParslFaults, ParslTasks

from kmerscreen import MirrorUnavailable, count_kmers, fetch_adapter_panel, retry_transient

MIRROR_DOWN = MirrorUnavailable("mirror did not answer")


@pytest.mark.parsl(retries=2)
def test_transient_failures_are_retried(
    tmp_path: Path, parsl_faults: ParslFaults, parsl_tasks: ParslTasks
) -> None:
    flaky = parsl_faults.fail(fetch_adapter_panel, tries=2, exception=MIRROR_DOWN)

    panel = flaky(str(tmp_path), k=6).result()

    assert "AGATCG" in panel  # the third try succeeded; the caller never saw the failures
    (task,) = parsl_tasks
    assert (task.state, task.tries) == ("exec_done", 3)
    assert [str(e) for e in task.exceptions] == ["mirror did not answer"] * 2


@pytest.mark.parsl(retries=1)
def test_retries_run_out(
    tmp_path: Path, parsl_faults: ParslFaults, parsl_tasks: ParslTasks
) -> None:
    flaky = parsl_faults.fail(fetch_adapter_panel, tries=5, exception=MIRROR_DOWN)

    with pytest.raises(MirrorUnavailable):
        flaky(str(tmp_path), k=6).result()
    (task,) = parsl_tasks
    assert (task.state, task.tries, len(task.exceptions)) == ("failed", 2, 2)


@pytest.mark.parsl(retries=3)
@pytest.mark.parametrize(
    "tries_of_bad_input",
    [
        pytest.param(4, id="no_handler"),
        # A mark on a parameter adds to the test's marks: this case gets the handler.
        pytest.param(
            1, id="retry_transient", marks=pytest.mark.parsl(retry_handler=retry_transient)
        ),
    ],
)
def test_retry_handler_spends_retries_on_transient_failures_only(
    tries_of_bad_input: int, tmp_path: Path, parsl_faults: ParslFaults, parsl_tasks: ParslTasks
) -> None:
    # A missing input file fails the same way on every try; a flaky mirror does not.
    bad_input = count_kmers(6, inputs=[File(str(tmp_path / "never_written.seq"))])
    flaky = parsl_faults.fail(fetch_adapter_panel, tries=2, exception=MIRROR_DOWN)
    panel = flaky(str(tmp_path), k=6)
    parsl_tasks.wait()

    assert panel.exception() is None and parsl_tasks[panel.tid].tries == 3
    assert isinstance(bad_input.exception(), FileNotFoundError)
    assert parsl_tasks[bad_input.tid].tries == tries_of_bad_input


@pytest.mark.htex
@pytest.mark.parsl(executor="htex", retries=1, retry_handler=retry_transient)
def test_lost_worker_is_retried(
    tmp_path: Path, parsl_faults: ParslFaults, parsl_tasks: ParslTasks
) -> None:
    """A node crash mid-task (an out-of-memory kill, a preempted node): on HTEX the
    worker process really dies, Parsl reports WorkerLost, and the retry runs the task
    on a fresh worker."""
    crashing = parsl_faults.lose_worker(fetch_adapter_panel, on_try=1)

    panel = crashing(str(tmp_path), k=6).result()

    assert "AGATCG" in panel
    (task,) = parsl_tasks
    assert (task.state, task.tries) == ("exec_done", 2)
    assert task.executor in parsl.dfk().executors  # htex_local, or a site config's label
    assert isinstance(task.exceptions[0], WorkerLost)
    assert len(task.executor_ids) == 2  # one HTEX task per try
