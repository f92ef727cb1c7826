"""Coverage inside HTEX workers: with coverage measuring the session, the lines that apps
run in the plugin's HTEX worker processes land in the coverage data, with no set-up."""

from __future__ import annotations

import sys
from pathlib import Path

import coverage
import pytest

pytestmark = pytest.mark.htex

# Every line marked `# worker` runs only inside an HTEX worker process.
APPS = """
from parsl import python_app


@python_app
def double(x):
    y = x * 2  # worker
    return y  # worker


@python_app
def triple(x):
    y = x * 3  # worker
    return y  # worker


@python_app
def slow(path):
    import pathlib  # worker
    import time  # worker

    pathlib.Path(path).write_text("started")  # worker
    time.sleep(60)
    return 1
"""

TESTS = """
import time

import pytest
from apps import double, slow, triple


@pytest.mark.parsl(executor="htex")
def test_function_scope():
    assert double(2).result() == 4


@pytest.mark.parsl(executor="htex", scope="session")
def test_session_scope():
    assert triple(2).result() == 6


@pytest.mark.parsl(executor="htex")
def test_task_still_running_at_the_end(tmp_path):
    # the worker is ended by SIGTERM in the middle of the app: its data is saved all the same
    started = tmp_path / "started"
    slow(str(started))
    while not started.exists():
        time.sleep(0.02)
"""


def worker_lines(path: Path) -> set[int]:
    lines = path.read_text().splitlines()
    return {number for number, line in enumerate(lines, start=1) if line.endswith("# worker")}


def executed(data_file: Path, source: Path) -> set[int]:
    data = coverage.CoverageData(str(data_file))
    data.read()
    return set(data.lines(str(source.resolve())) or ())


@pytest.fixture
def project(pytester: pytest.Pytester) -> Path:
    pytester.makepyfile(apps=APPS, test_workflow=TESTS)
    return pytester.path / "apps.py"


def leftover_data_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob(".coverage.*"))


def test_coverage_run_without_any_configuration(pytester: pytest.Pytester, project: Path) -> None:
    result = pytester.run(
        sys.executable, "-m", "coverage", "run", "-m", "pytest", "-p", "parslflow", timeout=240
    )
    result.assert_outcomes(passed=3)
    # the workers' data is folded into the one plain data file: no `coverage combine`
    assert leftover_data_files(pytester.path) == []
    assert worker_lines(project) <= executed(pytester.path / ".coverage", project)


def test_coverage_run_parallel_then_combine(pytester: pytest.Pytester, project: Path) -> None:
    (pytester.path / ".coveragerc").write_text(
        "[run]\nparallel = true\nsource = .\nbranch = true\n"
    )
    result = pytester.run(
        sys.executable, "-m", "coverage", "run", "-m", "pytest", "-p", "parslflow", timeout=240
    )
    result.assert_outcomes(passed=3)
    names = leftover_data_files(pytester.path)
    assert any(".parslflow." in name for name in names), names
    combined = pytester.run(sys.executable, "-m", "coverage", "combine")
    assert combined.ret == 0, combined.stdout.str()
    assert worker_lines(project) <= executed(pytester.path / ".coverage", project)
    data = coverage.CoverageData(str(pytester.path / ".coverage"))
    data.read()
    assert data.has_arcs()  # the workers measured with the session's configuration


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_pytest_cov(pytester: pytest.Pytester, project: Path, xdist: list[str]) -> None:
    result = pytester.run(
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "parslflow",
        "--cov=.",
        "--cov-report=term-missing",
        *xdist,
        timeout=240,
    )
    result.assert_outcomes(passed=3)
    # every line but the one after the sleep that the SIGTERM interrupted
    result.stdout.fnmatch_lines(["apps.py * 16 * 1 * 94% * 23"])
    assert leftover_data_files(pytester.path) == []
    assert worker_lines(project) <= executed(pytester.path / ".coverage", project)


def test_no_coverage_no_worker_environment(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # without coverage in the session, workers are started as always, unmeasured
    for name in ("COVERAGE_PROCESS_START", "COVERAGE_PROCESS_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    pytester.makepyfile(
        """
import os
import pytest
from parsl import python_app

@python_app
def environment():
    import os
    import sys
    return os.environ.get("PARSLFLOW_COVERAGE"), "coverage" in sys.modules

@pytest.mark.parsl(executor="htex")
def test_unmeasured():
    assert environment().result() == (None, False)
"""
    )
    result = pytester.run(sys.executable, "-m", "pytest", "-p", "parslflow", "-p", "no:cov")
    result.assert_outcomes(passed=1)
