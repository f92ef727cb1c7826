"""Core overhead benchmark for pytest-parslflow: the plugin against a handwritten conftest.

Run from the repository root::

    .venv/bin/python benchmarks/bench_core.py [--tests 200] [--repeats 5] [--collect-repeats 15]

Everything is measured side by side in one run and reported as ratios: these machines are
shared and noisy, so absolute times mean little and nothing here asserts on time.

Benchmark 1, per-test cost of a marked thread test (``--tests`` tests per suite):

(a) handwritten: a conftest fixture doing ``with parsl.load(fresh_thread_config(run_dir)):``
    per test, with a fresh ``Config(executors=[ThreadPoolExecutor(max_threads=2)],
    run_dir=<tmp_path based>)`` each time, the plugin disabled (``-p no:parslflow``; it is
    otherwise autoloaded through its entry point);
(b) plugin: the same tests marked ``@pytest.mark.parsl`` with no fixture, run with
    ``-p parslflow``.

Every test calls one trivial ``python_app`` and waits for ``.result()``.

How per-test time is measured: from pytest's own durations. A tiny recording plugin
(``-p bench_durations``, loaded in both variants alike) sums each test's ``TestReport.duration``
over its setup, call and teardown phases (the figure ``--junitxml`` reports as a testcase's
``time`` with pytest's default ``junit_duration_report = total``, but at full precision: junitxml
rounds to milliseconds, coarse against a per-test cost of a few milliseconds). It includes loading
and cleaning up the DFK in either variant and excludes interpreter start-up and collection. Per
session we take the mean and the median of the per-test times; the mean also carries one-off
costs paid by the first test (the median shows the steady per-test cost). (a) and (b) run
alternately, ``--repeats`` times after one untimed warm-up each, and the table reports the
median over the repeats of each figure; the ratio is (b)/(a) of those medians.

Benchmark 2, start-up and collection of a suite without Parsl tests: ``--tests`` plain
``def test_i(): assert True`` functions, no Parsl import anywhere, ``pytest --collect-only -q``
with ``-p no:parslflow`` and with ``-p parslflow``, alternately ``--collect-repeats`` times
after one untimed warm-up each; the figure is the median wall time of the subprocess. A
``pytest_sessionfinish`` hook in the suite's conftest writes ``'parsl' in sys.modules`` to a
file, which the table reports for both variants: loading the plugin must not import Parsl.
It runs with bytecode caching (``PYTHONPYCACHEPREFIX`` in the temporary directory, filled by
the warm-up), as after any ``pip install``; where the environment sets
``PYTHONDONTWRITEBYTECODE`` (this sandbox does) it runs a second time as the environment
has it, where an editable install compiles the plugin's source at every start.

Every session runs as a subprocess of this interpreter with ``-q -p no:cacheprovider``, its
own ``pytest.ini`` (so the repository's configuration is not picked up) and a ``--basetemp``
inside this script's temporary directory, which is removed at the end. Each subprocess runs
in its own process group, which is killed if the session overruns its timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from _common import Session, pytest_command, run_session

PYTEST_INI = "[pytest]\n"
SESSION_TIMEOUT_S = 900.0
RATIO_TARGET_PER_TEST = 1.2
RATIO_TARGET_COLLECT = 1.05
PLUGIN_OFF = "no:parslflow"
PLUGIN_ON = "parslflow"

HANDWRITTEN_CONFTEST = """\
from collections.abc import Iterator
from pathlib import Path

import parsl
import pytest
from parsl.config import Config
from parsl.executors.threads import ThreadPoolExecutor


def fresh_thread_config(run_dir: Path) -> Config:
    return Config(executors=[ThreadPoolExecutor(max_threads=2)], run_dir=str(run_dir))


@pytest.fixture
def handwritten_dfk(tmp_path: Path) -> Iterator[None]:
    with parsl.load(fresh_thread_config(tmp_path / "runinfo")):
        yield
