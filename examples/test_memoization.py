"""Memoization and checkpointing: reuse results within a run and across runs.

Tutorial section: "Memoization and checkpointing". An app declared with
``cache=True`` is keyed by its function and arguments. With app caching on
(the marker's ``app_cache=True``, the default) a repeated call in the same run
is served from memory (state ``memo_done``); with a checkpoint mode, results
are also written to ``runinfo/NNN/checkpoint/`` and a later run reuses them.
``parsl_restart()`` plays that later run: it ends the test's DataFlowKernel as
a crash would and loads a fresh one in the same run directory. The solver's
ledger file records every run of its body, so "nothing ran twice" is a fact
the test can check, not a hope.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_parslflow import ParslRestart, ParslTasks

from heatsweep import completed, simulate, sweep

STABLE = [0.0002, 0.0004, 0.0008]
UNSTABLE = [0.002]


def ledger_lines(ledger: Path) -> list[str]:
    return ledger.read_text().splitlines() if ledger.exists() else []


@pytest.mark.parsl(app_cache=True)
def test_app_cache_reuses_a_result_within_a_run(tmp_path: Path, parsl_tasks: ParslTasks) -> None:
    ledger = tmp_path / "ledger.txt"
    first = simulate(0.0004, ledger=str(ledger)).result()
    # The same call again, after the first finished: served from the app cache.
    again = simulate(0.0004, ledger=str(ledger)).result()

    assert again == first
    assert ledger_lines(ledger) == ["0.0004"]  # the body ran once
    assert [t.state for t in parsl_tasks] == ["exec_done", "memo_done"]
    assert [t.tries for t in parsl_tasks] == [1, 0]


@pytest.mark.parsl(app_cache=False)
def test_without_app_cache_every_call_runs(tmp_path: Path, parsl_tasks: ParslTasks) -> None:
    ledger = tmp_path / "ledger.txt"
    simulate(0.0004, ledger=str(ledger)).result()
    simulate(0.0004, ledger=str(ledger)).result()

    assert ledger_lines(ledger) == ["0.0004", "0.0004"]
    assert not parsl_tasks.memoized


@pytest.mark.parametrize(
    "mode",
    [
        pytest.param("task_exit", marks=pytest.mark.parsl(checkpoint="task_exit")),
        pytest.param("dfk_exit", marks=pytest.mark.parsl(checkpoint="dfk_exit")),
    ],
)
def test_restart_from_checkpoint_reruns_nothing(
    mode: str, tmp_path: Path, parsl_restart: ParslRestart, parsl_tasks: ParslTasks
) -> None:
    ledger = tmp_path / "ledger.txt"
    before = completed(sweep(STABLE, ledger))

    parsl_restart()  # a new DataFlowKernel (runinfo/001) that loads runinfo/000's checkpoint
    after = completed(sweep(STABLE, ledger))

    assert after == before
    assert sorted(ledger_lines(ledger)) == sorted(map(str, STABLE))  # no solver ran twice
    rerun = [t for t in parsl_tasks.by_app("simulate") if t.run == 1]
    assert [t.state for t in rerun] == ["memo_done"] * len(STABLE)
    # peak_decay has no cache=True: it runs again, cheaply, on the reused results.
    assert {t.state for t in parsl_tasks.by_app("peak_decay") if t.run == 1} == {"exec_done"}


@pytest.mark.parsl(checkpoint="task_exit")
def test_restart_reruns_only_what_failed(tmp_path: Path, parsl_restart: ParslRestart) -> None:
    """Checkpoints hold results, not failures: resuming a sweep re-runs exactly the
    branches that failed (say, after a fix), and reuses the rest."""
    ledger = tmp_path / "ledger.txt"
    completed(sweep(STABLE + UNSTABLE, ledger))
    parsl_restart()
    completed(sweep(STABLE + UNSTABLE, ledger))

    ran = ledger_lines(ledger)
    assert sorted(set(ran)) == sorted(map(str, STABLE + UNSTABLE))
    assert [line for line in ran if ran.count(line) > 1] == ["0.002", "0.002"]
