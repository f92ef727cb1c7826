"""Every failure report is bounded in bytes as well as lines, whatever the logs hold."""

from __future__ import annotations

import re
import tracemalloc
from pathlib import Path

import pytest

from pytest_parslflow.report.failure import MAX_REPORT_BYTES
from pytest_parslflow.report.logs import MAX_LINE_BYTES, excerpt, tail_of, task_pattern


def parsl_section(text: str) -> str:
    """The report of the one failed test: from its task summary to the session summary."""
    return text.split("- parsl: tasks -")[1].split("- parsl summary -")[0]


def test_overlong_lines_and_progress_bars_are_cut(pytester: pytest.Pytester, run_parslflow) -> None:
    """A bash app writing 64 MB without a newline, and a progress bar of carriage returns."""
    pytester.makepyfile(
        """
import pytest
from parsl import bash_app

@bash_app
def noisy(stdout=None, stderr=None):
    return (
        "head -c 64000000 /dev/zero | tr '\\\\0' x; "
        "for i in $(seq 1 20000); do printf 'progress %d%%\\\\r' $i >&2; done; exit 3"
    )

@pytest.mark.parsl
def test_noisy(tmp_path):
    noisy(stdout=str(tmp_path / "noisy.out"), stderr=str(tmp_path / "noisy.err")).result()
"""
    )
    result = run_parslflow("--junitxml=report.xml", "-o", "junit_logging=system-out")
    result.assert_outcomes(failed=1)
    report = parsl_section(result.stdout.str())
    assert len(report.encode()) < 40_000
    assert "[... start of an overlong line cut]" in report
    # the carriage returns end lines: the last states of the bar, one a line
    result.stdout.fnmatch_lines(
        [
            "*- parsl: */noisy.err (task 0 noisy) -*",
            "[... earlier lines ...]",
            "progress 19961%",
            "progress 19962%",
        ]
    )
    assert "progress 20000%" in report
    xml = (pytester.path / "report.xml").read_bytes()
    assert len(xml) < 60_000


def test_sixty_megabyte_lines_in_parsl_log_stay_small(
    pytester: pytest.Pytester, run_parslflow
) -> None:
    pytester.makepyfile(
        """
import logging
import pytest
from parsl import python_app

@python_app
def boom():
    raise ValueError("boom")

@pytest.mark.parsl
def test_loud():
    for i in range(60):
        logging.getLogger("parsl.loud").warning("%d %s", i, "w" * 1_000_000)
    boom().result()
"""
    )
    result = run_parslflow("--junitxml=report.xml", "-o", "junit_logging=system-out")
    result.assert_outcomes(failed=1)
    report = parsl_section(result.stdout.str())
    # 40 excerpt lines of at most MAX_LINE_BYTES each, with room for the headings
    assert len(report.encode()) < 40 * (MAX_LINE_BYTES + 100) + 10_000
    result.stdout.fnmatch_lines(["*WARNING 59 wwww* [[]... 99*,* more bytes cut[]]"])
    assert len((pytester.path / "report.xml").read_bytes()) < 200_000


