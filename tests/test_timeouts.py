"""The marker's ``timeout`` holds whether or not pytest loaded pytest-timeout, and says
why where pytest-timeout is missing; ``--strict-markers`` never breaks."""

from __future__ import annotations

import pytest

SLOW_TEST = """
import pytest
from parsl import python_app

@python_app
def slow():
    import time
    time.sleep(4)

@pytest.mark.parsl(timeout=0.5)
def test_slow():
    slow().result()

@pytest.mark.parsl
def test_fast():
    pass
"""


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["-p", "no:timeout"], id="blocked"),
        pytest.param([], id="autoload-off"),
        pytest.param(["-p", "pytest_timeout"], id="loaded-by-name"),
    ],
)
def test_timeout_holds_when_pytest_timeout_is_not_autoloaded(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(SLOW_TEST)
    result = pytester.runpytest_subprocess(
        "-p",
        "parslflow",
        "--strict-markers",
        "-W",
        "error::pytest.PytestUnknownMarkWarning",
        "-p",
        "no:randomly",
        *args,
    )
    result.stdout.fnmatch_lines(["*Timeout (>0.5s) from pytest-timeout*"])
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] == 1 and outcomes["passed"] == 1
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    assert "Unknown pytest.mark.timeout" not in result.stdout.str()


def test_timeout_with_autoload_and_strict_markers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SLOW_TEST)
    result = pytester.runpytest_subprocess("-p", "parslflow", "--strict-markers")
    result.stdout.fnmatch_lines(["*Timeout (>0.5s) from pytest-timeout*"])
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] == 1 and outcomes["passed"] == 1


def test_timeout_without_pytest_timeout_installed_errors_in_setup(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    # a module of that name that cannot be imported: pytest-timeout as good as missing
    pytester.makepyfile(pytest_timeout="raise ImportError('pytest-timeout is not installed')")
    pytester.makepyfile(SLOW_TEST)
    result = pytester.runpytest_subprocess("-p", "parslflow", "--strict-markers")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*::test_slow: parsl marker argument timeout=0.5 needs pytest-timeout, which is not installed; `pip install pytest-timeout`, or remove timeout="
        ]
    )