"""

HANDWRITTEN_TESTS = """\
import pytest
from parsl import python_app


@python_app
def trivial() -> int:
    return 1


@pytest.mark.parametrize("i", range({n}))
def test_app(handwritten_dfk: None, i: int) -> None:
    assert trivial().result() == 1
"""

PLUGIN_TESTS = """\
import pytest
from parsl import python_app


@python_app
def trivial() -> int:
    return 1


@pytest.mark.parsl
@pytest.mark.parametrize("i", range({n}))
def test_app(i: int) -> None:
    assert trivial().result() == 1
"""

DURATIONS_PLUGIN = """\
import json
import os
from collections import defaultdict

_TOTALS = defaultdict(float)


def pytest_runtest_logreport(report):
    _TOTALS[report.nodeid] += report.duration


def pytest_sessionfinish(session, exitstatus):
    with open(os.environ["BENCH_DURATIONS"], "w") as out:
        json.dump(dict(_TOTALS), out)
"""

SYS_MODULES_CONFTEST = """\
import os
import sys


def pytest_sessionfinish(session, exitstatus):
    with open(os.environ["BENCH_PARSL_PROBE"], "w") as probe:
        probe.write(str("parsl" in sys.modules))
"""


@dataclass(frozen=True)
class Row:
    """One line of the result table."""

    label: str
    baseline: str
    plugin: str
    ratio: str = ""
    target: str = ""
    met: str = ""


def run_pytest(
    suite: Path, plugin: str, extra: Sequence[str], env: dict[str, str | None] | None = None
) -> Session:
    """Run pytest on ``suite`` in a subprocess (own process group) and time it."""
    command = pytest_command(
        "-q", "-p", plugin, "--rootdir", str(suite), "-c", str(suite / "pytest.ini"), *extra
    )
    return run_session([*command, str(suite)], suite, env, SESSION_TIMEOUT_S)


def write_suite(root: Path, name: str, files: dict[str, str]) -> Path:
    suite = root / name
    suite.mkdir()
    (suite / "pytest.ini").write_text(PYTEST_INI)
    for filename, text in files.items():
        (suite / filename).write_text(text)
    return suite


def write_durations_plugin(root: Path) -> Path:
    """The recording plugin's directory, to put on PYTHONPATH."""
    plugin_dir = root / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / "bench_durations.py").write_text(DURATIONS_PLUGIN)
    return plugin_dir


@dataclass(frozen=True)
class PerTest:
    mean_s: float
    median_s: float
    wall_s: float


def run_per_test(
    suite: Path, plugin: str, n_tests: int, workdir: Path, plugin_dir: Path
) -> PerTest:
    durations = workdir / "durations.json"
    durations.unlink(missing_ok=True)
    pythonpath = os.pathsep.join(p for p in (str(plugin_dir), os.environ.get("PYTHONPATH")) if p)
    session = run_pytest(
        suite,
        plugin,
        ["-p", "bench_durations", f"--basetemp={workdir / 'basetemp'}"],
        env={"BENCH_DURATIONS": str(durations), "PYTHONPATH": pythonpath},
    )
    if session.returncode != 0:
        raise RuntimeError(f"suite {suite.name} failed ({plugin}):\n{session.output[-5000:]}")
    times = list(json.loads(durations.read_text()).values())
    if len(times) != n_tests:
        raise RuntimeError(f"suite {suite.name}: expected {n_tests} tests, got {len(times)}")
    return PerTest(statistics.fmean(times), statistics.median(times), session.wall_s)


