"""The failure report: a task summary and excerpts chosen by task, wherever reports go."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from conftest import BOTH_EXECUTORS

FAILING_WORKFLOW = """
import pytest
from parsl import bash_app, python_app

@python_app
def fine(i):
    return i

@python_app
def boom(i):
    raise ValueError(f"boom {i}")

@python_app
def after(x):
    return x

@bash_app
def convert(stdout=None, stderr=None):
    return "echo converting; echo 'no such file: input.txt' >&2; exit 3"

@pytest.mark.parsl(retries=1)
def test_pipeline():
    ok = [fine(i) for i in range(3)]
    failed = after(boom(3))
    assert [f.result() for f in ok] == [0, 1, 2]
    failed.result()

@pytest.mark.parsl
def test_bash(tmp_path):
    convert(stdout=str(tmp_path / "convert.out"), stderr=str(tmp_path / "convert.err")).result()

@pytest.mark.parsl
def test_passes():
    assert fine(1).result() == 1
"""


def test_app_failure_retries_and_dependency_failure(
    pytester: pytest.Pytester, run_parslflow
) -> None:
    pytester.makepyfile(FAILING_WORKFLOW)
    result = run_parslflow("-rA")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*- parsl: tasks -*",
            "run dir: */test_pipeline0/runinfo/000 (kept)",
            "5 tasks: 3 exec_done, 1 failed, 1 dep_fail",
            "task 3  boom  failed  tries=2  executor=threads",
            "  try 0: ValueError: boom 3   (test_app_failure_retries_and_dependency_failure.py:10 in boom)",
            "  try 1: ValueError: boom 3   (test_app_failure_retries_and_dependency_failure.py:10 in boom)",
            "  traceback (innermost last):",
            "    test_app_failure_retries_and_dependency_failure.py:10 in boom",
            '      raise ValueError(f"boom {i}")',
            "task 4  after  dep_fail  root: task 3  (depends on 3)",
            "*- parsl: 000/parsl.log (task 3, 4) -*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*INFO    Parsl task 3 try 0 launched on executor threads",
            "*INFO    Task 3 try 0 failed with exception of type ValueError",
            "*INFO    Parsl task 3 try 1 launched on executor threads",
            "*ERROR   Task 3 failed after 1 retry attempts",
        ]
    )
    # Parsl's INFO chatter stays out of pytest's captured logs; the excerpts carry it.
    assert not re.search(r"^INFO +parsl", result.stdout.str(), re.MULTILINE)
    # Nothing is added to a passing test's report, even with -rA showing its sections.
    assert result.stdout.str().count("- parsl: tasks -") == 2


def test_bash_failure_shows_exit_code_and_stderr(pytester: pytest.Pytester, run_parslflow) -> None:
    pytester.makepyfile(FAILING_WORKFLOW)
    result = run_parslflow("-k", "bash")
    result.stdout.fnmatch_lines(
        [
            "task 0  convert  failed  tries=1  executor=threads",
            "  try 0: BashExitFailure: bash_app convert failed with unix exit code 3",
            "*- parsl: */convert.err (task 0 convert) -*",
            "no such file: input.txt",
        ]
    )


def test_log_lines_bounds_each_excerpt(pytester: pytest.Pytester, run_parslflow) -> None:
    pytester.makepyfile(FAILING_WORKFLOW)
    result = run_parslflow("-k", "pipeline", "--parslflow-log-lines=6")
    text = result.stdout.str()
    excerpt = text.split("parsl: 000/parsl.log (task 3, 4)")[1].split("\n-")[0]
    lines = [line for line in excerpt.splitlines()[1:] if line and not line.startswith("[...")]
    assert 0 < len(lines) <= 6
    assert "[... " in excerpt


def test_report_in_junit_xml(pytester: pytest.Pytester, run_parslflow) -> None:
    pytester.makepyfile(FAILING_WORKFLOW)
    run_parslflow("--junitxml=report.xml", "-o", "junit_logging=system-out")
    tree = ET.parse(pytester.path / "report.xml")
    cases = {case.get("name"): case for case in tree.iter("testcase")}
    out = cases["test_pipeline"].findtext("system-out") or ""
    assert "parsl: tasks" in out
    assert "task 3  boom  failed  tries=2  executor=threads" in out
    assert "task 4  after  dep_fail  root: task 3" in out
    assert "Task 3 try 0 failed with exception of type ValueError" in out
    assert "parsl: tasks" not in (cases["test_passes"].findtext("system-out") or "")


def test_report_and_summary_reach_the_xdist_controller(
    pytester: pytest.Pytester, run_parslflow
) -> None:
    pytester.makepyfile(FAILING_WORKFLOW)
    result = run_parslflow("-n", "2")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "task 3  boom  failed  tries=2  executor=threads",
            "*- parsl summary -*",
            "3 tests used Parsl: 7 tasks run, 1 retried, 0 from memo or checkpoint, 3 failed",
            "kept run directories (2):",
        ]
    )


@BOTH_EXECUTORS
def test_bash_auto_logname_and_dependency_failure(
    pytester: pytest.Pytester, run_parslflow, executor: str
) -> None:
    pytester.makepyfile(
        """
import parsl
import pytest

from parsl import bash_app, python_app

@bash_app
def convert(stdout=parsl.AUTO_LOGNAME, stderr=parsl.AUTO_LOGNAME):
    return "echo converting; echo 'no such file: input.txt' >&2; exit 3"

@python_app
def summarise(x):
    return x

@pytest.mark.parsl
def test_chain():
    summarise(convert()).result()
"""
    )
    result = run_parslflow(f"--parslflow-executor={executor}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "2 tasks: 1 failed, 1 dep_fail",
            "task 0  convert  failed  tries=1  executor=*",
            "  try 0: BashExitFailure: bash_app convert failed with unix exit code 3",
            "task 1  summarise  dep_fail  root: task 0  (depends on 0)",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*- parsl: 000/task_logs/0000/task_0000_convert.stderr (task 0 convert) -*",
            "no such file: input.txt",
        ]
    )
