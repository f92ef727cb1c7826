"""CI-integration benchmark for pytest-parslflow: what the picture, the artifacts folder and
the GitHub data cost a failed test with 1,000 tasks, beside the failure report alone; and
what they cost tests that pass.

Run from the repository root::

    .venv/bin/python benchmarks/bench_ci.py [--repeats 3]

These machines are shared and noisy: nothing here asserts on time. The script prints one
table of figures, each with its target and whether it was met.

A temporary suite is run with ``python -m pytest -p parslflow --parslflow-artifacts DIR``
in a subprocess (own process group, killed if it overruns), with ``GITHUB_ACTIONS=true`` and
a ``GITHUB_STEP_SUMMARY`` file, so every integration is on. It holds:

- ``test_fails_<executor>``: 1,000 tasks (250 chains of four apps), 2 chains failing at
  their second app, on the thread executor and on HTEX (2 workers);
- ``test_passes``: 1,000 tasks on the thread executor, all fine;
- 200 plain tests (no marker, no fixture).

The suite's ``conftest.py`` times, inside the session, with ``time.perf_counter``:

- ``report``: ``report.failure.failure_report`` (task summary and excerpts), the report
  alone, as it was before this work;
- ``extra``: everything the CI plugin object (``report/ci.py``) does for the test, its
  ``pytest_runtest_makereport`` wrapper around the plugin's own excluded: drawing the
  picture and naming it in the report, the pytest-html extras (none: no ``--html``),
  copying the run directory into the artifacts folder with ``report.txt``, and the plain
  data for the annotations and the summary;
- the same wrapper's time for ``test_passes`` and, summed, for the 200 plain tests.

It also gives the picture's size and the artifact folder's size. Each figure is the
median over ``--repeats`` sessions.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from _common import pytest_command, run_session

TARGET_EXTRA_S = 0.3
TARGET_SVG_BYTES = 1 << 20
PLAIN_TESTS = 200
TIMEOUT_S = 600.0

CONFTEST = """
import json
import os
import time

from pytest_parslflow.report import ci, failure

TIMINGS = {}


def _add(nodeid, name, seconds):
    TIMINGS.setdefault(nodeid, {}).setdefault(name, 0.0)
    TIMINGS[nodeid][name] += seconds


_report = failure.failure_report


def failure_report(item, *args, **kwargs):
    start = time.perf_counter()
    try:
        return _report(item, *args, **kwargs)
    finally:
        _add(item.nodeid, "report", time.perf_counter() - start)


failure.failure_report = failure_report
_wrapper = ci.ParslCI.runtest_makereport  # what ParslCITests' makereport hook runs


def _timed_makereport(self, item, call):
    # the CI wrapper's own time: before and after the plugin's makereport it wraps
    start = time.perf_counter()
    steps = _wrapper(self, item, call)
    next(steps)
    own = time.perf_counter() - start
    report = yield
    start = time.perf_counter()
    try:
        steps.send(report)
    except StopIteration as stop:
        report = stop.value
    own += time.perf_counter() - start
    _add(item.nodeid, "extra", own)
    return report


ci.ParslCI.runtest_makereport = _timed_makereport


def pytest_sessionfinish(session):
    with open(os.environ["PARSLFLOW_BENCH_OUT"], "w") as out:
        json.dump(TIMINGS, out)
"""

SUITE = """
import pytest
from parsl import python_app


@python_app
def fetch(i):
    return i


@python_app
def calibrate(i):
    if i in (17, 140):
        raise ValueError(f"calibration table missing for station {i}")
    return i


@python_app
def report(i):
    return i


@python_app
def merge(i):
    return i


def chains():
    merged = [merge(report(calibrate(fetch(i)))) for i in range(250)]
    return [m.exception() for m in merged]


@pytest.mark.parsl(executor="thread", workers=4)
def test_fails_thread():
    assert chains() == [None] * 250


@pytest.mark.parsl(executor="htex", workers=2)
def test_fails_htex():
    assert chains() == [None] * 250


@pytest.mark.parsl(executor="thread", workers=4)
def test_passes():
    merged = [merge(report(fetch(i))) for i in range(333)] + [fetch(0)]
    assert [m.result() for m in merged][:3] == [0, 1, 2]


