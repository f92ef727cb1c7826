"""How long a test that uses a local HighThroughputExecutor takes, side by side.

Run from the repository root::

    .venv/bin/python benchmarks/bench_htex.py [--tests N] [--rounds R] [--variants abcw]
        [--matrix N] [--keep DIR]

It writes a small test file into a temporary directory and runs one pytest
subprocess for each of:

(a) a handwritten fixture, ``with parsl.load(Config(executors=[HighThroughputExecutor(
    label='htex_local', provider=LocalProvider(), address='127.0.0.1')]))``, Parsl defaults;
(b) the same fixture with ``Config(strategy_period=0.1)``;
(c) tests marked ``@pytest.mark.parsl(executor="htex")``, run with ``-p parslflow`` on
    the cold path (``PARSLFLOW_WARM_START=0``: interchange and pool are new interpreters);
(w) the same tests with the warm start (the default).

Every test loads its DataFlowKernel, runs one trivial app and cleans up. The
per-test time is what pytest reports (setup + call + teardown, from its JUnit
XML); the table shows medians, the first test of each session on its own (with
the warm start it starts the warm parent), and the ratios of (w) and (c) to the
others. A start-up breakdown follows, read from the timestamps in each run's
Parsl logs, as seconds after the DataFlowKernel started. (a) and (b) find
Parsl's scripts on PATH and the test module on PYTHONPATH, as such a fixture
needs; (c) and (w) run with neither, as the plugin promises.

``--matrix N`` then runs N tests marked ``executor=["thread", "htex"]`` (2N test
items) in one session on the cold path and one with the warm start, interleaved
``--rounds`` times, and prints each session's wall time and their ratio.

Nothing here asserts on time. Each pytest runs in its own session, and whatever
process of that session is still running after it ends is reported and killed.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from _common import pytest_command, run_session

CONFTEST = """
import os

import parsl
import pytest
from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.providers import LocalProvider


@pytest.fixture
def htex_dfk(tmp_path):
    period = os.environ.get("BENCH_STRATEGY_PERIOD")
    extra = {} if period is None else {"strategy_period": float(period)}
    config = Config(
        executors=[
            HighThroughputExecutor(
                label="htex_local", provider=LocalProvider(), address="127.0.0.1"
            )
        ],
        run_dir=str(tmp_path / "runinfo"),
        **extra,
    )
    with parsl.load(config) as dfk:
        yield dfk
"""

HANDWRITTEN_TESTS = """
import pytest
from parsl import python_app


@python_app
def add(a, b):
    return a + b


@pytest.mark.parametrize("i", range({n}))
def test_handwritten(htex_dfk, i):
    assert add(i, 1).result() == i + 1
"""

PLUGIN_TESTS = """
import pytest
from parsl import python_app


@python_app
def add(a, b):
    return a + b


@pytest.mark.parametrize("i", range({n}))
@pytest.mark.parsl(executor="htex")
def test_plugin(i):
    assert add(i, 1).result() == i + 1
