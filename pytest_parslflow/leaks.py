"""The leak guard: what a test that opted in left running of Parsl (processes,
threads, listening sockets), named, and ended where it can be.

A process is Parsl's by where it came from (see ``origins``): launched by Parsl's
code for the test, forked below such a process, or carrying the test's token in its
environment (what a launch detached). Nothing else is ever signalled; a process
that appeared during the test and whose origin is unknown is named in a warning.

Three calls, for the plugin's hooks:

- :func:`start` at the setup of a test that opted in: cheap (no process is looked at);
- :func:`check` at its teardown: names what is left, ends the test's processes and
  returns the descriptions (and warnings);
- :func:`end_session` at the session's end: ends every Parsl process the session
  started that still runs, whoever owned it.

On Linux the test process becomes a child subreaper when the first such test starts,
so that what Parsl's launches detach stays below it, and the search stays among its
own descendants whatever else runs on the host. Elsewhere, a process that Parsl
detached from the process tree is found by reading every process's environment,
and only where the test launched anything.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pytest_parslflow import origins
from pytest_parslflow.origins import Owner

#: seconds Parsl's threads and processes get to end on their own after a cleanup
#: before they count as left running (as Dask's leak checks give them)
GRACE = 1.0
#: seconds a process gets to exit on SIGTERM before SIGKILL
KILL_GRACE = 2.0
#: at most this many processes are named one by one in a report
MAX_NAMED = 12

LINUX = sys.platform.startswith("linux")

_PARSL_THREAD_PREFIXES = (
    "Task-Launch",
    "ThreadPoolExecutor-",
    "HTEX-",
    "JobStatusPoller",
    "Interchange",
    "Monitoring",
)

# --- the process table: /proc on Linux (cheap, per process), psutil elsewhere ---------


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def _children(pid: int) -> set[int]:
    if LINUX:
        found: set[int] = set()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return found
        for task in tasks:
            found.update(int(c) for c in _read(f"/proc/{pid}/task/{task}/children").split())
        return found
    import psutil

    try:
        return {child.pid for child in psutil.Process(pid).children()}
    except psutil.Error:
        return set()


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` in the process tree."""
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in _children(stack.pop()):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


@dataclass(frozen=True)
class _Stat:
    state: str
    ppid: int
    pgid: int
    #: when the process started, comparable with :func:`_now`
    started: float


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if LINUX else 100


def _now() -> float:
    """Now, on the clock of :class:`_Stat`'s ``started``."""
    if LINUX:
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    return time.time()


def _stat(pid: int) -> _Stat | None:
    if LINUX:
        raw = _read(f"/proc/{pid}/stat")
        if not raw:
            return None
        fields = raw.rsplit(b") ", 1)[-1].split()
        try:
            started = int(fields[19]) / _CLOCK_TICKS
            return _Stat(fields[0].decode(), int(fields[1]), int(fields[2]), started)
        except (IndexError, ValueError):
            return None
    import psutil

    try:
        process = psutil.Process(pid)
        with process.oneshot():
            state = "Z" if process.status() == psutil.STATUS_ZOMBIE else "R"
            return _Stat(state, process.ppid(), os.getpgid(pid), process.create_time())
    except (psutil.Error, OSError):
        return None


