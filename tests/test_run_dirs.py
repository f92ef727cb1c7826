"""Every test gets its own run directory under basetemp, kept or removed per --parslflow-keep."""

from __future__ import annotations

from pathlib import Path

import pytest

RECORDING_TESTS = """
import os
import parsl
import pytest
from parsl import python_app

@python_app
def where():
    return os.getpid()

def record(parsl_run_dir, outcome):
    dfk_dir = parsl.dfk().run_dir
    with open(os.environ["RUN_DIRS"], "a") as f:
        f.write(f"{outcome} {parsl_run_dir} {dfk_dir}\\n")

@pytest.mark.parsl
@pytest.mark.parametrize("i", range(4))
def test_passes(parsl_run_dir, i):
    where().result()
    record(parsl_run_dir, "passed")

@pytest.mark.parsl
def test_fails(parsl_run_dir):
    record(parsl_run_dir, "failed")
    assert False, "deliberate"
"""


def _records(path: Path) -> list[tuple[str, Path, Path]]:
    rows = [line.split() for line in path.read_text().splitlines()]
    return [(outcome, Path(base), Path(dfk)) for outcome, base, dfk in rows]


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_run_dirs_are_unique_and_inside_basetemp(
    pytester: pytest.Pytester, run_parslflow, monkeypatch: pytest.MonkeyPatch, xdist: list[str]
) -> None:
    log = pytester.path / "run_dirs.txt"
    monkeypatch.setenv("RUN_DIRS", str(log))
    pytester.makepyfile(RECORDING_TESTS)
    basetemp = pytester.path / "basetemp"
    result = run_parslflow(f"--basetemp={basetemp}", "--parslflow-keep=all", *xdist)
    result.assert_outcomes(passed=4, failed=1)
    records = _records(log)
    bases = [base for _, base, _ in records]
    assert len(set(bases)) == 5
    for _, base, dfk_dir in records:
        assert base.is_relative_to(basetemp)
        assert base.name == "runinfo"
        assert dfk_dir == base / "000"
        assert (dfk_dir / "parsl.log").is_file()
    assert not (pytester.path / "runinfo").exists()


@pytest.mark.parametrize(
    ("keep", "kept"),
    [("failed", {"failed"}), ("all", {"passed", "failed"}), ("none", set())],
)
def test_keep_policy(
    pytester: pytest.Pytester,
    run_parslflow,
    monkeypatch: pytest.MonkeyPatch,
    keep: str,
    kept: set[str],
) -> None:
    log = pytester.path / "run_dirs.txt"
    monkeypatch.setenv("RUN_DIRS", str(log))
    pytester.makepyfile(RECORDING_TESTS)
    run_parslflow(f"--parslflow-keep={keep}").assert_outcomes(passed=4, failed=1)
    for outcome, base, _ in _records(log):
        assert base.exists() == (outcome in kept), (outcome, base)


def test_setup_error_keeps_the_run_directory(
    pytester: pytest.Pytester, run_parslflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = pytester.path / "run_dirs.txt"
    monkeypatch.setenv("RUN_DIRS", str(log))
    pytester.makepyfile(
        """
import os
import pytest

@pytest.fixture
def broken(parsl_run_dir):
    with open(os.environ["RUN_DIRS"], "a") as f:
        f.write(f"{parsl_run_dir}\\n")
    raise RuntimeError("fixture broke after the DFK was loaded")

@pytest.mark.parsl
def test_setup_error(broken):
    pass
"""
    )
    run_parslflow().assert_outcomes(errors=1)
    kept = Path(log.read_text().strip())
    assert (kept / "000" / "parsl.log").is_file()


def test_each_rerun_attempt_has_its_own_run_directory(
    pytester: pytest.Pytester, run_parslflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = pytester.path / "run_dirs.txt"
    monkeypatch.setenv("RUN_DIRS", str(log))
    pytester.makepyfile(
        """
import os
import parsl
import pytest

@pytest.mark.parsl
def test_flaky_twice(parsl_run_dir):
    with open(os.environ["RUN_DIRS"], "a") as f:
        f.write(f"{parsl_run_dir}\\n")
    attempts = len(open(os.environ["RUN_DIRS"]).read().splitlines())
    assert attempts == 3
"""
    )
    result = run_parslflow("-p", "rerunfailures", "--reruns=2", "--parslflow-keep=all")
    assert result.parseoutcomes() == {"passed": 1, "rerun": 2}
    dirs = log.read_text().splitlines()
    assert len(set(dirs)) == 3
    assert all((Path(d) / "000" / "parsl.log").is_file() for d in dirs)
    names = [Path(d).parent.name for d in dirs]
    assert names == [
        "test_flaky_twice0",
        "test_flaky_twice_attempt2_0",
        "test_flaky_twice_attempt3_0",
    ]
