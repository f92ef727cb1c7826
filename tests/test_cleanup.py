"""After every test the DFK is cleaned up and cleared, so the next test loads cleanly."""

from __future__ import annotations

import pytest


def test_dfk_is_gone_after_a_failing_test(pytester: pytest.Pytester, run_parslflow) -> None:
    pytester.makepyfile(
        """
import parsl
import pytest
from parsl import python_app
from parsl.errors import NoDataFlowKernelError

@python_app
def one():
    return 1

@pytest.mark.parsl
def test_fails():
    assert one().result() == 1
    assert False, "deliberate"

def test_nothing_loaded_after_it():
    with pytest.raises(NoDataFlowKernelError):
        parsl.dfk()

@pytest.mark.parsl
def test_next_loads_cleanly(parsl_dfk):
    assert parsl.dfk() is parsl_dfk
    assert one().result() == 1

def test_cleaned_up_dfk_refuses_tasks():
    with pytest.raises(NoDataFlowKernelError):
        one()
"""
    )
    run_parslflow("-v").assert_outcomes(passed=3, failed=1)


LEAKY = """
import parsl
from parsl.config import Config
from parsl.executors import ThreadPoolExecutor

def test_leaks(parsl_run_dir):  # opts in: the test is managed, its leaks checked
    parsl.load(Config(executors=[ThreadPoolExecutor()], run_dir=str(parsl_run_dir)))

def test_next(tmp_path):
    with parsl.load(Config(executors=[ThreadPoolExecutor()], run_dir=str(tmp_path))):
        pass
"""


@pytest.mark.parametrize(
    ("leaks", "outcomes", "line"),
    [
        (
            "fail",
            {"passed": 2, "errors": 1},
            "*test_leaks leaked Parsl resources: a loaded DataFlowKernel (run dir *), now cleaned up*",
        ),
        (
            "warn",
            {"passed": 2, "warnings": 1},
            "*test_leaks leaked Parsl resources: a loaded DataFlowKernel*",
        ),
        ("off", {"passed": 2}, None),
    ],
)
def test_a_test_that_forgets_its_own_dfk(
    pytester: pytest.Pytester, run_parslflow, leaks: str, outcomes: dict[str, int], line: str | None
) -> None:
    pytester.makepyfile(LEAKY)
    result = run_parslflow(f"--parslflow-leaks={leaks}")
    result.assert_outcomes(**outcomes)
    if line:
        result.stdout.fnmatch_lines([line])


def test_each_parsl_log_is_closed_after_its_test(pytester: pytest.Pytester, run_parslflow) -> None:
    """Parsl's cleanup leaves its parsl.log handler open (current Parsl detaches it, Parsl
    2025.1 does not even detach it): one open file per test, and on 2025.1 every later
    test's lines written into every earlier test's parsl.log."""
    pytester.makepyfile(
        """
        import os
        import pytest
        from parsl import python_app

        @python_app
        def first_app():
            return 1

        @python_app
        def second_app():
            return 2

        def open_parsl_logs():
            found = []
            for fd in os.listdir("/proc/self/fd"):
                try:
                    target = os.readlink(f"/proc/self/fd/{fd}")
                except OSError:
                    continue
                if target.endswith("parsl.log") or target.endswith("parsl.log (deleted)"):
                    found.append(target)
            return found

        @pytest.mark.parsl
        def test_first(parsl_run_dir):
            assert first_app().result() == 1

        @pytest.mark.parsl
        def test_second(parsl_run_dir):
            assert second_app().result() == 2
            assert open_parsl_logs() == [str(parsl_run_dir / "000" / "parsl.log")]

        @pytest.mark.parsl
        def test_cleans_up_itself(parsl_dfk):
            assert first_app().result() == 1
            parsl_dfk.cleanup()

        def test_after_them():
            assert open_parsl_logs() == []
        """
    )
    result = run_parslflow("--parslflow-keep", "all")
    result.assert_outcomes(passed=4)
    first = next(pytester.path.glob("**/test_first*/runinfo/000/parsl.log")).read_text()
    assert "first_app" in first
    assert "second_app" not in first


def test_a_finished_test_keeps_no_dfk_alive(pytester: pytest.Pytester, run_parslflow) -> None:
    """The plugin holds a test's DFKs and task records for its report only: a long session
    does not accumulate them."""
    pytester.makepyfile(
        """
        import gc
        import pytest
        from parsl import python_app
        from parsl.dataflow.dflow import DataFlowKernel

        @python_app
        def one():
            return 1

        @python_app
        def boom():
            raise ValueError("boom")

        @pytest.mark.parsl
        @pytest.mark.parametrize("i", range(3))
        def test_uses_parsl(i, parsl_tasks):
            assert one().result() == 1
            assert len(parsl_tasks) == 1

        @pytest.mark.parsl(retries=1)
        def test_a_task_fails(parsl_tasks):
            with pytest.raises(ValueError):
                boom().result()
            assert len(parsl_tasks[0].exceptions) == 2

        def test_after_them():
            gc.collect()
            assert [o for o in gc.get_objects() if isinstance(o, DataFlowKernel)] == []
        """
    )
    result = run_parslflow()
    result.assert_outcomes(passed=5)
