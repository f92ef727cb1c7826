"""How fast faults fail, and what a faulty session leaves behind.

Run as ``.venv/bin/python benchmarks/bench_faults.py``. In one run it times, with
pytest's own per-phase durations:

- a test whose HTEX block cannot start (a failing ``worker_init``, and a missing
  worker command): from the start of its setup to its failure report (target 15 s);
- an HTEX test whose ``timeout`` (3 s) fires while an app runs: from the timeout
  firing to the end of its teardown, i.e. until the report is complete (target 10 s);

and counts, after the session, the processes it started that still run, and the
threads and listening sockets its leak guard reported (target 0 each).
"""

from __future__ import annotations

import json
import tempfile
import textwrap
import uuid
from pathlib import Path

from _common import processes_marked, pytest_command, run_session

TIMEOUT = 3.0
BAD_INIT = "test_bad_worker_init"
NO_COMMAND = "test_missing_worker_command"

CONFTEST = """
import json, os
import pytest
from pytest_parslflow.config import builtin_config

_durations = {}

def pytest_runtest_logreport(report):
    _durations.setdefault(report.nodeid, {})[report.when] = report.duration

def pytest_sessionfinish(session):
    with open(os.environ["BENCH_DURATIONS"], "w") as f:
        json.dump(_durations, f)

@pytest.hookimpl(optionalhook=True)
def pytest_parslflow_make_config(request, settings):
    config = builtin_config(settings)
    executor = config.executors[0]
    if request.node.name == "test_bad_worker_init":
        executor.provider.worker_init = "echo 'no such module' >&2; exit 3"
    if request.node.name == "test_missing_worker_command":
        executor.launch_cmd = "no-such-worker-command"
    return config
"""

TESTS = f"""
import pytest
from parsl import python_app

@python_app
def slow(seconds):
    import time
    time.sleep(seconds)
    return seconds

@pytest.mark.parsl(executor="htex", timeout=60)
def test_bad_worker_init():
    slow(0).result()

@pytest.mark.parsl(executor="htex", timeout=60)
def test_missing_worker_command():
    slow(0).result()

@pytest.mark.parsl(executor="htex", timeout={TIMEOUT})
def test_timeout_fires():
    slow(60).result()
"""


def main() -> None:
    mark = uuid.uuid4().hex
    with tempfile.TemporaryDirectory(prefix="bench_faults_") as tmp:
        folder = Path(tmp)
        (folder / "pytest.ini").write_text("[pytest]\n")
        (folder / "conftest.py").write_text(textwrap.dedent(CONFTEST))
        (folder / "test_faults.py").write_text(textwrap.dedent(TESTS))
        out = folder / "durations.json"
        done = run_session(
            pytest_command("-p", "parslflow", f"--basetemp={folder / 'tmp'}", "-q"),
            folder,
            {"BENCH_DURATIONS": str(out), "BENCH_MARK": mark},
        )
        durations: dict[str, dict[str, float]] = json.loads(out.read_text())
        leftovers = processes_marked(mark)
        reported = [line for line in done.output.splitlines() if "leaked Parsl resources" in line]

    def total(name: str) -> float:
        return sum(durations[f"test_faults.py::{name}"].values())

    rows = [
        (
            "block cannot start (failing worker_init): start to failure, s",
            total("test_bad_worker_init"),
            15.0,
        ),
        (
            "block cannot start (missing worker command): start to failure, s",
            total("test_missing_worker_command"),
            15.0,
        ),
        ("timeout fired to report complete, s", total("test_timeout_fires") - TIMEOUT, 10.0),
        ("processes left running after the session", float(leftovers), 0.0),
        ("leaks the guard reported (threads, sockets, processes)", float(len(reported)), 0.0),
    ]
    print(f"{'figure':<68}{'value':>8}{'target':>8}  met")
    print("-" * 92)
    for name, value, target in rows:
        met = "yes" if value <= target else "NO"
        print(f"{name:<68}{value:>8.2f}{target:>8.0f}  {met}")


if __name__ == "__main__":
    main()