def run_collect(
    suite: Path, plugin: str, n_tests: int, workdir: Path, bytecode: dict[str, str | None]
) -> tuple[float, bool]:
    probe = workdir / "parsl_in_sys_modules.txt"
    probe.unlink(missing_ok=True)
    session = run_pytest(
        suite,
        plugin,
        ["--collect-only", f"--basetemp={workdir / 'basetemp'}"],
        env={"BENCH_PARSL_PROBE": str(probe), **bytecode},
    )
    if session.returncode != 0 or f"{n_tests} tests collected" not in session.output:
        raise RuntimeError(f"collection failed ({plugin}):\n{session.output[-5000:]}")
    return session.wall_s, probe.read_text().strip() == "True"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def ratio_row(label: str, base: float, plug: float, target: float | None, unit: str) -> Row:
    fmt = ms if unit == "ms" else (lambda s: f"{s:.3f} s")
    ratio = plug / base if base > 0 else float("inf")
    if target is None:
        return Row(label, fmt(base), fmt(plug), f"{ratio:.3f}", "(info)", "")
    return Row(label, fmt(base), fmt(plug), f"{ratio:.3f}", f"<= {target}", _yes(ratio <= target))


def _yes(ok: bool) -> str:
    return "yes" if ok else "NO"


def print_table(title: str, rows: Sequence[Row], header: Row) -> None:
    all_rows = [header, *rows]
    widths = [
        max(len(getattr(row, field)) for row in all_rows)
        for field in ("label", "baseline", "plugin", "ratio", "target", "met")
    ]

    def fmt(row: Row) -> str:
        cells = (row.label, row.baseline, row.plugin, row.ratio, row.target, row.met)
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    line = fmt(header)
    print(title)
    print("=" * len(line))
    print(line)
    print("-" * len(line))
    for row in rows:
        print(fmt(row))
    print("=" * len(line))


def bench_per_test(root: Path, n_tests: int, repeats: int) -> list[Row]:
    handwritten = write_suite(
        root,
        "handwritten",
        {
            "conftest.py": HANDWRITTEN_CONFTEST,
            "test_handwritten.py": HANDWRITTEN_TESTS.format(n=n_tests),
        },
    )
    plugin = write_suite(root, "plugin", {"test_plugin.py": PLUGIN_TESTS.format(n=n_tests)})
    work = root / "work_per_test"
    work.mkdir()
    plugin_dir = write_durations_plugin(root)

    print(f"[1] per-test cost: {n_tests} tests per suite, warm-up + {repeats} alternating repeats")
    run_per_test(handwritten, PLUGIN_OFF, n_tests, work, plugin_dir)
    run_per_test(plugin, PLUGIN_ON, n_tests, work, plugin_dir)
    base_runs: list[PerTest] = []
    plug_runs: list[PerTest] = []
    for i in range(repeats):
        base_runs.append(run_per_test(handwritten, PLUGIN_OFF, n_tests, work, plugin_dir))
        plug_runs.append(run_per_test(plugin, PLUGIN_ON, n_tests, work, plugin_dir))
        b, p = base_runs[-1], plug_runs[-1]
        print(
            f"    repeat {i + 1}: handwritten mean {ms(b.mean_s)} median {ms(b.median_s)}"
            f" | plugin mean {ms(p.mean_s)} median {ms(p.median_s)}"
        )

    def med(runs: list[PerTest], attr: str) -> float:
        return statistics.median(getattr(run, attr) for run in runs)

    return [
        ratio_row(
            "1. per-test mean (setup+call+teardown)",
            med(base_runs, "mean_s"),
            med(plug_runs, "mean_s"),
            RATIO_TARGET_PER_TEST,
            "ms",
        ),
        ratio_row(
            "1. per-test median (setup+call+teardown)",
            med(base_runs, "median_s"),
            med(plug_runs, "median_s"),
            RATIO_TARGET_PER_TEST,
            "ms",
        ),
        ratio_row(
            f"1. session wall time, {n_tests} tests",
            med(base_runs, "wall_s"),
            med(plug_runs, "wall_s"),
            None,
            "s",
        ),
    ]


