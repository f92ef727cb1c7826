"""What the plugin costs a suite whose tests do not use it: plain tests pay nothing.

Run from the repository root::

    .venv/bin/python benchmarks/bench_adoption.py [--tests 2000] [--repeats 7]

Two suites of ``--tests`` trivial tests (``def test_i(): assert i >= 0``), each run as a
whole pytest session with the plugin loaded (``-p parslflow``) and without it
(``-p no:parslflow``), alternately, ``--repeats`` times after one untimed warm-up each:

(a) plain: no Parsl anywhere: until Parsl is imported the plugin does no per-test work;
(b) after Parsl: the first test module imports ``parsl`` and loads nothing (an existing
    suite's conftest or an earlier test did), so every later test is observed: a check of
    whether a DataFlowKernel is loaded, and nothing more.

The figures are the median wall time and the median CPU time (user + system) of the
session subprocess (start-up, collection and run); the table reports the ratios of
medians, plugin over no plugin. Targets: <= 1.03 for (a) and <= 1.05 for (b), judged on
CPU time, which other load on a shared machine disturbs far less than wall time. Side
by side in one run: absolute times mean little here, and nothing asserts on time.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from _common import pytest_command, run_session

TARGETS = {"plain": 1.03, "after Parsl": 1.05}


def write_suite(root: Path, tests: int, import_parsl: bool) -> None:
    root.mkdir()
    (root / "pytest.ini").write_text("[pytest]\n")
    per_module = 200
    for module in range((tests + per_module - 1) // per_module):
        first = module * per_module
        count = min(per_module, tests - first)
        lines = ["import parsl  # noqa: F401\n"] if import_parsl and module == 0 else []
        lines += [f"def test_{first + i}():\n    assert {first + i} >= 0\n" for i in range(count)]
        (root / f"test_m{module:03d}.py").write_text("\n".join(lines))


def session_time(root: Path, plugin: str) -> tuple[float, float]:
    session = run_session(
        pytest_command("-q", "-p", plugin, "-p", "no:randomly", f"--basetemp={root}/.tmp"),
        cwd=root,
        # bytecode cached, as after any pip install (the warm-up fills the cache)
        env={
            "PYTEST_DISABLE_PLUGIN_AUTOLOAD": None,
            "PYTHONDONTWRITEBYTECODE": None,
            "PYTHONPYCACHEPREFIX": str(root.parent / "pycache"),
        },
        timeout=600,
    )
    if session.returncode != 0:
        raise RuntimeError(f"the session failed:\n{session.output[-3000:]}")
    return session.wall_s, session.cpu_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_adoption_") as tmp:
        for name, import_parsl in (("plain", False), ("after Parsl", True)):
            root = Path(tmp) / name.replace(" ", "_")
            write_suite(root, args.tests, import_parsl)
            times: dict[str, list[tuple[float, float]]] = {"no:parslflow": [], "parslflow": []}
            for plugin in times:  # warm-up: bytecode caches, the file system
                session_time(root, plugin)
            for _ in range(args.repeats):
                for plugin, found in times.items():
                    found.append(session_time(root, plugin))
            medians = {
                plugin: [statistics.median(t[i] for t in found) for i in (0, 1)]
                for plugin, found in times.items()
            }
            rows.append((name, medians["no:parslflow"], medians["parslflow"], TARGETS[name]))
    print(f"{args.tests} tests per session, median of {args.repeats} alternating repeats")
    print(
        f"{'suite':<12} {'wall off':>9} {'wall on':>8} {'ratio':>6}"
        f" {'cpu off':>8} {'cpu on':>7} {'ratio':>6} {'target':>7}"
    )
    for name, (wall_off, cpu_off), (wall_on, cpu_on), target in rows:
        ratio = cpu_on / cpu_off
        verdict = "ok" if ratio <= target else "OVER"
        print(
            f"{name:<12} {wall_off:>9.3f} {wall_on:>8.3f} {wall_on / wall_off:>6.3f}"
            f" {cpu_off:>8.3f} {cpu_on:>7.3f} {ratio:>6.3f} {target:>7.2f}  {verdict}"
        )


if __name__ == "__main__":
    main()
