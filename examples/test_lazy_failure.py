"""Lazy failure: one branch of a fan-out fails, every other branch completes.

Tutorial section: "Lazy Failure". Parsl does not stop a workflow at its first
failure: tasks that do not depend on the failed one keep running, and only its
dependents fail (``dep_fail``). ``parsl_tasks.wait()`` waits for everything
the test submitted, failures included, so a test can assert on every outcome
at once with ``.succeeded``, ``.failed`` and ``.by_app()``.
"""

from __future__ import annotations

import pytest
from parsl.dataflow.errors import DependencyError
from pytest_parslflow import ParslTasks

from heatsweep import NumericalInstability, completed, sweep

#: r = dt / dx**2 is 0.08 ... 0.8: the last two time steps break the stability limit 0.5
TIME_STEPS = [0.0002, 0.0004, 0.0008, 0.0012, 0.0016, 0.002]
UNSTABLE = [0.0016, 0.002]


@pytest.mark.parsl(workers=4)
def test_unstable_branches_fail_the_rest_complete(parsl_tasks: ParslTasks) -> None:
    rows = sweep(TIME_STEPS)
    parsl_tasks.wait()  # every branch has ended, failed or not

    # 6 simulations + 6 post-processing steps; 2 simulations failed, their 2 rows never ran.
    assert len(parsl_tasks) == 12
    assert len(parsl_tasks.succeeded) == 8
    assert sorted(t.state for t in parsl_tasks.failed) == ["dep_fail"] * 2 + ["failed"] * 2
    for task in parsl_tasks.by_app("simulate"):
        if task.failed:
            assert isinstance(task.exceptions[-1], NumericalInstability)
    # Each dep_fail names the simulation that caused it.
    failed_ids = {t.id for t in parsl_tasks.failed if t.state == "failed"}
    assert {t.root for t in parsl_tasks.by_app("peak_decay") if t.failed} == failed_ids

    # The workflow itself keeps what succeeded: the stable part of the sweep.
    table = completed(rows)
    assert sorted(table) == [dt for dt in TIME_STEPS if dt not in UNSTABLE]
    assert all(0.9 < float(table[dt].split(",")[1]) < 1.0 for dt in table)


@pytest.mark.parsl
def test_failure_is_raised_only_by_the_failed_branch() -> None:
    rows = sweep([0.0004, 0.002])

    assert rows[0.0004].result() == "0.0004,0.9545"  # unaffected by its failing neighbour
    with pytest.raises(DependencyError) as failure:
        rows[0.002].result()
    assert isinstance(failure.value.__cause__, NumericalInstability)
