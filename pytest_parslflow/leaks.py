"""The leak guard: what a test left behind of Parsl (threads, processes, listening
sockets), named and ended where it can be.

Only this session's own processes are ever touched: the session puts a token of
its own in the environment at start-up, which every process it starts inherits,
including HTEX blocks that a provider detaches from the process tree.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pytest_parslflow.lifecycle import TOKEN_VARIABLE

#: seconds a leaked process gets to exit on SIGTERM before SIGKILL
KILL_GRACE = 2.0
#: seconds to let Parsl's own threads finish exiting after a cleanup
THREAD_GRACE = 1.0

_PARSL_PROCESS_WORDS = (b"parsl", b"interchange", b"process_worker_pool", b"_htex_pool")
_PARSL_THREAD_PREFIXES = (
    "Task-Launch",
    "ThreadPoolExecutor-",
    "HTEX-",
    "JobStatusPoller",
    "Interchange",
    "Monitoring",
)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` in the process tree."""
    found: set[int] = set()
    stack = [pid]
    while stack:
        parent = stack.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            for child in _read(f"/proc/{parent}/task/{task}/children").split():
                if int(child) not in found:
                    found.add(int(child))
                    stack.append(int(child))
    return found


def _zombie(pid: int) -> bool:
    return _read(f"/proc/{pid}/stat").split(b") ")[-1][:1] in (b"Z", b"")


def _parent(pid: int) -> int:
    try:
        return int(_read(f"/proc/{pid}/stat").rsplit(b") ", 1)[-1].split()[1])
    except (IndexError, ValueError):
        return 0


#: variables that a batch scheduler sets in the environment of a job's processes
_JOB_VARIABLES = (b"SLURM_JOB_ID", b"PBS_JOBID", b"LSB_JOBID", b"FLUX_JOB_ID", b"COBALT_JOBID")


def _jobs(environ: bytes) -> dict[bytes, bytes]:
    """The batch scheduler job ids named in an environment (``/proc/PID/environ``)."""
    found: dict[bytes, bytes] = {}
    for entry in environ.split(b"\0"):
        name, _, value = entry.partition(b"=")
        if name in _JOB_VARIABLES:
            found[name] = value
    return found


def _started_elsewhere(pid: int, environ: bytes, wanted: bytes, me: int) -> bool:
    """Whether a process carrying the session's token runs in a batch scheduler's job
    that the session submitted (its environment names another job than the session's
    own, or a process without the token, such as slurmstepd, started it): such a job
    is the scheduler's to end once Parsl cancelled it."""
    own = _jobs(b"\0".join(k.encode() + b"=" + v.encode() for k, v in os.environ.items()))
    if any(own.get(name) != job for name, job in _jobs(environ).items()):
        return True
    parent = _parent(pid)
    for _ in range(64):
        if parent <= 1 or parent == me:
            return False
        if wanted not in _read(f"/proc/{parent}/environ"):
            return True
        parent = _parent(parent)
    return False


def _session_processes() -> dict[int, str]:
    """Parsl processes started by this session (pid to command line): those below it in
    the process tree, and those that carry its token (HTEX blocks, which a provider
    detaches from the tree). An interchange renames itself, which hides its
    environment, but it stays a child of the session."""
    token = os.environ.get(TOKEN_VARIABLE, "").encode()
    wanted = TOKEN_VARIABLE.encode() + b"=" + token + b"\0"
    me = os.getpid()
    candidates = _descendants(me)
    if token:
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == me:
                continue
            environ = _read(f"/proc/{name}/environ")
            if wanted in environ and not _started_elsewhere(int(name), environ, wanted, me):
                candidates.add(int(name))
    found: dict[int, str] = {}
    for pid in candidates - _warm_parents():
        command = _read(f"/proc/{pid}/cmdline")
        if command and not _zombie(pid) and any(w in command for w in _PARSL_PROCESS_WORDS):
            found[pid] = _describe(command)
    return found