"""


@dataclass
class Variant:
    key: str
    title: str
    test_file: str
    args: list[str]
    env: dict[str, str]


@dataclass
class Result:
    variant: Variant
    command: str
    exit_code: int
    totals: list[float]
    phases: dict[str, list[float]]
    run_dirs: list[Path]
    leaked: list[str] = field(default_factory=list)
    #: the first test of each session
    firsts: list[float] = field(default_factory=list)


def _venv_bin() -> str:
    return os.path.dirname(sys.executable)


def _path_without(directory: str) -> str:
    keep = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != directory]
    return os.pathsep.join(keep) or "/usr/bin:/bin"


def variants(workdir: Path) -> list[Variant]:
    venv_bin = _venv_bin()
    with_scripts = {
        "PATH": venv_bin + os.pathsep + _path_without(venv_bin),
        "PYTHONPATH": str(workdir),
    }
    return [
        Variant(
            "a",
            "(a) handwritten fixture, Parsl defaults",
            "test_handwritten.py",
            ["-p", "no:parslflow"],
            with_scripts,
        ),
        Variant(
            "b",
            "(b) handwritten fixture, strategy_period=0.1",
            "test_handwritten.py",
            ["-p", "no:parslflow"],
            {**with_scripts, "BENCH_STRATEGY_PERIOD": "0.1"},
        ),
        Variant(
            "c",
            '(c) @pytest.mark.parsl(executor="htex"), cold',
            "test_plugin.py",
            ["-p", "parslflow", "--parslflow-keep=all"],
            {"PATH": _path_without(venv_bin), "PARSLFLOW_WARM_START": "0"},
        ),
        Variant(
            "w",
            '(w) @pytest.mark.parsl(executor="htex"), warm',
            "test_plugin.py",
            ["-p", "parslflow", "--parslflow-keep=all"],
            {"PATH": _path_without(venv_bin), "PARSLFLOW_WARM_START": "1"},
        ),
    ]


def _session_processes(session_id: int) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["status"]):
        try:
            if process.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if os.getsid(process.pid) == session_id:
                found.append(process)
        except (ProcessLookupError, psutil.Error):
            continue
    return found


def reap_session(session_id: int, grace: float = 3.0) -> list[str]:
    """Wait for what the pytest run left behind; kill it by pid, and name it."""
    deadline = time.monotonic() + grace
    left = _session_processes(session_id)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = _session_processes(session_id)
    names = []
    for process in left:
        try:
            names.append(f"{process.pid} {' '.join(process.cmdline())[:120]}")
            process.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(left, timeout=grace)
    return names


_DURATION = re.compile(r"^\s*([\d.]+)s (setup|call|teardown)\s+(\S+)")


def run_variant(variant: Variant, workdir: Path, round_number: int) -> Result:
    name = f"{variant.key}{round_number}"
    basetemp = workdir / f"basetemp-{name}"
    junit = workdir / f"junit-{name}.xml"
    command = pytest_command(
        variant.test_file,
        *variant.args,
        "-p",
        "no:randomly",
        "-vv",
        "--durations=0",
        f"--basetemp={basetemp}",
        f"--junitxml={junit}",
    )
    env: dict[str, str | None] = {**variant.env}
    if "PYTHONPATH" not in variant.env:
        env["PYTHONPATH"] = None
    session = run_session(command, workdir, env)
    leaked = reap_session(session.pid)
    output = session.output
    (workdir / f"output-{name}.txt").write_text(output)
    phases: dict[str, list[float]] = {"setup": [], "call": [], "teardown": []}
    for line in output.splitlines():
        match = _DURATION.match(line)
        if match:
            phases[match.group(2)].append(float(match.group(1)))
    totals = []
    if junit.exists():
        for case in ET.parse(junit).getroot().iter("testcase"):
            totals.append(float(case.get("time", "nan")))
    run_dirs = sorted(p.parent for p in basetemp.glob("**/runinfo/*/parsl.log"))
    shown = " ".join(
        [*(f"{k}={shlex.quote(v)}" for k, v in variant.env.items() if k != "PATH"), "pytest"]
        + [shlex.quote(arg) for arg in command[3:]]
    )
    return Result(variant, shown, session.returncode, totals, phases, run_dirs, leaked, totals[:1])


# --- the start-up breakdown, from Parsl's own log lines -----------------------

_TIMESTAMP = re.compile(r"^(\d{9,}\.\d+) ")


def _stamps(path: Path, pattern: str) -> list[float]:
    wanted = re.compile(pattern)
    stamps = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    for line in lines:
        match = _TIMESTAMP.match(line)
        if match and wanted.search(line):
            stamps.append(float(match.group(1)))
    return stamps


def _first(paths: Sequence[Path], pattern: str) -> float | None:
    stamps = [s for path in paths for s in _stamps(path, pattern)]
    return min(stamps) if stamps else None


def _last(paths: Sequence[Path], pattern: str) -> float | None:
    stamps = [s for path in paths for s in _stamps(path, pattern)]
    return max(stamps) if stamps else None


Event = Callable[[Path], "float | None"]


def _events() -> list[tuple[str, Event, Event | None]]:
    """(name, when it happened, when it started: None means the DFK's start)."""

    def parsl_log(run: Path) -> list[Path]:
        return [run / "parsl.log"]

    def interchange_log(run: Path) -> list[Path]:
        return list(run.glob("htex_local/interchange.log"))

    def manager_logs(run: Path) -> list[Path]:
        return list(run.glob("htex_local/block-*/*/manager.log"))

    def worker_logs(run: Path) -> list[Path]:
        return list(run.glob("htex_local/block-*/*/worker_*.log"))

    return [
        ("block submitted", lambda r: _first(parsl_log(r), r"Launched block"), None),
        ("interchange listening", lambda r: _first(interchange_log(r), r"Bound to port"), None),
        (
            "load has worker port",
            lambda r: _first(parsl_log(r), r"Interchange process started"),
            None,
        ),
        ("pool imported, running", lambda r: _first(manager_logs(r), r""), None),
        ("first worker started", lambda r: _first(worker_logs(r), r"Worker \d+ started"), None),
        ("manager registered", lambda r: _first(interchange_log(r), r"Registered manager"), None),
        ("first task received", lambda r: _first(worker_logs(r), r"Received executor task"), None),
        (
            "first result",
            lambda r: _first(parsl_log(r), r"changing state from launched to exec_done"),
            None,
        ),
        (
            "cleanup (its duration)",
            lambda r: _last(parsl_log(r), r"Unregistering log handler|Terminated executors"),
            lambda r: _first(parsl_log(r), r"DFK cleanup initiated"),
        ),
    ]


def breakdown(run_dirs: Sequence[Path]) -> dict[str, float | None]:
    medians: dict[str, float | None] = {}
    for name, happened, started in _events():
        values = []
        for run in run_dirs:
            if started is None:
                begin = _first([run / "parsl.log"], r"Starting DataFlowKernel")
            else:
                begin = started(run)
            end = happened(run)
            if begin is not None and end is not None:
                values.append(end - begin)
        medians[name] = statistics.median(values) if values else None
    return medians


# --- output ------------------------------------------------------------------


def _median(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.2f}" if values else "-"


def print_report(results: Sequence[Result]) -> None:
    width = max(len(r.variant.title) for r in results)
    print()
    print("Per-test time as pytest reports it (seconds; setup+call+teardown from JUnit XML);")
    print("first: the first test of each session (median over rounds):")
    print()
    header = f"{'variant':<{width}}  tests  median    min    max   first   setup   call  teardown"
    print(header)
    print("-" * len(header))
    for r in results:
        t = r.totals
        low = f"{min(t):.2f}" if t else "-"
        high = f"{max(t):.2f}" if t else "-"
        print(
            f"{r.variant.title:<{width}}  {len(t):>5}  {_median(t):>6} {low:>6} {high:>6}"
            f"  {_median(r.firsts):>6}"
            f"  {_median(r.phases['setup']):>6} {_median(r.phases['call']):>6}"
            f"  {_median(r.phases['teardown']):>8}"
        )
    by_key = {r.variant.key: r for r in results if r.totals}
    for mine, others in (("w", "abc"), ("c", "ab")):
        if mine not in by_key:
            continue
        m = statistics.median(by_key[mine].totals)
        for other in others:
            if other in by_key:
                o = statistics.median(by_key[other].totals)
                print(f"ratio of medians ({mine})/({other}): {m / o:.3f}   ({o / m:.1f}x faster)")
    if "w" in by_key and "c" in by_key and by_key["w"].firsts and by_key["c"].firsts:
        w = statistics.median(by_key["w"].firsts)
        c = statistics.median(by_key["c"].firsts)
        print(f"first test of a session, (w)/(c): {w / c:.3f}")
    print()
    print("Start-up breakdown: median seconds after the DataFlowKernel started")
    print("(from the timestamps in parsl.log, interchange.log, manager.log, worker_N.log):")
    print()
    tables = {r.variant.key: breakdown(r.run_dirs) for r in results}
    keys = [r.variant.key for r in results]
    print(f"{'event':<26}" + "".join(f"{'(' + k + ')':>9}" for k in keys))
    for name, _, _ in _events():
        cells = []
        for k in keys:
            value = tables[k].get(name)
            cells.append(f"{value:>9.3f}" if value is not None else f"{'-':>9}")
        print(f"{name:<26}" + "".join(cells))
    print()
    for r in results:
        status = "ok" if r.exit_code == 0 else f"pytest exit code {r.exit_code}"
        print(f"{r.variant.key}: {status}; command: {r.command}")
        if r.leaked:
            print(f"   left running after pytest ended, killed: {len(r.leaked)}")
            for name in r.leaked:
                print(f"     {name}")
        else:
            print("   nothing of its session left running after it ended")


def import_parsl_seconds(times: int = 3) -> float:
    """How long ``python -c "import parsl"`` takes here now: the yardstick for
    every interpreter that HTEX starts, and for how busy this machine is."""
    spent = []
    for _ in range(times):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import parsl"], check=True)
        spent.append(time.perf_counter() - start)
    return statistics.median(spent)


def merge(results: Sequence[Result]) -> Result:
    """One variant's rounds as one result."""
    first = results[0]
    merged = Result(
        first.variant,
        first.command,
        max((r.exit_code for r in results), key=abs),
        [t for r in results for t in r.totals],
        {k: [v for r in results for v in r.phases[k]] for k in first.phases},
        [d for r in results for d in r.run_dirs],
        [name for r in results for name in r.leaked],
        [t for r in results for t in r.firsts],
    )
    return merged


MATRIX_TESTS = """
import pytest
from parsl import python_app


@python_app
def add(a, b):
    return a + b


@pytest.mark.parametrize("i", range({n}))
@pytest.mark.parsl(executor=["thread", "htex"])
def test_matrix(i):
    assert add(i, 1).result() == i + 1
"""


def run_matrix(workdir: Path, tests: int, rounds: int) -> bool:
    """The executor matrix, one session cold and one warm per round, interleaved."""
    (workdir / "test_matrix.py").write_text(MATRIX_TESTS.format(n=tests))
    walls: dict[str, list[float]] = {"0": [], "1": []}
    ok = True
    for number in range(rounds):
        for switch in ("0", "1"):
            name = "cold" if switch == "0" else "warm"
            print(f"matrix round {number + 1}/{rounds}: {2 * tests} tests, {name} ...", flush=True)
            command = pytest_command(
                "test_matrix.py",
                "-p",
                "parslflow",
                "-p",
                "no:randomly",
                "-q",
                f"--basetemp={workdir / f'basetemp-matrix-{name}{number}'}",
            )
            env: dict[str, str | None] = {"PARSLFLOW_WARM_START": switch, "PYTHONPATH": None}
            session = run_session(command, workdir, env)
            leaked = reap_session(session.pid)
            last = session.output.strip().splitlines()[-1] if session.output.strip() else ""
            print(
                f"   {session.wall_s:.1f} s: {last}"
                + (f"; left running: {leaked}" if leaked else "")
            )
            ok = ok and session.returncode == 0 and not leaked
            walls[switch].append(session.wall_s)
    cold, warm = statistics.median(walls["0"]), statistics.median(walls["1"])
    print()
    print(f'{tests} tests on executor=["thread", "htex"] ({2 * tests} items), session wall time:')
    print(f"  cold (PARSLFLOW_WARM_START=0): {' '.join(f'{w:.1f}' for w in walls['0'])} s")
    print(f"  warm (the default):           {' '.join(f'{w:.1f}' for w in walls['1'])} s")
    print(f"  ratio of medians warm/cold: {warm / cold:.3f}   ({cold / warm:.1f}x faster)")
    per_round = [w / c for w, c in zip(walls["1"], walls["0"], strict=True)]
    print(f"  per round (each pair run back to back): {' '.join(f'{r:.3f}' for r in per_round)}")
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=7, help="tests per variant (default 7)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the variants this many times, interleaved, so that a busy spell "
        "of the machine weighs on all of them alike (default 1)",
    )
    parser.add_argument(
        "--variants", default="abcw", help="which variants to run (default abcw; '' for none)"
    )
    parser.add_argument(
        "--matrix",
        type=int,
        default=0,
        help='then run this many tests on executor=["thread", "htex"], cold and warm',
    )
    parser.add_argument("--keep", type=Path, help="write the runs here and keep them")
    args = parser.parse_args(argv)
    if args.tests < 1 or args.rounds < 1:
        parser.error("--tests and --rounds must be at least 1")

    with tempfile.TemporaryDirectory(prefix="bench_htex_") as scratch:
        workdir = args.keep.resolve() if args.keep else Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "conftest.py").write_text(CONFTEST)
        (workdir / "test_handwritten.py").write_text(HANDWRITTEN_TESTS.format(n=args.tests))
        (workdir / "test_plugin.py").write_text(PLUGIN_TESTS.format(n=args.tests))
        chosen = [v for v in variants(workdir) if v.key in args.variants]
        before = import_parsl_seconds()
        rounds: dict[str, list[Result]] = {v.key: [] for v in chosen}
        for number in range(args.rounds):
            for variant in chosen:
                print(f"round {number + 1}/{args.rounds}: {variant.title} ...", flush=True)
                result = run_variant(variant, workdir, number)
                rounds[variant.key].append(result)
                if result.exit_code != 0:
                    output = workdir / f"output-{variant.key}{number}.txt"
                    print(f"   pytest exit code {result.exit_code}; the end of {output.name}:")
                    print("\n".join(output.read_text().splitlines()[-30:]))
        results = [merge(rounds[v.key]) for v in chosen]
        if results:
            print_report(results)
        matrix_ok = run_matrix(workdir, args.matrix, args.rounds) if args.matrix else True
        after = import_parsl_seconds()
        print(
            f'\nyardstick: `python -c "import parsl"` took {before:.2f} s before '
            f"and {after:.2f} s after the runs (median of 3)"
        )
        if args.keep:
            print(f"runs kept in {workdir}")
    return 0 if matrix_ok and all(r.exit_code == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
