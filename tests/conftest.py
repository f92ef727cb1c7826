"""Shared helpers: tests drive the plugin as users do, in a pytest subprocess with real Parsl."""

from __future__ import annotations

import pytest

#: runs a test once with the pytester session's default executor on each of ours
BOTH_EXECUTORS = pytest.mark.parametrize(
    "executor", ["thread", pytest.param("htex", marks=pytest.mark.htex)]
)

# An app that fails its first ``fails`` tries, counting tries in a file so the count
# survives across threads and processes alike.
FLAKY_APP = """
import pathlib
from parsl import python_app

@python_app
def flaky(counter, fails):
    path = pathlib.Path(counter)
    tries = int(path.read_text()) if path.exists() else 0
    path.write_text(str(tries + 1))
    if tries < fails:
        raise ValueError(f"transient failure {tries + 1}")
    return tries + 1
"""


@pytest.fixture(autouse=True)
def _not_in_github_actions(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sessions pytester runs see no GitHub Actions of this suite's own CI: no
    annotations in their output, nothing appended to this job's summary. Tests of those
    features set the variables themselves."""
    for name in ("GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY", "GITHUB_WORKSPACE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def run_parslflow(pytester: pytest.Pytester):  # type: ignore[no-untyped-def]
    """Run pytest with the plugin in a subprocess, as ``pytest -p parslflow`` would."""

    def run(*args: str) -> pytest.RunResult:
        return pytester.runpytest_subprocess("-p", "parslflow", *args)

    return run
