"""What the benchmark scripts share: running a pytest session in a subprocess."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Session:
    """One finished pytest subprocess: wall time, exit code, output and pid (the leader
    of its own process group), and the CPU time (user + system) of it and the children it
    waited for: steadier than wall time on a shared machine."""

    wall_s: float
    returncode: int
    output: str
    pid: int
    cpu_s: float = 0.0


def pytest_command(*args: str) -> list[str]:
    """``python -m pytest -p no:cacheprovider <args>`` with this interpreter."""
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]


def run_session(
    command: Sequence[str],
    cwd: Path,
    env: Mapping[str, str | None] | None = None,
    timeout: float | None = None,
) -> Session:
    """Run ``command`` in its own process group with this environment, less
    ``PYTEST_ADDOPTS`` and with ``env`` applied (``None`` removes a variable). The group is
    killed if the session overruns ``timeout`` (then :class:`RuntimeError`) or this
    process is interrupted."""
    child_env = dict(os.environ)
    child_env.pop("PYTEST_ADDOPTS", None)
    for name, value in (env or {}).items():
        if value is None:
            child_env.pop(name, None)
        else:
            child_env[name] = value
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        raise RuntimeError(
            f"pytest session timed out after {timeout} s: {' '.join(command)}\n{output[-3000:]}"
        ) from None
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    wall = time.perf_counter() - start
    now = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = now.ru_utime + now.ru_stime - used.ru_utime - used.ru_stime
    return Session(wall, process.returncode, output, process.pid, cpu)


def processes_marked(mark: str) -> int:
    """How many live processes carry ``BENCH_MARK=<mark>`` in their environment (what a
    benchmark's session started, wherever it ended up in the process tree)."""
    wanted = f"BENCH_MARK={mark}\0".encode()
    count = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            environ = Path(f"/proc/{name}/environ").read_bytes()
            stat = Path(f"/proc/{name}/stat").read_bytes()
        except OSError:
            continue
        if wanted in environ and stat.split(b") ")[-1][:1] != b"Z":
            count += 1
    return count
