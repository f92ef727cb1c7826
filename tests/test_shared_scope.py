"""scope="module" and "session": one DFK for many tests, records and reports per test."""

from __future__ import annotations

import pytest

SHARED_MODULE = """
import os
import parsl
import pytest
from parsl import python_app

@python_app
def step(i):
    if i < 0:
        raise ValueError(f"negative step {i}")
    return i

shared = pytest.mark.parsl(scope=SCOPE)

def record(dfk):
    with open(os.environ["DFKS"], "a") as f:
        f.write(f"{__name__} {id(dfk)} {dfk.run_dir}\\n")

@shared
@pytest.mark.parametrize("i", range(3))
def test_each_has_its_own_records(i, parsl_dfk, parsl_tasks):
    record(parsl_dfk)
    assert step(i).result() == i
    assert [t.app for t in parsl_tasks] == ["step"]

def test_not_parsl_in_between():
    with pytest.raises(Exception):
        parsl.dfk()

@shared
def test_own_failure_only(parsl_dfk):
    record(parsl_dfk)
    step(-7).result()

@shared
def test_restart_is_refused(parsl_restart):
    parsl_restart()

@pytest.mark.parsl(scope="function")
def test_function_scope_still_loads_its_own(parsl_dfk):
    record(parsl_dfk)
"""


@pytest.mark.parametrize("scope", ["module", "session"])
def test_one_dfk_per_scope(
    pytester: pytest.Pytester, run_parslflow, monkeypatch: pytest.MonkeyPatch, scope: str
) -> None:
    log = pytester.path / "dfks.txt"
    monkeypatch.setenv("DFKS", str(log))
    source = SHARED_MODULE.replace("SCOPE", repr(scope))
    pytester.makepyfile(test_first=source, test_second=source)
    result = run_parslflow("-p", "no:randomly")
    result.assert_outcomes(passed=10, failed=4)
    rows = [line.split() for line in log.read_text().splitlines()]
    shared = {(module, dfk) for module, dfk, _ in rows[:4]} | {
        (module, dfk) for module, dfk, _ in rows[5:9]
    }
    dfks = {dfk for _, dfk in shared}
    assert len(dfks) == (2 if scope == "module" else 1)
    # the function-scoped tests loaded DFKs of their own
    assert rows[4][1] not in dfks and rows[9][1] not in dfks
    # each test's report names only its own failed task (the 4th task of the shared DFK)
    result.stdout.fnmatch_lines(
        [
            "1 tasks: 1 failed",
            "task 3  step  failed  tries=1  executor=threads",
            "*- parsl: 000/parsl.log (task 3) -*",
        ]
    )
    result.stdout.fnmatch_lines(
        ["*ParslRestartError: *parsl_restart: a DFK shared by scope=*cannot be restarted*"]
    )
