"""Where a process came from, recorded at the moment it was started.

While Parsl is in use, ``subprocess.Popen`` and ``multiprocessing``'s ``Process.start``
are watched: a process is Parsl's when the call comes from Parsl's code (the
DataFlowKernel, executors, providers, monitoring, a bash app's command) or the
plugin's HTEX machinery, or from an object of a Config the plugin loaded (a user's
provider subclass, a task on a thread executor). Nothing else is Parsl's, whatever
its command line says: multiprocessing's resource tracker and forkserver,
pytest-timeout, a fixture's helper server.

Each Parsl process belongs to an :class:`Owner`: the test that opted in, a module-
or session-scoped DFK, or, for Parsl that no test of the plugin loaded, the session.
What Parsl launches gets the owner's token in its environment
(``PARSLFLOW_ORIGIN``), so whatever it detaches (``setsid cmd &``, a LocalProvider
block) still says whose it is, and a ``TMPDIR`` inside pytest's basetemp, so that
multiprocessing's ``pymp-*`` folders of a killed process land there.

This module imports neither Parsl nor pytest.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

#: the environment variable carrying a launch's owner token: ``<session>.<owner>``
ORIGIN_VARIABLE = "PARSLFLOW_ORIGIN"

#: in the environment of a bash app's command on a thread executor: which launch it
#: is, so that what it detaches is named after the app
LAUNCH_VARIABLE = "PARSLFLOW_LAUNCH"

#: AF_UNIX socket paths are at most 107 bytes; multiprocessing puts its listeners at
#: ``$TMPDIR/pymp-XXXXXXXX/listener-XXXXXXXX`` (32 more)
_MAX_TMPDIR = 70

# module names whose frames only carry a call on (the decision is made further out)
_PLUMBING = ("subprocess", "multiprocessing", "concurrent.futures", "threading", "contextlib")
# module names of Parsl's code and the plugin's HTEX machinery
_PARSL = ("parsl", "pytest_parslflow.htex")
#: the plugin's modules that start the session's own helpers
_HELPERS = ("pytest_parslflow.htex.warm",)
# providers that run their blocks on another machine: their launches get no TMPDIR
_LOCAL_PROVIDERS = ("parsl.providers.local",)


@dataclass(eq=False)
class Launch:
    """One process Parsl started: what it is, for a report."""

    pid: int
    owner: Owner
    command: str
    #: ``(app name, command)`` of a bash app's command on a thread executor
    bash_app: tuple[str, str] | None = None
    #: the concurrent.futures Future of the task that started it (a task on threads)
    future: Any = None
    #: a Popen or Process object that will reap the process (we must not)
    waiter: weakref.ref[Any] | None = None
    create_time: float = 0.0

    def reaped_by_its_starter(self) -> bool:
        return self.waiter is not None and self.waiter() is not None


@dataclass(eq=False)
class Owner:
    """Who Parsl's processes belong to: a test, a shared DFK, or the session."""

    name: str
    token: str
    #: a test that opted in (its processes are ended at its end) or a broader owner
    managed: bool = True
    launches: dict[int, Launch] = field(default_factory=dict)
    #: every pid found to be this owner's (launched, forked below, or carrying the token)
    known: set[int] = field(default_factory=set)
    dfks: list[weakref.ref[Any]] = field(default_factory=list)
    #: threads and descriptors that a DFK which failed to start left: part of that
    #: setup error, not leaks of the test
    excused_threads: set[threading.Thread] = field(default_factory=set)
    excused_descriptors: set[str] = field(default_factory=set)
    #: what the owner's executors ended while cleaning up (a task's command in a
    #: cancelled block), for the leak guard's report
    notes: list[str] = field(default_factory=list)
    _tmp: Path | None = None

    @property
    def environ_entry(self) -> bytes:
        return f"{ORIGIN_VARIABLE}={self.token}".encode()

    def tmpdir(self) -> Path | None:
        """The ``TMPDIR`` of what this owner's Parsl launches (made on first use)."""
        if self._tmp is None:
            self._tmp = _REGISTRY.make_tmpdir(self.token.rsplit(".", 1)[-1])
        return self._tmp

    def remove_tmpdir(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def live_dfks(self) -> list[Any]:
        return [dfk for ref in self.dfks if (dfk := ref()) is not None]


class _Registry:
    """The session's owners, launches and claimed Parsl objects."""

    def __init__(self) -> None:
        self.session = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._numbers = itertools.count(1)
        self.current: Owner | None = None
        self.unmanaged = Owner("Parsl outside any test that opted in", self._token(), False)
        self.owners: list[Owner] = [self.unmanaged]
        #: pid -> the Parsl launch that started it
        self.launches: dict[int, Launch] = {}
        #: pids of processes started by a watched call that was not Parsl's
        self.others: set[int] = set()
        #: pids of the session's own helpers (the HTEX warm parent): never a test's and
        #: never ended by the guard, while what they start for a test is that test's
        self.helpers: set[int] = set()
        #: id(object) -> (weak reference, owner): objects of a Config or DFK the plugin loaded
        self.claimed: dict[int, tuple[weakref.ref[Any], Owner]] = {}
        #: PARSLFLOW_LAUNCH value -> the bash app's launch
        self.bash_launches: dict[str, Launch] = {}
        self.tmp_root: Path | None = None
        self._tmp_root_is_system = False
        self.lock = threading.Lock()

    def _token(self) -> str:
        return f"{self.session}.{next(self._numbers)}"

    def new_owner(self, name: str, managed: bool = True) -> Owner:
        owner = Owner(name, self._token(), managed)
        self.owners.append(owner)
        return owner

    def make_tmpdir(self, name: str) -> Path | None:
        root = self.tmp_root
        if root is None or len(str(root)) + len(name) + 1 > _MAX_TMPDIR:
            # too deep for multiprocessing's sockets: a short folder in the system
            # temporary directory, removed with the owner and at the session's end
            if self._system_root() is None:
                return None
            root = self._system_root()
        assert root is not None
        path = root / name
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError:
            return None
        return path

    def _system_root(self) -> Path | None:
        if not self._tmp_root_is_system:
            try:
                self.tmp_root = Path(tempfile.mkdtemp(prefix="pfl-"))
            except OSError:
                return None
            self._tmp_root_is_system = True
        return self.tmp_root

    def remove_tmp_root(self) -> None:
        if self._tmp_root_is_system and self.tmp_root is not None:
            shutil.rmtree(self.tmp_root, ignore_errors=True)
        for owner in self.owners:
            owner._tmp = None

    def claim(self, objects: Iterable[Any], owner: Owner) -> None:
        for obj in objects:
            if obj is None:
                continue
            key = id(obj)
            try:
                ref = weakref.ref(obj, functools.partial(self._forget, key))
            except TypeError:
                continue
            self.claimed[key] = (ref, owner)

    def _forget(self, key: int, ref: weakref.ref[Any]) -> None:
        entry = self.claimed.get(key)
        if entry is not None and entry[0] is ref:
            del self.claimed[key]

    def claimed_owner(self, obj: Any) -> Owner | None:
        entry = self.claimed.get(id(obj))
        if entry is not None and entry[0]() is obj:
            return entry[1]
        return None


_REGISTRY = _Registry()


def registry() -> _Registry:
    """The session's record of owners and launches."""
    return _REGISTRY


def set_tmp_root(path: Path) -> None:
    """Where owners' ``TMPDIR`` folders go (pytest's basetemp), unless too deep."""
    if _REGISTRY.tmp_root is None:
        _REGISTRY.tmp_root = path / "ptmp"


def current_owner() -> Owner:
    """The owner that Parsl's launches are attributed to when nothing else says."""
    return _REGISTRY.current or _REGISTRY.unmanaged


def set_current(owner: Owner | None) -> None:
    """The test that opted in and runs now (``None`` between such tests)."""
    _REGISTRY.current = owner


def new_owner(name: str, managed: bool = True) -> Owner:
    """A new owner: a test that opted in, or (``managed=False``) a broader scope."""
    return _REGISTRY.new_owner(name, managed)


def _config_objects(config: Any) -> list[Any]:
    objects = [config, getattr(config, "monitoring", None)]
    for executor in getattr(config, "executors", ()):
        objects += [executor, getattr(executor, "provider", None)]
    return objects


def claim_config(config: Any, owner: Owner | None = None) -> Owner:
    """Before a Config is loaded: what its executors, providers and monitoring start
    is ``owner``'s (by default the current one), in whichever thread and test."""
    owner = owner or current_owner()
    _REGISTRY.claim(_config_objects(config), owner)
    return owner


def claim_dfk(dfk: Any, owner: Owner) -> None:
    """After a DFK loaded: it, its executors' inner pools (a thread executor's
    ``concurrent.futures`` pool, whose tasks may start processes) and its poller."""
    objects = [dfk, getattr(dfk, "job_status_poller", None), getattr(dfk, "monitoring", None)]
    for executor in getattr(dfk, "executors", {}).values():
        objects += [executor, getattr(executor, "provider", None)]
        objects.append(getattr(executor, "executor", None))
    _REGISTRY.claim(objects, owner)
    owner.dfks.append(weakref.ref(dfk))


def shared_owner(run: Any, name: str) -> Owner:
    """The owner of a module- or session-scoped DFK's run ``run`` (one per run)."""
    owner: Owner | None = getattr(run, "_parslflow_owner", None)
    if owner is None:
        owner = _REGISTRY.new_owner(name, managed=False)
        run._parslflow_owner = owner
    return owner


# --- the watch on process starts ------------------------------------------------------


def _is_parsl_module(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in _PARSL)


def _frame_owner(frame: FrameType) -> Owner | None:
    """The owner of a claimed object this frame runs a method of (or, in a thread
    executor's worker, whose pool runs the frame)."""
    code = frame.f_code
    if "self" in code.co_varnames[: code.co_argcount]:
        owner = _REGISTRY.claimed_owner(frame.f_locals.get("self"))
        if owner is not None:
            return owner
    if code.co_name == "_worker" and frame.f_globals.get("__name__") == "concurrent.futures.thread":
        reference = frame.f_locals.get("executor_reference")
        pool = reference() if callable(reference) else None
        if pool is not None:
            return _REGISTRY.claimed_owner(pool)
    return None


@dataclass
class _Origin:
    parsl: bool
    owner: Owner | None
    local: bool = True
    bash_app: tuple[str, str] | None = None
    future: Any = None
    #: a helper of the session's own (the HTEX warm parent)
    helper: bool = False


def _origin(frame: FrameType | None) -> _Origin:
    """Whether the call below ``frame`` is Parsl's, and whose."""
    decided: bool | None = None
    owner: Owner | None = None
    local = True
    bash_app = None
    future = None
    broader = False
    unclaimed: list[Any] = []
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if decided is None and not module.startswith(_PLUMBING) and module != __name__:
            if module in _HELPERS:
                return _Origin(False, None, helper=True)
            decided = _is_parsl_module(module)
        if module.startswith("parsl.providers.") and not module.startswith(_LOCAL_PROVIDERS):
            local = False
        if owner is None:
            owner = _frame_owner(frame)
            if owner is None and module.startswith("parsl."):
                unclaimed.append(frame.f_locals.get("self"))
        name = frame.f_code.co_name
        if name == "execute" and module == "_pytest.fixtures":
            # set up by a fixture of a broader scope than the test (a suite's own
            # session fixture calling parsl.load()): not the test's
            scope = getattr(frame.f_locals.get("self"), "scope", "function")
            broader = broader or scope != "function"
        if name == "remote_side_bash_executor" and module == "parsl.app.bash":
            func = frame.f_locals.get("func")
            command = frame.f_locals.get("executable")
            bash_app = (getattr(func, "__name__", "?"), str(command))
        elif name == "run" and module == "concurrent.futures.thread" and future is None:
            future = getattr(frame.f_locals.get("self"), "future", None)
        frame = frame.f_back
    parsl = bool(decided) or owner is not None
    if parsl and owner is None:
        # Parsl that the plugin did not load: its executors and providers keep the owner
        # of their first launch (the session's, where a broader fixture loaded it)
        owner = _REGISTRY.unmanaged if broader else current_owner()
        _REGISTRY.claim([obj for obj in unclaimed if obj is not None], owner)
    return _Origin(parsl, owner, local, bash_app, future)


def _describe_args(args: Any) -> str:
    if isinstance(args, (str, bytes)):
        words = [os.fsdecode(args)]
    else:
        words = [os.fsdecode(a) for a in args]
    return " ".join(os.path.basename(w) if w.startswith("/") else w for w in words)


def _environment(given: Any, owner: Owner, local: bool) -> dict[Any, Any]:
    env: dict[Any, Any] = dict(os.environ if given is None else given)
    env[ORIGIN_VARIABLE] = owner.token
    if local:
        tmp = owner.tmpdir()
        if tmp is not None:
            env["TMPDIR"] = str(tmp)
    return env


_ORIGINAL_EXECUTE_CHILD: Any = None
_ORIGINAL_PROCESS_START: Any = None
#: index of ``env`` in ``Popen._execute_child(self, args, executable, preexec_fn,
#: close_fds, pass_fds, cwd, env, ...)``
_ENV_INDEX = 6


_LAUNCH_NUMBERS = itertools.count(1)


def _record(pid: int | None, origin: _Origin, command: str, waiter: Any) -> Launch | None:
    if pid is None:
        return None
    if origin.helper:
        _REGISTRY.helpers.add(pid)
        return None
    if not origin.parsl:
        _REGISTRY.others.add(pid)
        return None
    owner = origin.owner or current_owner()
    try:
        ref: weakref.ref[Any] | None = weakref.ref(waiter)
    except TypeError:
        ref = None
    launch = Launch(
        pid, owner, command, origin.bash_app, origin.future, ref, create_time=time.time()
    )
    with _REGISTRY.lock:
        _REGISTRY.launches[pid] = launch
        owner.launches[pid] = launch
        owner.known.add(pid)
    return launch


def _execute_child(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
    if "parsl" not in sys.modules:
        _ORIGINAL_EXECUTE_CHILD(self, *args, **kwargs)
        return
    origin = _origin(sys._getframe(1))
    number = ""
    if origin.parsl and len(args) > _ENV_INDEX:
        owner = origin.owner or current_owner()
        env = _environment(args[_ENV_INDEX], owner, origin.local)
        if origin.bash_app is not None:
            number = env[LAUNCH_VARIABLE] = str(next(_LAUNCH_NUMBERS))
        args = (*args[:_ENV_INDEX], env, *args[_ENV_INDEX + 1 :])
    _ORIGINAL_EXECUTE_CHILD(self, *args, **kwargs)
    launch = _record(self.pid, origin, _describe_args(args[0]) if args else "?", self)
    if number and launch is not None:
        _REGISTRY.bash_launches[number] = launch


def _process_start(self: Any) -> None:
    if "parsl" not in sys.modules:
        _ORIGINAL_PROCESS_START(self)
        return
    origin = _origin(sys._getframe(1))
    _ORIGINAL_PROCESS_START(self)
    _record(self.pid, origin, f"python (multiprocessing {self.name})", self)


def launch_environment(env: Any = None) -> dict[Any, Any]:
    """For a launcher that starts Parsl's processes other than through
    ``subprocess.Popen`` (a fork server): the environment to give the new process
    (``env``, or this process's), with the token of the owner whose Parsl code is on the
    caller's stack and its ``TMPDIR``, so that the guard knows the process and what it
    detaches."""
    origin = _origin(sys._getframe(1))
    return _environment(env, origin.owner or current_owner(), origin.local)


def record_launch(pid: int, command: str, waiter: Any = None) -> None:
    """For such a launcher: record ``pid`` as a process Parsl started, owned as
    :func:`launch_environment` says (``waiter``: an object that will reap it)."""
    origin = _origin(sys._getframe(1))
    origin.parsl = True
    _record(pid, origin, command, waiter)


def install() -> None:
    """Start watching process starts (once; idempotent)."""
    global _ORIGINAL_EXECUTE_CHILD, _ORIGINAL_PROCESS_START
    popen: Any = subprocess.Popen
    if _ORIGINAL_EXECUTE_CHILD is None:
        parameters = list(inspect.signature(popen._execute_child).parameters)
        if parameters[_ENV_INDEX + 1 : _ENV_INDEX + 2] == ["env"]:
            _ORIGINAL_EXECUTE_CHILD = popen._execute_child
            popen._execute_child = _execute_child
    if _ORIGINAL_PROCESS_START is None:
        import multiprocessing.process

        _ORIGINAL_PROCESS_START = multiprocessing.process.BaseProcess.start
        multiprocessing.process.BaseProcess.start = _process_start  # type: ignore[method-assign]


def python_helpers() -> set[int]:
    """Pids of Python's own helper processes: multiprocessing's resource tracker and
    forkserver (never Parsl's, whoever made Python start them)."""
    found = set()
    tracker = sys.modules.get("multiprocessing.resource_tracker")
    pid = getattr(getattr(tracker, "_resource_tracker", None), "_pid", None)
    if pid:
        found.add(pid)
    forkserver = sys.modules.get("multiprocessing.forkserver")
    pid = getattr(getattr(forkserver, "_forkserver", None), "_forkserver_pid", None)
    if pid:
        found.add(pid)
    return found
