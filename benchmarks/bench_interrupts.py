"""What an interrupted or stuck session leaves, and how long pytest runs after its end.

Run as ``.venv/bin/python benchmarks/bench_interrupts.py``. Two sessions, each with a
temporary directory of its own (``TMPDIR``), started with default signal
dispositions, and a session fixture's helper process (its command line says
``parsl``) that writes down every signal it receives:

- a thread app stuck in ``while True`` whose test times out (``timeout=2``): seconds
  pytest runs after its summary line, against the same session whose app returns
  (the interpreter's own teardown, the same in both, takes a second or two here):
  the difference is the target, 0 (the app's thread never keeps pytest from exiting);
- HTEX with monitoring, then a thread bash app, sent SIGTERM mid-test (a CI cancel):
  seconds until pytest exits, processes of the session left (by an environment
  token), new entries in its temporary directory, signals the helper received.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from statistics import median

from _common import processes_marked

HELPER = r"""
import signal, sys, time
def note(signum, frame):
    with open(sys.argv[1], "a") as out:
        out.write(signal.Signals(signum).name + "\n")
for name in ("SIGINT", "SIGTERM", "SIGHUP"):
    signal.signal(getattr(signal, name), note)
while True:
    time.sleep(1)
"""

CONFTEST = f"""
import os, subprocess, sys
import pytest

HELPER = {HELPER!r}

@pytest.fixture(scope="session", autouse=True)
def helper():
    server = subprocess.Popen([sys.executable, "-c", HELPER, os.environ["BENCH_SIGNALS"], "parsl"])
    yield
    server.kill()
    server.wait()
"""

STUCK = """
import pytest
from parsl import python_app

@python_app
def forever(stuck):
    import time
    while stuck:
        time.sleep(0.1)

@pytest.mark.parsl(timeout=2)
def test_stuck():
    import os
    forever(os.environ.get("BENCH_STUCK") == "1").result()
"""

INTERRUPTED = """
import os, pathlib
import pytest
from parsl import bash_app, python_app

@bash_app
def sleeps():
    return "sleep 60"

@python_app
def slow():
    import time
    time.sleep(60)

@pytest.mark.parsl(executor="htex", monitoring=True)
def test_htex():
    future = slow()
    import time
    time.sleep(2)
    future.cancel()

@pytest.mark.parsl
def test_thread_bash():
    future = sleeps()
    pathlib.Path(os.environ["BENCH_READY"]).write_text("")
    future.result()
"""

_SUMMARY = re.compile(r"^=+ .* in [0-9.]+s.* =+$")


def _start(folder: Path, mark: str, *args: str) -> tuple[subprocess.Popen[str], Path]:
    tmp = folder / f"systmp-{uuid.uuid4().hex[:6]}"
    tmp.mkdir()
    env = dict(os.environ, BENCH_MARK=mark, TMPDIR=str(tmp))
    env.update(BENCH_SIGNALS=str(folder / "signals"), BENCH_READY=str(folder / "ready"))
    env.pop("PYTEST_ADDOPTS", None)

    def default_signals() -> None:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)

    command = [sys.executable, "-m", "pytest", "-p", "parslflow", "-p", "no:cacheprovider"]
    command += ["-p", "no:randomly", f"--basetemp={folder / 'basetemp'}", *args]
    process = subprocess.Popen(
        command,
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=default_signals,
    )
    return process, tmp


def _after_summary(folder: Path, mark: str, stuck: bool) -> float:
    """Seconds pytest runs after printing its summary line."""
    os.environ["BENCH_STUCK"] = "1" if stuck else "0"
    process, _ = _start(folder, mark, "test_stuck.py")
    assert process.stdout is not None
    summary_at = None
    for line in process.stdout:
        if _SUMMARY.match(line.strip()):
            summary_at = time.monotonic()
    process.wait(timeout=600)
    if summary_at is None:
        raise RuntimeError("no summary line")
    return time.monotonic() - summary_at


def _interrupted(folder: Path, mark: str) -> tuple[float, int, int]:
    """Seconds from SIGTERM to exit, processes left, new temporary entries."""
    process, tmp = _start(folder, mark, "test_interrupted.py")
    ready = folder / "ready"
    while not ready.exists() and process.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=600)
    seconds = time.monotonic() - sent
    if "KeyboardInterrupt" not in output:
        raise RuntimeError(output[-3000:])
    deadline = time.monotonic() + 30  # the resource tracker ends once its last client did
    while (left := processes_marked(mark)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return seconds, left, len(os.listdir(tmp))


def main() -> None:
    mark = uuid.uuid4().hex
    with tempfile.TemporaryDirectory(prefix="bench_interrupts_") as tmp:
        folder = Path(tmp)
        (folder / "pytest.ini").write_text("[pytest]\n")
        (folder / "conftest.py").write_text(textwrap.dedent(CONFTEST))
        (folder / "test_stuck.py").write_text(textwrap.dedent(STUCK))
        (folder / "test_interrupted.py").write_text(textwrap.dedent(INTERRUPTED))
        stuck = [_after_summary(folder, mark, True) for _ in range(3)]
        returns = [_after_summary(folder, mark, False) for _ in range(3)]
        seconds, left, entries = _interrupted(folder, mark)
        signals = folder / "signals"
        signalled = len(signals.read_text().split()) if signals.exists() else 0
    extra = max(0.0, median(stuck) - median(returns))
    rows: list[tuple[str, float, float | None]] = [
        ("app that returns: seconds pytest runs after its summary", median(returns), None),
        ("stuck thread app: seconds pytest runs after its summary", median(stuck), None),
        ("stuck thread app: seconds more than the app that returns", extra, 0.5),
        ("SIGTERM mid-test: seconds until pytest exits", seconds, 5.0),
        ("SIGTERM mid-test: processes of the session left", float(left), 0.0),
        ("SIGTERM mid-test: new entries in its temporary directory", float(entries), 0.0),
        ("signals a helper process saying 'parsl' received", float(signalled), 0.0),
    ]
    print(f"{'figure':<62}{'value':>8}{'target':>8}  met")
    print("-" * 84)
    for name, value, target in rows:
        if target is None:
            print(f"{name:<62}{value:>8.2f}")
            continue
        met = "yes" if value <= target else "NO"
        print(f"{name:<62}{value:>8.2f}{target:>8.1f}  {met}")


if __name__ == "__main__":
    main()