def bench_collect(root: Path, n_tests: int, repeats: int) -> list[Row]:
    tests = "".join(f"def test_{i}():\n    assert True\n\n\n" for i in range(n_tests))
    suite = write_suite(
        root,
        "no_parsl",
        {"conftest.py": SYS_MODULES_CONFTEST, "test_plain.py": tests.rstrip() + "\n"},
    )
    work = root / "work_collect"
    work.mkdir()
    # With bytecode caching, as after any `pip install` (which compiles the package) or a
    # first run: .pyc files under the temporary directory, written by the warm-up runs.
    # Where the environment forbids writing bytecode (PYTHONDONTWRITEBYTECODE, set on some
    # CI images), an editable install compiles the plugin's source at every start: a
    # second figure shows that case.
    variants: list[tuple[str, dict[str, str | None]]] = [
        (
            "bytecode cached",
            {"PYTHONDONTWRITEBYTECODE": None, "PYTHONPYCACHEPREFIX": str(root / "pycache")},
        )
    ]
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        variants.append(("PYTHONDONTWRITEBYTECODE set", {}))

    rows: list[Row] = []
    parsl_off: list[bool] = []
    parsl_on: list[bool] = []
    for label, bytecode in variants:
        print(
            f"[2] collect-only ({label}): {n_tests} plain tests, warm-up + {repeats} "
            "alternating repeats"
        )
        run_collect(suite, PLUGIN_OFF, n_tests, work, bytecode)
        run_collect(suite, PLUGIN_ON, n_tests, work, bytecode)
        base_walls: list[float] = []
        plug_walls: list[float] = []
        for _ in range(repeats):
            wall, imported = run_collect(suite, PLUGIN_OFF, n_tests, work, bytecode)
            base_walls.append(wall)
            parsl_off.append(imported)
            wall, imported = run_collect(suite, PLUGIN_ON, n_tests, work, bytecode)
            plug_walls.append(wall)
            parsl_on.append(imported)
        print("    walls no:parslflow: " + ", ".join(f"{w:.3f}" for w in base_walls))
        print("    walls    parslflow: " + ", ".join(f"{w:.3f}" for w in plug_walls))
        rows.append(
            ratio_row(
                f"2. --collect-only wall, {n_tests} tests, {label}",
                statistics.median(base_walls),
                statistics.median(plug_walls),
                RATIO_TARGET_COLLECT,
                "s",
            )
        )
    return [
        *rows,
        Row(
            "2. 'parsl' in sys.modules at end",
            str(any(parsl_off)),
            str(any(parsl_on)),
            "",
            "False",
            _yes(not any(parsl_on)),
        ),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", type=int, default=200, help="tests per suite (200)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of benchmark 1 (5)")
    parser.add_argument(
        "--collect-repeats", type=int, default=15, help="repeats of benchmark 2 (15)"
    )
    args = parser.parse_args(argv)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_core_") as tmp:
        root = Path(tmp)
        rows = bench_per_test(root, args.tests, args.repeats)
        rows += bench_collect(root, args.tests, args.collect_repeats)
    elapsed = time.perf_counter() - started

    print()
    print_table(
        f"pytest-parslflow core benchmark (python {sys.version.split()[0]},"
        f" {os.cpu_count()} cpus, {elapsed:.0f} s total)",
        rows,
        Row(
            "figure (median over repeats)",
            "baseline",
            "plugin",
            "ratio",
            "target",
            "met",
        ),
    )
    print(
        textwrap.dedent(
            f"""\
            baseline: 1. handwritten conftest `with parsl.load(fresh_thread_config(run_dir))`,
                         -p {PLUGIN_OFF};  2. plain tests, -p {PLUGIN_OFF}
            plugin:   1. @pytest.mark.parsl, no fixture, -p {PLUGIN_ON};
                      2. plain tests, -p {PLUGIN_ON}
            ratio = plugin / baseline. Per-test figures are pytest's TestReport durations
            summed over setup + call + teardown; wall times are whole pytest subprocesses.
            Shared, noisy machine: ratios are indicative, nothing is asserted."""
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