def _describe(command: bytes) -> str:
    """A process's command line, short enough for a one-line report whatever the
    checkout's path: each absolute path is cut to its last component
    (``python _htex_pool.py ...``, ``bash cmd_htex_local_0.sh``)."""
    words = command.rstrip(b"\0").decode(errors="replace").split("\0")
    return " ".join(os.path.basename(w) if w.startswith("/") else w for w in words)


def _parsl_threads() -> dict[int, str]:
    threads = {}
    for thread in threading.enumerate():
        target = getattr(thread, "_target", None)
        module = getattr(target, "__module__", "") or ""
        if module.startswith("parsl") or thread.name.startswith(_PARSL_THREAD_PREFIXES):
            threads[thread.ident or 0] = thread.name
    return threads


def _descriptors(pid: int) -> set[str]:
    """The numbers of the file descriptors process ``pid`` holds."""
    try:
        return set(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return set()


def _socket_inodes(pid: int, descriptors: set[str] | None = None) -> set[str]:
    """The inodes of the sockets process ``pid`` holds (among ``descriptors``, where
    given; cheap: no socket table is read)."""
    inodes = set()
    for fd in _descriptors(pid) if descriptors is None else descriptors:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _listening(pid: int, inodes: set[str] | None = None) -> set[str]:
    """``address:port`` of each TCP socket listening in process ``pid`` (among ``inodes``,
    where given). Reading the kernel's socket tables costs milliseconds, so callers ask
    only about sockets that are new."""
    if inodes is None:
        inodes = _socket_inodes(pid)
    if not inodes:
        return set()
    found = set()
    for table in ("tcp", "tcp6"):
        for line in _read(f"/proc/{pid}/net/{table}").decode().splitlines()[1:]:
            if " 0A " not in line:  # not listening
                continue
            parts = line.split()
            if len(parts) > 9 and parts[3] == "0A" and parts[9] in inodes:  # 0A: LISTEN
                host, port = parts[1].split(":")
                found.add(f"{_address(host)}:{int(port, 16)}")
    return found


def _address(hexed: str) -> str:
    raw = bytes.fromhex(hexed)
    if len(raw) == 4:
        return ".".join(str(b) for b in raw[::-1])
    words = [raw[i : i + 4][::-1].hex() for i in range(0, 16, 4)]
    if words[:3] == ["00000000", "00000000", "0000ffff"]:
        return "::ffff:" + ".".join(str(b) for b in bytes.fromhex(words[3]))
    return ":".join(words)


@dataclass
class Snapshot:
    """What of Parsl was alive at a moment: threads, processes, our listening sockets."""

    threads: dict[int, str] = field(default_factory=dict)
    processes: dict[int, str] = field(default_factory=dict)
    #: the test process's file descriptors: a socket opened since holds a new one (a
    #: number closed and reused in between goes unnoticed; the threads and processes
    #: behind a leaked socket do not)
    descriptors: set[str] = field(default_factory=set)

    def include(self, other: Snapshot) -> None:
        """Count what ``other`` saw as running already (a shared DFK loaded mid-setup)."""
        self.threads.update(other.threads)
        self.processes.update(other.processes)
        self.descriptors |= other.descriptors


def snapshot(with_processes: bool = True) -> Snapshot:
    return Snapshot(
        threads=_parsl_threads(),
        processes=_session_processes() if with_processes else {},
        descriptors=_descriptors(os.getpid()),
    )


def _signal(pids: set[int], signum: int) -> None:
    """Signal the processes and their process groups (a block's later forks are in its
    group), never the session's own group."""
    own_group = os.getpgid(0)
    groups = set()
    for pid in pids:
        try:
            groups.add(os.getpgid(pid))
            os.kill(pid, signum)
        except OSError:
            pass
    for group in groups - {own_group}:
        try:
            os.killpg(group, signum)
        except OSError:
            pass


def _shared(pid: int, earlier: Collection[int], shared_dirs: Sequence[bytes]) -> bool:
    """Whether a process that started during a test belongs to a module- or
    session-scoped DFK instead: it, or a process above it, names a shared DFK's run
    directory on its command line (a block the strategy started), or it runs below a
    process that ran before the test (a pool forking a worker anew)."""
    if not shared_dirs:
        return False
    for _ in range(64):
        if pid <= 1:
            return False
        if pid in earlier or any(d in _read(f"/proc/{pid}/cmdline") for d in shared_dirs):
            return True
        pid = _parent(pid)
    return False


def _end(before: Snapshot, shared_dirs: Sequence[bytes] = ()) -> None:
    """End this session's Parsl processes that were not running at ``before`` (those of
    shared DFKs spared): SIGTERM, then SIGKILL after a grace; rescanned, since a dying
    pool may still fork."""
    for signum in (signal.SIGTERM, signal.SIGKILL, signal.SIGKILL):
        pids = {
            pid
            for pid in set(_session_processes()) - set(before.processes)
            if not _shared(pid, before.processes, shared_dirs)
        }
        if not pids:
            return
        _signal(pids, signum)
        deadline = time.monotonic() + KILL_GRACE
        while time.monotonic() < deadline and any(not _zombie(p) for p in pids):
            time.sleep(0.02)
        for pid in pids:  # reap our own children, whose Popen nobody will wait for
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def _parsl_descendants() -> bool:
    """Whether a Parsl process runs below this one (cheap: no environment is read)."""
    return any(
        any(word in _read(f"/proc/{pid}/cmdline") for word in _PARSL_PROCESS_WORDS)
        for pid in _descendants(os.getpid()) - _warm_parents()
    )


def _warm_parents() -> frozenset[int]:
    """The session's own HTEX warm parent (``htex.warm``): never a test's leak; what it
    forks for a test is."""
    warm = sys.modules.get("pytest_parslflow.htex.warm")
    return warm.warm_parent_pids() if warm is not None else frozenset()


def find_and_end_leaks(
    before: Snapshot, with_processes: bool, shared: Sequence[Path] = ()
) -> list[str]:
    """What Parsl left running since ``before``, one description each; leaked processes
    (this session's only) are ended, threads can only be named.

    The scan for detached processes reads every process's environment, so it runs only
    ``with_processes`` (the test ran an executor that starts processes) or when a Parsl
    process still runs below this one. While module- or session-scoped DFKs run (their
    run directories ``shared``), their processes are spared, and threads are not
    checked: a shared executor starts threads as tasks come, in any test."""
    with_processes = with_processes or _parsl_descendants()
    shared_dirs = [str(p).encode() for base in shared for p in {base, base.resolve()}]
    leaks = []
    if not shared:
        # Parsl's threads may still be on their way out: wait for them (a join returns
        # the moment a thread ends), for THREAD_GRACE seconds in all
        deadline = time.monotonic() + THREAD_GRACE
        for thread in threading.enumerate():
            # a thread that ended may leave its ident to a new one: the name tells them apart
            if before.threads.get(thread.ident or 0) == thread.name:
                continue
            if thread.ident not in _parsl_threads():
                continue
            thread.join(max(0.0, deadline - time.monotonic()))
    now = snapshot(with_processes)
    if not shared:
        leaks += [
            f"thread {name!r} (ident {ident}) still running"
            for ident, name in now.threads.items()
            if before.threads.get(ident) != name
        ]
    new_processes = {
        pid: cmd
        for pid, cmd in now.processes.items()
        if pid not in before.processes and not _shared(pid, before.processes, shared_dirs)
    }
    for pid, command in sorted(new_processes.items()):
        ports = sorted(_listening(pid))
        listening = f", listening on {', '.join(ports)}" if ports else ""
        leaks.append(f"process {pid} ({command[:80]}){listening}: ended")
    if new_processes:
        _end(before, shared_dirs)
    new_sockets = _socket_inodes(os.getpid(), now.descriptors - before.descriptors)
    for address in sorted(_listening(os.getpid(), new_sockets) if new_sockets else ()):
        leaks.append(f"socket listening on {address} in the test process")
    return leaks


def end_session_processes() -> None:
    """End every Parsl process this session started that still runs."""
    _end(Snapshot())
