"""The warm start of the plugin's HTEX, on the test session's side.

Each test's own HTEX still gets its own interchange and worker pool, ports, keys and
run directory; what it no longer pays for is two new interpreters importing Parsl.
When the first HTEX test of a session (of each xdist worker) is about to run, the
session starts one *warm parent* (``_warm_parent``), a child of the session's process
in which Parsl is imported, and every later interchange and worker pool is forked from
it (through ``_warm_launch``, which stands in for them where they were launched).

- The warm parent forks before any thread, ZMQ context or ZMQ socket exists in it,
  and holds nothing of any test.
- It is the session's own: :func:`warm_parent_pids` names it, so the leak guard never
  counts it as a test's; it ends at the end of the session (and so when pytest is
  interrupted), and by itself when the session's process is gone.
- If it died, the next HTEX test starts the cold way, saying so in a
  :class:`WarmStartWarning`, and the test after it starts a new warm parent.
- ``PARSLFLOW_WARM_START=0`` in the environment forces the cold path.

This module imports only the standard library: the session imports it without Parsl.
"""

from __future__ import annotations

import atexit
import os
import secrets
import select
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

#: the environment variable that switches the warm start off (``0``) or on (``1``)
WARM_START_VARIABLE = "PARSLFLOW_WARM_START"
_ON = ("1", "on", "true", "yes", "")
_OFF = ("0", "off", "false", "no")
#: seconds the warm parent gets for its imports (Parsl's take about one), after which
#: the session gives up on it
READY_TIMEOUT = 120.0
#: seconds the warm parent gets to exit once told to, before SIGKILL
STOP_GRACE = 5.0
#: variables that would make the warm parent measure itself; forked processes whose
#: launchers carry them start their coverage as a new interpreter would
_COVERAGE_STARTUP = ("COVERAGE_PROCESS_START", "COVERAGE_PROCESS_CONFIG")

#: see ``_warm_parent.ROOM_VARIABLE``: bytes for a forked process's environment (a
#: single variable may hold up to 128 KiB on Linux)
_ROOM_VARIABLE = "PARSLFLOW_WARM_ROOM"
_ROOM = 120_000
_ROOM_ARGUMENTS = 8192

_HERE = Path(__file__).resolve().parent


class WarmStartWarning(UserWarning):
    """The HTEX of a test started the cold way although the warm start is on."""


class WarmStartSwitchError(ValueError):
    """``PARSLFLOW_WARM_START`` holds a value that is neither on nor off."""


def warm_start_enabled() -> bool:
    """Whether the warm start is on: ``PARSLFLOW_WARM_START`` is unset or says so."""
    value = os.environ.get(WARM_START_VARIABLE, "")
    if value.strip().lower() in _ON:
        return True
    if value.strip().lower() in _OFF:
        return False
    raise WarmStartSwitchError(
        f"{WARM_START_VARIABLE}={value!r}: use 1 (warm start, the default) or 0 (start "
        f"every test's HTEX the cold way)"
    )


def check_warm_start_switch() -> None:
    """A bad ``PARSLFLOW_WARM_START`` is a usage error at start-up."""
    try:
        warm_start_enabled()
    except WarmStartSwitchError as exc:
        message = str(exc)
    else:
        return
    import pytest

    raise pytest.UsageError(message)