@pytest.mark.parametrize("n", range(PLAIN))
def test_plain(n):
    assert n >= 0
""".replace("PLAIN", str(PLAIN_TESTS))


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def one_session(work: Path, number: int) -> dict[str, float]:
    out = work / f"timings{number}.json"
    artifacts = work / f"artifacts{number}"
    summary = work / "summary.md"
    session = run_session(
        pytest_command(
            "-p",
            "parslflow",
            "-q",
            "-p",
            "no:pytest_github_actions_annotate_failures",
            "--parslflow-artifacts",
            str(artifacts),
            "test_suite.py",
        ),
        cwd=work,
        env={
            "PARSLFLOW_BENCH_OUT": str(out),
            "GITHUB_ACTIONS": "true",
            "GITHUB_STEP_SUMMARY": str(summary),
        },
        timeout=TIMEOUT_S,
    )
    if "2 failed" not in session.output:
        raise RuntimeError(f"expected 2 failed tests:\n{session.output[-3000:]}")
    timings = json.loads(out.read_text())
    figures: dict[str, float] = {}
    for executor in ("thread", "htex"):
        test = timings[f"test_suite.py::test_fails_{executor}"]
        folder = artifacts / f"test_suite.py__test_fails_{executor}"
        figures[f"{executor} report"] = test["report"]
        figures[f"{executor} extra"] = test["extra"]
        figures[f"{executor} svg"] = (folder / "parsl-run.svg").stat().st_size
        figures[f"{executor} artifact"] = _size(folder)
    figures["passing extra"] = timings["test_suite.py::test_passes"]["extra"]
    plain = [v.get("extra", 0.0) for k, v in timings.items() if "test_plain" in k]
    figures["plain extra"] = sum(plain)
    figures["plain median"] = statistics.median(plain)
    figures["annotations"] = sum(
        1 for line in session.output.splitlines() if line.startswith("::error")
    )
    return figures


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="parslflow-bench-ci-") as folder:
        work = Path(folder)
        (work / "conftest.py").write_text(CONFTEST)
        (work / "test_suite.py").write_text(SUITE)
        runs = [one_session(work, n) for n in range(args.repeats)]
    median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    rows = [("figure", "value", "target", "met")]
    for executor in ("thread", "htex"):
        report, extra = median[f"{executor} report"], median[f"{executor} extra"]
        rows += [
            (f"{executor}: failure report alone (1,000 tasks)", f"{report:.3f} s", "", ""),
            (
                f"{executor}: picture + artifacts + CI data, extra",
                f"{extra:.3f} s ({extra / report:.2f}x the report)" if report else f"{extra:.3f} s",
                f"<= {TARGET_EXTRA_S} s",
                "yes" if extra <= TARGET_EXTRA_S else "NO",
            ),
            (
                f"{executor}: parsl-run.svg",
                f"{median[f'{executor} svg'] / 1024:.0f} KiB",
                "<= 1024 KiB",
                "yes" if median[f"{executor} svg"] <= TARGET_SVG_BYTES else "NO",
            ),
            (
                f"{executor}: artifact folder",
                f"{median[f'{executor} artifact'] / 1024:.0f} KiB",
                "",
                "",
            ),
        ]
    passing, plain = median["passing extra"], median["plain extra"]
    rows += [
        ("passing Parsl test (1,000 tasks): CI wrapper", f"{passing * 1e3:.3f} ms", "~0", ""),
        (
            f"{PLAIN_TESTS} plain tests: CI wrapper, summed",
            f"{plain * 1e3:.3f} ms (median {median['plain median'] * 1e6:.1f} us a test)",
            "~0",
            "",
        ),
        ("::error annotations printed", f"{median['annotations']:.0f}", "<= 10", ""),
    ]
    widths = [max(len(str(r[i])) for r in rows) for i in range(4)]
    print(f"bench_ci: median of {args.repeats} sessions (python {sys.version.split()[0]})")
    for index, row in enumerate(rows):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            print("  ".join("-" * w for w in widths))


if __name__ == "__main__":
    main()
