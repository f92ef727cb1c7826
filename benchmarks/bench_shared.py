"""Amortized cost per test of a DFK shared by 50 tests (``scope="session"``) on HTEX.

Run as ``.venv/bin/python benchmarks/bench_shared.py``. In one run it measures, side
by side, 50 trivial HTEX tests with ``scope="session"`` and the same tests with
``scope="function"`` (a DFK each), and 1 shared test (the fixed cost of loading and
closing the one DFK). Per-test times are pytest's own (setup + call + teardown,
summed by a small recording plugin), so interpreter start and collection are left
out. Printed: the amortized cost per shared test, (total of 50 shared tests minus
the single shared test's total) / 49, against the target of 50 ms, and the ratio
to a function-scoped test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Sequence
from pathlib import Path

TARGET_MS = 50.0

RECORDER = """
import json, os

_durations = {}

def pytest_runtest_logreport(report):
    _durations[report.nodeid] = _durations.get(report.nodeid, 0.0) + report.duration

def pytest_sessionfinish(session):
    with open(os.environ["BENCH_DURATIONS"], "w") as f:
        json.dump(_durations, f)
"""

TESTS = """
import pytest
from parsl import python_app

@python_app
def double(x):
    return 2 * x

@pytest.mark.parsl(executor="htex", scope=SCOPE)
@pytest.mark.parametrize("i", range(COUNT))
def test_trivial(i):
    assert double(i).result() == 2 * i
"""


def run_suite(folder: Path, scope: str, count: int) -> list[float]:
    """Per-test seconds (setup + call + teardown) of ``count`` tests in ``scope``."""
    suite = folder / f"{scope}_{count}"
    suite.mkdir()
    (suite / "pytest.ini").write_text("[pytest]\n")
    (suite / "bench_durations.py").write_text(RECORDER)
    source = TESTS.replace("SCOPE", repr(scope)).replace("COUNT", str(count))
    (suite / "test_bench.py").write_text(textwrap.dedent(source))
    out = suite / "durations.json"
    env = dict(os.environ, BENCH_DURATIONS=str(out), PYTHONPATH=str(suite))
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "parslflow",
        "-p",
        "bench_durations",
        "-p",
        "no:cacheprovider",
        f"--basetemp={suite / 'tmp'}",
        "--parslflow-keep=none",
    ]
    done = subprocess.run(command, cwd=suite, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{scope} x{count} failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    durations: dict[str, float] = json.loads(out.read_text())
    return list(durations.values())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tests", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    rows: dict[str, list[float]] = {"amortized": [], "function": [], "one": []}
    with tempfile.TemporaryDirectory(prefix="bench_shared_") as tmp:
        for round_ in range(args.rounds):
            folder = Path(tmp) / f"round{round_}"
            folder.mkdir()
            shared = run_suite(folder, "session", args.tests)
            single = run_suite(folder, "session", 1)
            own = run_suite(folder, "function", 5)
            rows["amortized"].append((sum(shared) - sum(single)) / (args.tests - 1))
            rows["one"].append(sum(single))
            rows["function"].append(statistics.median(own))
    amortized = statistics.median(rows["amortized"]) * 1000
    function = statistics.median(rows["function"]) * 1000
    one = statistics.median(rows["one"]) * 1000
    print(f"HTEX, scope='session', {args.tests} tests, median of {args.rounds} rounds")
    print(f"{'figure':<52}{'value':>12}{'target':>12}  met")
    print("-" * 82)
    met = "yes" if amortized <= TARGET_MS else "NO"
    print(f"{'amortized cost per shared test (ms)':<52}{amortized:>12.1f}{TARGET_MS:>12.0f}  {met}")
    print(f"{'first shared test: load + run + close (ms)':<52}{one:>12.1f}")
    print(f"{'function-scoped HTEX test, median (ms)':<52}{function:>12.1f}")
    print(f"{'ratio amortized / function-scoped':<52}{amortized / function:>12.3f}")


if __name__ == "__main__":
    main()