class WarmParent:
    """The session's warm parent process."""

    def __init__(self) -> None:
        self.address = f"parslflow-warm-{os.getpid()}-{secrets.token_hex(8)}"
        command = [sys.executable, str(_HERE / "_warm_parent.py"), self.address]
        if "coverage" in sys.modules:  # measured workers import it: import it once, here
            command.append("--preload=coverage")
        # room for the command lines of the processes it forks (see _warm_parent)
        command += [""] * _ROOM_ARGUMENTS
        environment = {k: v for k, v in os.environ.items() if k not in _COVERAGE_STARTUP}
        # room for the environments of the processes it forks (see _warm_parent)
        environment[_ROOM_VARIABLE] = "." * _ROOM
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,  # never written: it closes when this process is gone
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment,
        )
        self.pid = self.process.pid
        self.started = time.monotonic()
        self.ready = False
        #: what it printed so far: ``ready PID`` once its imports are done
        self.answer = b""
        #: the process that started it: a process forked from the session (pytest-forked)
        #: has a copy of this object, and neither waits for nor ends it
        self.owner = os.getpid()

    def _read_until(self, line: bytes, timeout: float) -> str | None:
        """Read what it prints until ``line`` (a line start): ``""``; ``None`` if that
        takes over ``timeout`` seconds; else why it cannot come."""
        out = self.process.stdout
        assert out is not None
        deadline = time.monotonic() + timeout
        while not any(seen.startswith(line) for seen in self.answer.split(b"\n")[:-1]):
            left = max(0.0, deadline - time.monotonic())
            readable, _, _ = select.select([out], [], [], left)
            if not readable:
                return None
            chunk = os.read(out.fileno(), 256)
            if not chunk:
                self.process.wait()
                return self._ended()
            self.answer += chunk
        return ""

    def wait_listening(self) -> str:
        """Wait until it listens (before its imports): ``""``, or why it does not."""
        state = self._read_until(b"listening", READY_TIMEOUT)
        if state is None:
            self.stop()
            return f"it did not listen within {READY_TIMEOUT:.0f} s"
        return state

    def check_ready(self) -> str | None:
        """Whether it can fork: ``""``; ``None`` while its imports run; else why it
        cannot."""
        if self.ready:
            return ""
        state = self._read_until(b"ready ", 0.0)
        if state is None and time.monotonic() - self.started > READY_TIMEOUT:
            self.stop()
            return f"it did not start within {READY_TIMEOUT:.0f} s"
        if state == "":
            self._close_output()
            self.ready = True
        return state

    def _ended(self) -> str:
        why = f"it exited with code {self.process.returncode}"
        err = self.process.stderr
        if err is not None and not err.closed:
            text = err.read().decode(errors="replace").strip()
            if text:
                why += ": " + text.splitlines()[-1]
        self._close_output()
        return why

    def _close_output(self) -> None:
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """End it: its standard input closes, then SIGKILL after a grace period."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._close_output()


_parent: WarmParent | None = None
#: why the warm start is off for the rest of the session (it could not start)
_failed = ""


@dataclass(frozen=True)
class WarmLaunch:
    """Where a test's HTEX starts from: the warm parent listening at ``address``."""

    address: str
    #: whether the interchange starts from it too. While the warm parent imports (the
    #: first HTEX test of a session), only the worker pool waits for it, which would
    #: take as long to import on its own, and the interchange starts the cold way: it
    #: imports less, and the test's setup, which waits for it, takes no longer than
    #: on the cold path (a ``timeout`` counts it)
    interchange: bool


def warm_launch() -> WarmLaunch | None:
    """Where this test's HTEX starts from: this session's warm parent, started on
    first use; ``None`` where it starts the cold way (a warning says why, unless the
    switch says so)."""
    global _parent, _failed
    if not warm_start_enabled() or not sys.platform.startswith("linux") or _failed:
        return None
    if _parent is not None and _parent.owner != os.getpid():
        # forked from the session (pytest-forked): the session's warm parent is not this
        # process's child to wait for; the session's token still marks what it forks
        return None
    if _parent is None:
        if not _parents_started:
            atexit.register(stop_warm_parent)
        _parent = WarmParent()
        _parents_started.append(_parent.pid)
        state: str | None = _parent.wait_listening()
        if not state:
            return WarmLaunch(_parent.address, interchange=False)
    else:
        state = _parent.check_ready()
    if state is None:
        return WarmLaunch(_parent.address, interchange=False)
    if state:
        _failed, _parent = state, None
        warnings.warn(
            f"the warm parent of this session's HTEX could not start ({state}); every "
            f"HTEX of this session starts the cold way",
            WarmStartWarning,
            stacklevel=2,
        )
        return None
    if _parent.alive():
        return WarmLaunch(_parent.address, interchange=True)
    dead, _parent = _parent, None
    dead.process.wait()
    warnings.warn(
        f"the warm parent of this session's HTEX (pid {dead.pid}) ended "
        f"({dead._ended()}); this test's HTEX starts the cold way, and the next one "
        f"starts a new warm parent",
        WarmStartWarning,
        stacklevel=2,
    )
    return None


_parents_started: list[int] = []


def warm_parent_pids() -> frozenset[int]:
    """The pid of this session's warm parent, while it runs: the session's own process,
    a child of it, never a test's."""
    if _parent is None or _parent.process.returncode is not None:
        return frozenset()
    return frozenset({_parent.pid})


def stop_warm_parent() -> None:
    """End this session's warm parent, if one runs (at the end of the session)."""
    global _parent
    parent, _parent = _parent, None
    if parent is not None and parent.owner == os.getpid():
        parent.stop()