def test_identical_tries_fold_and_long_exception_texts_are_cut(
    pytester: pytest.Pytester, run_parslflow
) -> None:
    pytester.makepyfile(
        """
import pathlib
import pytest
from parsl import python_app

@python_app
def same():
    raise ValueError("always the same")

@python_app
def counting(path):
    p = pathlib.Path(path)
    n = int(p.read_text()) if p.exists() else 0
    p.write_text(str(n + 1))
    raise ValueError(f"failure {n}")

@python_app
def huge():
    raise RuntimeError("h" * 5_000_000)

@pytest.mark.parsl(retries=500)
def test_same():
    same().result()

@pytest.mark.parsl(retries=100)
def test_counting(tmp_path):
    counting(str(tmp_path / "n")).result()

@pytest.mark.parsl
def test_huge():
    huge().result()
"""
    )
    result = run_parslflow("-p", "no:randomly")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(
        [
            "task 0  same  failed  tries=501  executor=threads",
            "  try 0: ValueError: always the same   (*:7 in same)",
            "  tries 1-500: same ValueError (500 times)",
            "  traceback (innermost last):",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "task 0  counting  failed  tries=101  executor=threads",
            "  try 0: ValueError: failure 0*",
            "  try 5: ValueError: failure 5*",
            "  [[]... tries 6-94: 89 more failed tries ...[]]",
            "  try 95: ValueError: failure 95*",
            "  try 100: ValueError: failure 100*",
        ]
    )
    result.stdout.fnmatch_lines(
        ["  try 0: RuntimeError: hhhhh* [[]... 4,999,500 more characters cut[]]*"]
    )
    assert "try 1: " not in parsl_section(result.stdout.str())


def test_whole_report_has_a_byte_cap(pytester: pytest.Pytester, run_parslflow) -> None:
    """Many big log files: the report stops at the cap and says so."""
    pytester.makeconftest(
        """
import pytest

@pytest.hookimpl(optionalhook=True)
def pytest_parslflow_log_files(run_dir):
    return sorted(run_dir.parent.glob("extra_*.log"))
"""
    )
    pytester.makepyfile(
        """
import pytest
from parsl import python_app

@python_app
def boom():
    raise ValueError("boom")

@pytest.mark.parsl
def test_many_logs(parsl_run_dir):
    for n in range(10):
        (parsl_run_dir.parent / f"extra_{n}.log").write_text(
            "".join(f"ERROR {i} {'e' * 3000}\\n" for i in range(50))
        )
    boom().result()
"""
    )
    result = run_parslflow()
    result.assert_outcomes(failed=1)
    report = parsl_section(result.stdout.str())
    assert len(report.encode()) < MAX_REPORT_BYTES + 5_000
    result.stdout.fnmatch_lines(
        [
            "task 0  boom  failed*",
            "[[]... report cut at 200,000 bytes: * more lines; the run directory holds the whole logs ...[]]",
        ]
    )


def test_building_excerpts_of_a_huge_line_keeps_memory_bounded(tmp_path: Path) -> None:
    """A 64 MB line without a newline (more than the 50 MB allowed): excerpt and tail read
    it in pieces and keep only its head."""
    path = tmp_path / "parsl.log"
    with path.open("wb") as handle:
        handle.write(b"1 Task 3 failed here\n")
        for _ in range(64):
            handle.write((b"x" * 1000 + b" ERROR task 3 ") * 1000 * 71)
    tracemalloc.start()
    try:
        chosen = excerpt(path, task_pattern([3]), 40)
        tail = tail_of(path, 40)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 << 20
    assert chosen.lines[0] == "1 Task 3 failed here"
    assert chosen.lines[1].endswith(" [... rest of an overlong line cut]")
    assert sum(len(line) for line in chosen.lines + tail) < 3 * (MAX_LINE_BYTES + 100)


def test_a_log_of_nothing_but_matching_lines_is_read_in_bounded_steps(tmp_path: Path) -> None:
    """Every line names the failed task and is an ERROR: each chunk yields a bounded
    number of candidates (first and last), and the excerpt still has both ends."""
    from pytest_parslflow.report import logs

    path = tmp_path / "parsl.log"
    path.write_bytes(b"".join(b"ERROR Task 3 failed %d\n" % n for n in range(200_000)))
    data = path.read_bytes()
    starts = logs._hit_starts(data, len(data), re.compile(task_pattern([3]) or b""))
    assert len(starts) <= 2 * logs._CHUNK_CANDIDATES
    chosen = excerpt(path, task_pattern([3]), 40)
    assert chosen.lines[0] == "ERROR Task 3 failed 0"
    assert chosen.lines[-1] == "ERROR Task 3 failed 199999"
    assert len(chosen.lines) <= 40
