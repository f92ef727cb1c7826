"""Deliberately failing tests that show the failure report for each kind of failure.

Every test here fails, on purpose: read the report under each one. Not collected
by the main job (the file name does not start with ``test_``); run it on purpose:

    pytest -p parslflow examples/failing/failing_reports.py

1. an app raises on every try, and the task that depends on it is a ``dep_fail``;
2. a bash app exits non-zero: the report adds its stdout and stderr files;
3. an HTEX worker is lost mid-task: the report adds ``interchange.log``,
   ``manager.log`` and the ``worker_N.log`` that ran the task;
4. a test times out while an app is still running (``timeout=3``).

Tests 3 and 4 start an HTEX (about a second each, plus the 3 s timeout).

Tutorial sections: "Local Logs" (each report quotes the logs of that layout that
explain its failure) and "Exceptions". The README's report excerpts come from
this file, run with ``--parslflow-log-lines 12``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from parsl import bash_app, python_app
from pytest_parslflow import ParslFaults


@python_app
def normalise(sample: str) -> str:
    return sample.lower()


@python_app
def align(sample: str) -> str:
    raise ValueError(f"reference genome missing for {sample}")


@python_app
def call_variants(alignment: str) -> str:
    return f"variants of {alignment}"


@bash_app
def index_reference(stdout: str | None = None, stderr: str | None = None) -> str:
    return "echo 'indexing reference'; echo 'bwa: reference.fa: No such file' >&2; exit 2"


@python_app
def assemble(sample: str) -> str:
    return f"contigs of {sample}"


@python_app
def polish(contigs: str, seconds: float = 10.0) -> str:
    time.sleep(seconds)  # a stand-in for a tool waiting on a stale NFS lock
    return f"polished {contigs}"


@pytest.mark.parsl(retries=1)
def test_app_fails_after_retries() -> None:
    """An app raises on every try; the task that depends on it is a dep_fail."""
    samples = [normalise(s) for s in ("S1", "S2", "S3")]
    variants = call_variants(align("S4"))
    assert [s.result() for s in samples] == ["s1", "s2", "s3"]
    variants.result()


@pytest.mark.parsl
def test_bash_app_exits_non_zero(tmp_path: Path) -> None:
    """A bash app exits 2: the report shows the exit code and its stderr file."""
    index_reference(stdout=str(tmp_path / "index.out"), stderr=str(tmp_path / "index.err")).result()


@pytest.mark.parsl(executor="htex")
def test_worker_lost_mid_task(parsl_faults: ParslFaults) -> None:
    """The assembly needs more memory than the node has: the kernel's out-of-memory
    killer ends the worker process (simulated by parsl_faults), and Parsl reports
    WorkerLost. Without retries the task fails."""
    oom_killed = parsl_faults.lose_worker(assemble, on_try=1)
    oom_killed("S1").result()


@pytest.mark.parsl(executor="htex", timeout=3)
def test_times_out_while_an_app_runs() -> None:
    """The test's time limit ends it while an app still runs.

    On HTEX the app runs in a worker process that the plugin's cleanup ends. On the
    thread executor the app would run in a thread of the test process itself, which
    nothing can interrupt: the test would still fail at the limit, and the leak guard
    would name the stuck thread, but the thread sleeps on.
    """
    polish(assemble("S1"), seconds=10).result()