def _running(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat.state not in ("Z", "X")


def _environ(pid: int) -> bytes:
    if LINUX:
        return _read(f"/proc/{pid}/environ")
    import psutil

    try:
        environ = psutil.Process(pid).environ()
    except psutil.Error:
        return b""
    return b"\0".join(f"{k}={v}".encode() for k, v in environ.items()) + b"\0"


def _carries(environ: bytes, entry: bytes) -> bool:
    return environ.startswith(entry + b"\0") or (b"\0" + entry + b"\0") in environ


def _command(pid: int) -> str:
    if LINUX:
        words = _read(f"/proc/{pid}/cmdline").rstrip(b"\0").decode(errors="replace").split("\0")
    else:
        import psutil

        try:
            words = psutil.Process(pid).cmdline()
        except psutil.Error:
            words = []
    return " ".join(os.path.basename(w) if w.startswith("/") else w for w in words if w)


def _listening(pid: int) -> list[str]:
    """``address:port`` of each TCP socket listening in process ``pid``."""
    import psutil

    try:
        connections = psutil.Process(pid).net_connections("tcp")
    except (psutil.Error, OSError):
        return []
    return sorted(
        f"{c.laddr.ip}:{c.laddr.port}" for c in connections if c.status == psutil.CONN_LISTEN
    )


# --- keeping what Parsl detaches below the test process -------------------------------

_PR_SET_CHILD_SUBREAPER = 36
_subreaper: bool | None = None


def become_subreaper() -> bool:
    """Make this process the child subreaper of its descendants (Linux): what they
    detach (``setsid cmd &``, a LocalProvider block) is re-parented here instead of to
    PID 1, so it is found among this process's descendants. Once per process."""
    global _subreaper
    if _subreaper is None:
        _subreaper = False
        if LINUX:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                _subreaper = libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
            except (OSError, AttributeError):
                _subreaper = False
    return _subreaper


def is_subreaper() -> bool:
    """Whether this process keeps what its descendants detach (see above)."""
    return bool(_subreaper)


_LIMITATION_SAID = False


def limitation() -> str:
    """What the guard cannot see on this system, or ``""`` (said once per session)."""
    global _LIMITATION_SAID
    if _subreaper is False and not _LIMITATION_SAID:
        _LIMITATION_SAID = True
        return (
            "on this system the test process cannot keep what Parsl detaches below it "
            "(Linux only): such processes are found by reading every process's "
            "environment, which may be refused"
        )
    return ""


# --- who a process belongs to ---------------------------------------------------------


class _Classifier:
    """Owner tokens of processes, by pid and start time (a pid may be reused)."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[int, float], str | None] = {}

    def token(self, pid: int, stat: _Stat) -> str | None:
        key = (pid, stat.started)
        if key not in self._tokens:
            token = None
            entry = origins.ORIGIN_VARIABLE.encode() + b"="
            for item in _environ(pid).split(b"\0"):
                if item.startswith(entry):
                    token = item[len(entry) :].decode(errors="replace")
            self._tokens[key] = token
        return self._tokens[key]

    def forget_dead(self, alive: set[int]) -> None:
        for key in [k for k in self._tokens if k[0] not in alive]:
            del self._tokens[key]


_CLASSIFIER = _Classifier()


def _user_pids() -> set[int]:
    """Processes that are surely not Parsl's: started by a watched call that was not
    Parsl's, Python's helpers, and everything below them."""
    registry = origins.registry()
    roots = {pid for pid in registry.others | origins.python_helpers() if _running(pid)}
    registry.others &= roots | origins.python_helpers()
    found = set(roots)
    for pid in roots:
        found |= descendants(pid)
    return found


@dataclass
class _Census:
    """The test process's descendants, who they belong to, at one moment."""

    by_owner: dict[str, set[int]] = field(default_factory=dict)
    #: owners' processes that have exited and wait to be reaped
    zombies: dict[str, set[int]] = field(default_factory=dict)
    unknown: set[int] = field(default_factory=set)
    stats: dict[int, _Stat] = field(default_factory=dict)


def _census(wanted: Iterable[Owner]) -> _Census:
    """Who each process below the test process belongs to: by the launch that started
    it or one above it, by the process group a launch leads (a LocalProvider block,
    whose shell has exited), or by the token in its environment (what a launch
    detached)."""
    census = _Census()
    below = descendants(os.getpid())
    stats = {pid: s for pid in below if (s := _stat(pid)) is not None}
    census.stats = stats
    running = {pid for pid, s in stats.items() if s.state not in ("Z", "X")}
    _CLASSIFIER.forget_dead(set(stats))
    # every owner's processes are told apart, though only ``wanted``'s are asked for
    wanted = list(wanted)
    owners = list(dict.fromkeys([*wanted, *origins.registry().owners]))
    tokens = {owner.token: owner for owner in owners}
    launches = origins.registry().launches
    _forget_gone_launches(launches, stats)
    own_group = os.getpgrp()
    claimed: set[int] = set()
    for owner in owners:
        mine = {pid for pid in owner.known if pid in running or _running(pid)}
        for pid in list(mine):
            mine |= descendants(pid)
        census.by_owner[owner.token] = mine
        census.zombies[owner.token] = set()
        claimed |= mine
    for pid, stat in stats.items():
        launch = launches.get(stat.pgid) if stat.pgid != own_group else None
        if launch is not None and launch.owner.token in tokens and pid not in claimed:
            key = "zombies" if pid not in running else "by_owner"
            getattr(census, key)[launch.owner.token].add(pid)
            claimed.add(pid)
    users = _user_pids()
    # the session's helpers themselves (not what they start for a test)
    helpers = origins.registry().helpers
    for pid in sorted(running - claimed - users - helpers):
        token = _CLASSIFIER.token(pid, stats[pid])
        holder = tokens.get(token or "")
        if holder is not None:
            tree = {pid} | descendants(pid)
            census.by_owner[holder.token] |= tree
            claimed |= tree
        elif token is None:
            census.unknown.add(pid)
    census.unknown -= claimed
    for owner in owners:
        mine = {pid for pid in census.by_owner[owner.token] if pid in running or _running(pid)}
        census.by_owner[owner.token] = mine
        census.zombies[owner.token] |= {
            pid for pid in owner.known if pid in stats and pid not in running
        }
        owner.known = set(mine)
        if not _subreaper and owner.launches and owner in wanted:
            census.by_owner[owner.token] |= _detached(owner) - mine
    return census


def _forget_gone_launches(launches: dict[int, Any], stats: dict[int, _Stat]) -> None:
    """Forget launches whose process is gone, zombie included, and whose process group
    is empty: their pid may now be reused by anyone."""
    groups = {stat.pgid for stat in stats.values()}
    for pid in list(launches):
        if pid in stats or pid in groups:
            continue
        if not _subreaper and _stat(pid) is not None:
            continue  # not below us: still there, elsewhere in the process tree
        del launches[pid]


def _detached(owner: Owner) -> set[int]:
    """Without a subreaper: processes anywhere that carry the owner's token."""
    import psutil

    found = set()
    entry = owner.environ_entry
    for process in psutil.process_iter():
        if process.pid != os.getpid() and _carries(_environ(process.pid), entry):
            found.add(process.pid)
    return found


# --- naming -----------------------------------------------------------------------------


def _task_of(owner: Owner, future: Any) -> str:
    # the DFK's callback on the executor's future holds the task record (the DFK
    # forgets a task once it completed)
    for callback in list(getattr(future, "_done_callbacks", ())):
        for argument in getattr(callback, "args", ()):
            if isinstance(argument, dict) and "id" in argument and "func_name" in argument:
                return f"task {argument['id']}"
    for dfk in owner.live_dfks():
        for record in list(getattr(dfk, "tasks", {}).values()):
            if record.get("exec_fu") is future:
                return f"task {record['id']}"
    return "task ?"


def _describe(owner: Owner, pid: int, stat: _Stat | None) -> str:
    launch = owner.launches.get(pid)
    if launch is not None and launch.bash_app is not None:
        app, command = launch.bash_app
        return (
            f"bash app {app!r} ({_task_of(owner, launch.future)}) command "
            f"{_short(command)!r}: process {pid}"
        )
    command = _command(pid) or (launch.command if launch is not None else "?")
    environ = _environ(pid)
    task = task_command(pid, environ)
    if task:
        ports = _listening(pid)
        return task + (f", listening on {', '.join(ports)}" if ports else "")
    where = ""
    parent = origins.registry().bash_launches.get(
        _environ_value(environ, origins.LAUNCH_VARIABLE.encode())
    )
    if parent is not None and parent.bash_app is not None:
        where = (
            f" started by bash app {parent.bash_app[0]!r} ({_task_of(parent.owner, parent.future)})"
        )
    if b"PARSL_WORKER_RANK=" in environ and "process_worker_pool" not in command:
        rank = _environ_value(environ, b"PARSL_WORKER_RANK")
        block = _environ_value(environ, b"PARSL_WORKER_BLOCK_ID")
        where = f" on HTEX worker {rank} of block {block}"
    ports = _listening(pid)
    listening = f", listening on {', '.join(ports)}" if ports else ""
    return f"process {pid} ({_short(command)}){where}{listening}"


def task_command(pid: int, environ: bytes | None = None) -> str:
    """``pid`` described as a command that a task started on an HTEX worker (a bash
    app's command, or what it started), or ``""``: such a process, unlike the worker
    itself, carries the worker's rank in its environment from its start."""
    environ = _environ(pid) if environ is None else environ
    if b"PARSL_WORKER_RANK=" not in environ:
        return ""
    rank = _environ_value(environ, b"PARSL_WORKER_RANK")
    block = _environ_value(environ, b"PARSL_WORKER_BLOCK_ID")
    command = _command(pid)
    if command.startswith("bash -c "):
        command = command[len("bash -c ") :]
    return f"task command {_short(command)!r}: process {pid} on HTEX worker {rank} of block {block}"


def _environ_value(environ: bytes, name: bytes) -> str:
    for item in environ.split(b"\0"):
        if item.startswith(name + b"="):
            return item[len(name) + 1 :].decode(errors="replace")
    return "?"


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- ending -----------------------------------------------------------------------------


def _signal(pids: set[int], signum: int) -> None:
    """Signal the processes, and the process groups that one of them leads (a bash
    app's command and what it put in the background), never the test process's own."""
    own_group = os.getpgrp()
    for pid in pids:
        stat = _stat(pid)
        if stat is None:
            continue
        with contextlib.suppress(OSError):
            if stat.pgid == pid and stat.pgid != own_group:
                os.killpg(pid, signum)
            os.kill(pid, signum)


def _wait_gone(pids: set[int], seconds: float) -> set[int]:
    deadline = time.monotonic() + seconds
    alive = {pid for pid in pids if _running(pid)}
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = {pid for pid in alive if _running(pid)}
    return alive


def _reap(owner: Owner, pids: Iterable[int]) -> None:
    """Collect the exit status of our own children among ``pids`` that no Popen or
    Process object waits for (a block re-parented here); never another's."""
    me = os.getpid()
    for pid in pids:
        launch = origins.registry().launches.get(pid)
        if launch is not None and launch.reaped_by_its_starter():
            continue
        stat = _stat(pid)
        if stat is not None and stat.ppid == me and stat.state in ("Z", "X"):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


def _end(owners: list[Owner], census: _Census) -> None:
    """SIGTERM, a grace, then SIGKILL for what is left (found anew: a dying pool may
    still fork), until none of the owners' processes runs."""
    targets = set().union(*(census.by_owner[o.token] for o in owners))
    ended = set(targets)
    for signum in (signal.SIGTERM, signal.SIGKILL, signal.SIGKILL):
        if not targets:
            break
        _signal(targets, signum)
        _wait_gone(targets, KILL_GRACE if signum == signal.SIGTERM else 1.0)
        again = _census(owners)
        targets = set().union(*(again.by_owner[o.token] for o in owners))
        ended |= targets
    final = _census(owners)
    for owner in owners:
        _reap(owner, ended | final.zombies[owner.token])


# --- threads and sockets of the test process --------------------------------------------


def _parsl_threads() -> dict[threading.Thread, threading.Thread]:
    """Parsl's threads, keyed by the thread object itself: a thread that ended may leave
    its ident to a new one, which is not the same thread (the guard holds the objects it
    saw, so they are never confused)."""
    threads = {}
    for thread in threading.enumerate():
        target = getattr(thread, "_target", None)
        module = getattr(target, "__module__", "") or ""
        if module.startswith("parsl") or thread.name.startswith(_PARSL_THREAD_PREFIXES):
            threads[thread] = thread
    return threads


def parsl_threads_after_grace(
    known: set[threading.Thread],
) -> dict[threading.Thread, threading.Thread]:
    """Parsl's threads not in ``known`` that still run after :data:`GRACE` seconds."""
    deadline = time.monotonic() + GRACE
    threads = _parsl_threads()
    for ident, thread in threads.items():
        if ident not in known:
            thread.join(max(0.0, deadline - time.monotonic()))
    return {i: t for i, t in threads.items() if i not in known and t.is_alive()}


def sockets_now() -> set[str]:
    """The test process's descriptors now (those a failed start left are excused)."""
    return _descriptors()


def _thread_stack(owner: Owner | None, thread: threading.Thread) -> str:
    """Where a thread is, and which task it runs: its innermost frames."""
    frame = sys._current_frames().get(thread.ident or 0)
    if frame is None:
        return ""
    task = ""
    walker: Any = frame
    while walker is not None:
        if walker.f_code.co_name == "run" and walker.f_globals.get("__name__") == (
            "concurrent.futures.thread"
        ):
            item = walker.f_locals.get("self")
            app = getattr(getattr(item, "fn", None), "__name__", "?")
            task_id = _task_of(owner, getattr(item, "future", None)) if owner else "task ?"
            task = f" {task_id} (app {app})"
        walker = walker.f_back
    summary = traceback.extract_stack(frame)[-3:]
    where = " <- ".join(
        f"{os.path.basename(f.filename)}:{f.lineno} in {f.name}" for f in reversed(summary)
    )
    return f"{task}, at {where}"


def _descriptors() -> set[str]:
    """The test process's descriptor numbers (Linux), or the addresses it listens on."""
    if LINUX:
        try:
            return set(os.listdir("/proc/self/fd"))
        except OSError:
            return set()
    return set(_listening(os.getpid()))


def _readlink_fd(fd: str) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


# --- the guard's three calls --------------------------------------------------------------


@dataclass
class Guard:
    """What the guard noted at the start of a test that opted in."""

    owner: Owner
    threads: set[threading.Thread]
    descriptors: set[str]
    #: when the test started (see :func:`_now`)
    started: float = field(default_factory=_now)


def start(name: str) -> Guard:
    """At the setup of a test that opted in: a new owner for what Parsl starts for it.
    Cheap: no process is looked at."""
    origins.install()
    become_subreaper()
    owner = origins.new_owner(name)
    origins.set_current(owner)
    return Guard(owner, set(_parsl_threads()), _descriptors())


@dataclass
class Findings:
    """What :func:`check` found: leaks (ended where possible) and warnings."""

    leaks: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check(guard: Guard, with_threads: bool = True) -> Findings:
    """At the teardown of a test that opted in, after its DFKs were cleaned up: name
    what of Parsl it left running, end its processes (with their process groups), and
    name processes of unknown origin that appeared during it (never signalled)."""
    owner = guard.owner
    origins.set_current(None)
    findings = Findings(leaks=list(owner.notes))
    owner.notes.clear()
    excused_threads = guard.threads | owner.excused_threads
    if with_threads:
        parsl_threads_after_grace(excused_threads)
    census = _census([owner])
    _reap(owner, census.zombies[owner.token])
    mine = census.by_owner[owner.token]
    if mine:
        mine = _wait_gone(mine, GRACE)  # a cleanup's processes may be on their way out
    if mine:
        stats = {pid: _stat(pid) for pid in mine}
        named = [_describe(owner, pid, stats[pid]) for pid in sorted(mine)]
        if len(named) > MAX_NAMED:
            named = [*named[:MAX_NAMED], f"{len(named) - MAX_NAMED} more processes"]
        findings.leaks += [f"{text}: ended" for text in named]
        census.by_owner[owner.token] = mine
        _end([owner], census)
    if with_threads:
        for ident, thread in _parsl_threads().items():
            if ident in excused_threads or not thread.is_alive():
                continue
            stack = _thread_stack(owner, thread)
            findings.leaks.append(f"thread {thread.name!r} still running{stack}")
    for address in _new_sockets(guard.descriptors | owner.excused_descriptors):
        findings.leaks.append(f"socket listening on {address} in the test process")
    for pid in sorted(census.unknown):
        stat = census.stats.get(pid)
        if stat is not None and stat.started >= guard.started:
            findings.warnings.append(
                f"process {pid} ({_short(_command(pid))}) started during the test and "
                f"still runs; it was not started by Parsl, so it was left alone"
            )
    said = limitation() if owner.launches else ""
    if said:
        findings.warnings.append(said)
    owner.remove_tmpdir()
    return findings


@contextlib.contextmanager
def broader_setup() -> Iterator[None]:
    """Around the setup of a fixture of broader scope than the running test: the Parsl
    threads and sockets it starts are not the test's (its processes are told apart by
    the fixture on the stack of their launch, see ``origins``)."""
    owner = origins.registry().current
    if owner is None:
        yield
        return
    threads, descriptors = set(_parsl_threads()), _descriptors()
    try:
        yield
    finally:
        owner.excused_threads |= set(_parsl_threads()) - threads
        owner.excused_descriptors |= _descriptors() - descriptors


def guarded_load(load: Callable[[Any], Any], config: Any, owner: Owner | None) -> Any:
    """``load(config)`` (``parsl.load``) with what the DFK starts attributed to
    ``owner`` (by default the test that opted in and runs now). A DFK that fails to
    start is stopped, and what it leaves is part of that error, not the test's leak;
    the threads and sockets of a DFK loaded for a broader owner (a shared DFK) are not
    the running test's either."""
    from pytest_parslflow.interrupts import never_wait_at_exit, stop_failed_start

    current = origins.current_owner()
    owner = origins.claim_config(config, owner)
    try:
        dfk = load(config)
    except BaseException as error:
        stop_failed_start(error, config, owner)
        raise
    origins.claim_dfk(dfk, owner)
    never_wait_at_exit(dfk)
    if owner is not current:
        current.excused_descriptors |= _descriptors()
    return dfk


def _new_sockets(before: set[str]) -> list[str]:
    """Sockets listening in the test process that were not at ``before``: on Linux,
    among the descriptors opened since (the socket table is read only when one is a
    socket); elsewhere, ``before`` holds the addresses listening at the start."""
    if LINUX:
        new = _descriptors() - before
        if not any(_readlink_fd(fd).startswith("socket:") for fd in new):
            return []
    return [address for address in _listening(os.getpid()) if address not in before]


def end_owner(owner: Owner) -> list[str]:
    """End what Parsl started for ``owner`` (a module- or session-scoped DFK whose scope
    ended) that still runs; returns what was ended."""
    census = _census([owner])
    mine = census.by_owner[owner.token]
    named = [f"{_describe(owner, pid, _stat(pid))}: ended" for pid in sorted(mine)]
    if mine:
        _end([owner], census)
    owner.remove_tmpdir()
    return named


def end_session() -> list[str]:
    """End every process Parsl started in this session that still runs, whoever owned
    it; returns what was ended. Signals are held off meanwhile, so that a second Ctrl-C
    cannot cut it short."""
    registry = origins.registry()
    if not registry.launches:
        registry.remove_tmp_root()
        return []
    main = threading.current_thread() is threading.main_thread()
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    if main:
        signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        owners = list(registry.owners)
        census = _census(owners)
        named = []
        for owner in owners:
            for pid in sorted(census.by_owner[owner.token]):
                named.append(f"{_describe(owner, pid, _stat(pid))}: ended")
        if named:
            _end(owners, census)
        registry.remove_tmp_root()
        return named
    finally:
        if main:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, held)
