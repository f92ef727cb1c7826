"""Each argument of the parsl marker has its effect, and marks combine closest-first."""

from __future__ import annotations

import pytest
from conftest import FLAKY_APP


def test_retries_let_a_flaky_app_succeed_or_not(pytester: pytest.Pytester, run_parslflow) -> None:
    pytester.makepyfile(
        FLAKY_APP
        + """
import pytest

@pytest.mark.parsl(retries=2)
def test_two_retries(tmp_path):
    assert flaky(str(tmp_path / "n"), 2).result() == 3

@pytest.mark.parsl(retries=0)
def test_no_retries(tmp_path):
    with pytest.raises(ValueError, match="transient failure 1"):
        flaky(str(tmp_path / "n"), 2).result()
    assert (tmp_path / "n").read_text() == "1"
"""
    )
    run_parslflow("-v").assert_outcomes(passed=2)


def test_checkpoint_app_cache_and_workers(pytester: pytest.Pytester, run_parslflow) -> None:
    pytester.makepyfile(
        """
import threading
import time
import parsl
import pytest
from parsl import python_app

@python_app(cache=True)
def record(path, value):
    with open(path, "a") as f:
        f.write(f"{value}\\n")
    return value

@pytest.mark.parsl(checkpoint="task_exit")
def test_task_exit_checkpoint(parsl_run_dir):
    assert record(str(parsl_run_dir / "side"), 1).result() == 1
    tasks = parsl_run_dir / "000" / "checkpoint" / "tasks.pkl"
    # Parsl before 2025.4 writes the checkpoint in a callback after the result is set.
    for _ in range(100):
        if tasks.exists() and tasks.stat().st_size > 0:
            break
        time.sleep(0.1)
    assert tasks.stat().st_size > 0

@pytest.mark.parsl(app_cache=True)
def test_app_cache_on(tmp_path):
    side = tmp_path / "side"
    record(str(side), 1).result()
    record(str(side), 1).result()
    assert side.read_text().splitlines() == ["1"]

@pytest.mark.parsl(app_cache=False)
def test_app_cache_off(tmp_path):
    side = tmp_path / "side"
    record(str(side), 1).result()
    record(str(side), 1).result()
    assert side.read_text().splitlines() == ["1", "1"]

barrier = threading.Barrier(3, timeout=20)

@python_app
def meet():
    barrier.wait()
    return True

@pytest.mark.parsl(workers=3)
def test_three_workers_run_three_apps_at_once():
    assert parsl.dfk().executors["threads"].max_threads == 3
    assert all(f.result() for f in [meet() for _ in range(3)])
"""
    )
    run_parslflow("-v").assert_outcomes(passed=4)


def test_marks_combine_closest_first_over_ini_default(
    pytester: pytest.Pytester, run_parslflow
) -> None:
    pytester.makeini(
        """
[pytest]
parslflow_executor = htex
"""
    )
    pytester.makepyfile(
        """
import parsl
import pytest

pytestmark = pytest.mark.parsl(executor="thread", retries=1, workers=2, app_cache=False)

@pytest.mark.parsl(retries=2)
class TestPrecedence:
    @pytest.mark.parsl(workers=3)
    def test_closest_wins(self):
        dfk = parsl.dfk()
        assert dfk.config.retries == 2
        assert dfk.executors["threads"].max_threads == 3
        assert "htex_local" not in dfk.executors

    def test_class_over_module(self):
        assert parsl.dfk().config.retries == 2
        assert parsl.dfk().executors["threads"].max_threads == 2

def test_module_only():
    assert parsl.dfk().config.retries == 1
"""
    )
    run_parslflow("-v").assert_outcomes(passed=3)


def test_executor_list_from_ini_and_marker_parametrizes(
    pytester: pytest.Pytester, run_parslflow
) -> None:
    pytester.makeini(
        """
[pytest]
parslflow_executor = thread,htex
"""
    )
    pytester.makepyfile(
        """
import pytest

@pytest.mark.parsl
@pytest.mark.parametrize("n", [1])
def test_default_list(n):
    pass

@pytest.mark.parsl(executor=["htex"])
def test_list_of_one():
    pass

@pytest.mark.parsl(executor="thread")
def test_single():
    pass

def test_not_parsl():
    pass
"""
    )
    result = run_parslflow("--collect-only", "-q")
    result.stdout.fnmatch_lines(
        [
            "test_executor_list_from_ini_and_marker_parametrizes.py::test_default_list[1-thread]",
            "test_executor_list_from_ini_and_marker_parametrizes.py::test_default_list[1-htex]",
            "test_executor_list_from_ini_and_marker_parametrizes.py::test_list_of_one",
            "test_executor_list_from_ini_and_marker_parametrizes.py::test_single",
            "test_executor_list_from_ini_and_marker_parametrizes.py::test_not_parsl",
            "5 tests collected*",
        ]
    )


def test_timeout_is_enforced_by_pytest_timeout(pytester: pytest.Pytester, run_parslflow) -> None:
    pytester.makepyfile(
        """
import time
import pytest

@pytest.mark.parsl(timeout=4)
def test_slow():
    time.sleep(60)
"""
    )
    result = run_parslflow()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Timeout (>4.0s) from pytest-timeout*"])


def test_strict_markers_pass(pytester: pytest.Pytester, run_parslflow) -> None:
    pytester.makepyfile(
        """
import pytest

@pytest.mark.parsl
def test_marked():
    pass
"""
    )
    run_parslflow("--strict-markers").assert_outcomes(passed=1)
