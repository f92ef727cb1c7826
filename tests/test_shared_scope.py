"""scope="module" and "session": one DFK for many tests, records and reports per test."""

from __future__ import annotations

import pytest
from conftest import BOTH_EXECUTORS

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


@BOTH_EXECUTORS
def test_leak_guard_while_a_shared_dfk_runs(
    pytester: pytest.Pytester, run_parslflow, executor: str
) -> None:
    """A shared DFK's own processes are spared; a process that Parsl started for another
    test meanwhile is still found and ended, and a helper whose command line says
    "parsl" is not Parsl's and is left alone."""
    pytester.makepyfile(
        f"""
import os
import subprocess
import sys
import pytest
from parsl import bash_app, python_app

shared = pytest.mark.parsl(executor={executor!r}, scope="module")
STRAY = os.path.join(os.getcwd(), "stray.pid")
HELPER = []

@python_app
def pid():
    import os
    return os.getpid()

@bash_app
def detaches(path):
    return f"setsid sleep 60 >/dev/null 2>&1 </dev/null & echo $! > {{path}}"

@shared
def test_first(parsl_dfk):
    assert pid().result()

@pytest.mark.parsl
def test_leaves_a_parsl_process():
    assert detaches(STRAY).result() == 0

def test_a_helper_that_says_parsl():
    HELPER.append(
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "parsl"])
    )

@shared
@pytest.mark.parametrize("i", range(3))
def test_shared_dfk_still_serves(i, parsl_dfk):
    assert pid().result()

def test_stray_was_ended_and_the_helper_was_not():
    stray = int(open(STRAY).read())
    with pytest.raises(ProcessLookupError):
        os.kill(stray, 0)
    assert HELPER[0].poll() is None
    HELPER[0].kill()
    HELPER[0].wait()
"""
    )
    result = run_parslflow("-v", "-p", "no:randomly")
    result.assert_outcomes(passed=7, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*test_leaves_a_parsl_process leaked Parsl resources: process * (sleep 60) started "
            "by bash app 'detaches' (task 0): ended*"
        ]
    )
    assert "test_shared_dfk_still_serves" not in "".join(
        line for line in result.stdout.lines if "leaked" in line
    )


def test_a_cleaned_up_shared_thread_dfk_is_replaced_with_a_warning(
    pytester: pytest.Pytester, run_parslflow
) -> None:
    pytester.makepyfile(
        """
import parsl
import pytest
from parsl import python_app

@python_app
def step(i):
    return i

pytestmark = pytest.mark.parsl(scope="module")

def test_cleans_up_the_shared_dfk():
    assert step(1).result() == 1
    parsl.dfk().cleanup()

@pytest.mark.parametrize("i", range(2))
def test_later_tests_still_run(i):
    assert step(i).result() == i
"""
    )
    result = run_parslflow("-p", "no:randomly")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "*pytest-parslflow: the module-scoped DataFlowKernel (*) was broken (it was cleaned up, by a test or a fixture calling its cleanup()); it was replaced for *test_later_tests_still_run[[]0[]]"
        ]
    )
    assert "NoDataFlowKernelError" not in result.stdout.str()


@BOTH_EXECUTORS
def test_a_timed_out_test_does_not_hold_the_shared_workers_of_the_next(
    pytester: pytest.Pytester, run_parslflow, executor: str
) -> None:
    pytester.makepyfile(
        """
import pytest
from parsl import python_app

@python_app
def slow():
    import time
    time.sleep(8)

@python_app
def step(i):
    return i

pytestmark = pytest.mark.parsl(scope="module", workers=1, timeout=4)

def test_times_out():
    slow().result()

@pytest.mark.parametrize("i", range(2))
def test_next_start_clean(i):
    assert step(i).result() == i

def test_later_failure_names_what_held_the_workers():
    assert step(-1).result() == 0
"""
    )
    result = run_parslflow("-p", "no:randomly", f"--parslflow-executor={executor}")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*the module-scoped DataFlowKernel (*) was broken (*::test_times_out left task 0 (slow) still running); it was replaced for *test_next_start_clean[[]0[]]",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*_ test_later_failure_names_what_held_the_workers _*",
            "*- parsl: tasks -*",
            "run dir: *",
            "note: the module-scoped DataFlowKernel (*) was broken (*::test_times_out left task 0 (slow) still running); it was replaced for *test_next_start_clean[[]0[]]",
        ]
    )


def test_unhashable_settings_share_by_identity_with_a_warning(
    pytester: pytest.Pytester, run_parslflow
) -> None:
    pytester.makepyfile(
        """
import pytest
from parsl import python_app

@python_app
def step(i):
    return i

class Handler:
    __hash__ = None  # unhashable, as objects defining __eq__ alone are

    def __eq__(self, other):
        return isinstance(other, Handler)

    def __call__(self, exception, task_record):
        return 1.0

HANDLER = Handler()
DFKS = set()

@pytest.mark.parsl(scope="module", retry_handler=HANDLER)
@pytest.mark.parametrize("i", range(2))
def test_same_object_shares(i, parsl_dfk):
    DFKS.add(id(parsl_dfk))
    assert step(i).result() == i

@pytest.mark.parsl(scope="module", retry_handler=Handler())
def test_other_object_gets_its_own(parsl_dfk):
    DFKS.add(id(parsl_dfk))
    assert len(DFKS) == 2
"""
    )
    result = run_parslflow("-p", "no:randomly")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "*pytest-parslflow: retry_handler=<*Handler object at * of *test_same_object_shares[[]0[]] cannot be hashed, so tests share its module-scoped DataFlowKernel only when given the very same object"
        ]
    )
    assert "TypeError" not in result.stdout.str()
