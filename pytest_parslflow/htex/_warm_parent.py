"""The warm parent: a fork server from which each test's own HTEX interchange and worker
pool start, with Parsl already imported.

Started by the test session (``warm.WarmParent``) with its interpreter and environment,
as ``python _warm_parent.py ADDRESS [--preload=MODULE ...]``. It imports what the
interchange and the worker pool import, checks that it runs one thread and made no ZMQ
context, listens on the abstract Unix socket ``ADDRESS`` (for this user only), prints
``ready PID`` and closes its standard output. From then on it does nothing but fork:

- a request (from ``_warm_launch``, standing in for an interchange or a worker pool)
  brings the launcher's environment, working directory, umask, process group,
  standard streams and a pipe; the forked process takes all of them over, closes
  every other descriptor, joins the launcher's process group (a block's own, so that
  cancelling the block by its group ends it), rebuilds ``sys.path`` from the new
  environment as a fresh interpreter would, and runs the role;
- the warm parent keeps, for each process it forked, only the connection on which
  it reports that process's exit status to its launcher; it never runs a test's code
  nor reads a test's data, and every forked process closes all of those connections.

It ends when its standard input closes: the session ended it, or the session's
process is gone.
"""

from __future__ import annotations

import gc
import importlib.util
import marshal
import os
import select
import signal
import socket
import struct
import sys
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))
_HEADER = struct.Struct("!I")
#: the longest request accepted, in bytes (an environment, a command line)
MAX_REQUEST = 16 * 1024 * 1024
#: seconds a launcher gets to send its request once connected
REQUEST_TIMEOUT = 5.0
ROLES = ("interchange", "pool")
#: a variable in the warm parent's own environment that only takes up room, so that
#: the environment of each forked process fits where the warm parent's was
ROOM_VARIABLE = "PARSLFLOW_WARM_ROOM"
#: the warm parent's command line ends with this many empty arguments, which only take
#: up room (NUL bytes), so that each forked process's command line fits where the warm
#: parent's was
ROOM_ARGUMENTS = 8192
#: variables that make a new interpreter measure itself (coverage's ``.pth``)
COVERAGE_STARTUP = (b"COVERAGE_PROCESS_START", b"COVERAGE_PROCESS_CONFIG")


@dataclass
class Job:
    """What a forked process is to run."""

    role: str
    argv: list[str]
    life: int


def load_by_path(name: str, filename: str) -> ModuleType:
    """One of the plugin's HTEX modules, by path: importing ``pytest_parslflow`` would
    import pytest."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(_HERE, filename))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def preload(extra: list[str]) -> None:
    """Import what the interchange and the worker pool import, and ``extra``."""
    import ctypes  # noqa: F401  (for show_environment, in every forked process)
    import multiprocessing.managers
    import multiprocessing.popen_fork
    import multiprocessing.queues
    import multiprocessing.sharedctypes
    import multiprocessing.synchronize  # noqa: F401
    import runpy  # noqa: F401

    import parsl
    import parsl.executors.high_throughput.interchange
    import parsl.executors.high_throughput.process_worker_pool
    import parsl.multiprocessing  # noqa: F401

    keep_environment_visible()
    load_by_path("_parslflow_htex_pool", "_htex_pool.py")
    load_by_path("_parslflow_htex_interchange", "_htex_interchange.py")
    load_by_path("_parslflow_coverage_support", "coverage_support.py")
    # the modules of tests, whose apps the workers import, nearly all import pytest
    for name in ("pytest", *extra):
        try:
            importlib.import_module(name)
        except ImportError:
            continue


def keep_environment_visible() -> None:
    """Let the forked processes rename themselves (``setproctitle``, as the interchange
    does) within their command line's room only: by default setproctitle takes over the
    memory that ``/proc/PID/environ`` shows, and a process's environment is how the
    session tells its processes from others."""
    os.environ["SPT_NOENV"] = "1"
    try:
        import setproctitle
    except ImportError:
        pass
    else:
        setproctitle.setproctitle(setproctitle.getproctitle())  # set up, in that mode
    del os.environ["SPT_NOENV"]
    os.environ.pop(ROOM_VARIABLE, None)


def _rewrite(start_field: int, block: bytes) -> bool:
    """Write ``block``, padded with NULs, over the memory that ``/proc/PID/cmdline`` or
    ``/proc/PID/environ`` reads (their start is field 48 or 50 of ``/proc/PID/stat``,
    their end the next), if it fits."""
    import ctypes

    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b") ", 1)[1].split()
        # fields[0] is field 3, the first after the command
        start, end = int(fields[start_field - 3]), int(fields[start_field - 2])
    except (OSError, IndexError, ValueError):
        return False
    if not start or len(block) >= end - start:
        return False
    ctypes.memmove(start, block + b"\0" * (end - start - len(block)), end - start)
    return True


def show_environment(env: dict[bytes, bytes]) -> bool:
    """Show ``env`` as this process's environment in ``/proc/PID/environ``: the memory of
    the warm parent's own, which ``ROOM_VARIABLE`` made large enough. Changing
    ``os.environ`` changes what this process and its children see, not that memory."""
    return _rewrite(50, b"".join(name + b"=" + value + b"\0" for name, value in env.items()))


def show_command_line(argv: list[str]) -> bool:
    """Show ``argv`` as this process's command line in ``/proc/PID/cmdline``, as if its
    launcher had run it: the warm parent's own, which ``ROOM_ARGUMENTS`` made long."""
    return _rewrite(48, b"".join(os.fsencode(word) + b"\0" for word in argv))


def fork_safety_problem() -> str:
    """Why forking here would not be safe, or ``""``: another thread runs, or a ZMQ
    context exists."""
    threads = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 1
    if threading.active_count() != 1 or threads != 1:
        return f"{threads} threads run in the warm parent after its imports"
    zmq = sys.modules.get("zmq")
    if zmq is not None and getattr(zmq.Context, "_instance", None) is not None:
        return "a ZMQ context exists in the warm parent after its imports"
    return ""


def _pythonpath(env: dict[bytes, bytes]) -> list[str]:
    value = env.get(b"PYTHONPATH", b"")
    return [os.fsdecode(p) for p in value.split(os.pathsep.encode()) if p]


class WarmParent:
    """The fork server's state: its listening socket, its wake-up pipe, and the
    connections on which it reports exit statuses (pid to connection)."""

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.wake_read, wake_write = os.pipe()
        os.set_blocking(self.wake_read, False)
        os.set_blocking(wake_write, False)
        self.wake_write = wake_write
        self.reports: dict[int, socket.socket] = {}
        # sys.path without the entries the session's PYTHONPATH put there: each forked
        # process puts its own environment's in front, as its interpreter would
        own = set(_pythonpath(dict(os.environb)))
        self.base_path = [p for p in sys.path if p not in own]
        signal.set_wakeup_fd(wake_write)
        signal.signal(signal.SIGCHLD, lambda number, frame: None)

    def serve(self) -> Job:
        """Fork for every request until standard input closes; returns only in a
        forked process, with the job it is to run."""
        listening = self.listener.fileno()
        while True:
            ready, _, _ = select.select([listening, self.wake_read, 0], [], [])
            if self.wake_read in ready:
                self._reap()
            if 0 in ready and not os.read(0, 4096):
                self._reap()
                os._exit(0)
            if listening in ready:
                try:
                    connection, _ = self.listener.accept()
                except OSError:
                    continue
                job = self._handle(connection)
                if job is not None:
                    return job

    def _reap(self) -> None:
        try:
            while os.read(self.wake_read, 512):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            connection = self.reports.pop(pid, None)
            if connection is not None:
                try:
                    connection.sendall(f"exited {status}\n".encode())
                except OSError:
                    pass
                connection.close()

    def _handle(self, connection: socket.socket) -> Job | None:
        fds: list[int] = []
        try:
            credentials = connection.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")
            )
            _, uid, _ = struct.unpack("3i", credentials)
            if uid != os.getuid():
                connection.close()
                return None
            connection.settimeout(REQUEST_TIMEOUT)
            data, fds, _, _ = socket.recv_fds(connection, 65536, 4)
            if len(data) < _HEADER.size or len(fds) != 4:
                raise ValueError("an incomplete request")
            (size,) = _HEADER.unpack(data[: _HEADER.size])
            if size > MAX_REQUEST:
                raise ValueError(f"a request of {size} bytes")
            data = data[_HEADER.size :]
            while len(data) < size:
                chunk = connection.recv(min(size - len(data), 1 << 20))
                if not chunk:
                    raise ValueError("an incomplete request")
                data += chunk
            request: dict[str, Any] = marshal.loads(data)
            if request.get("role") not in ROLES:
                raise ValueError(f"an unknown role {request.get('role')!r}")
            pid = os.fork()
        except Exception as exc:
            for fd in fds:
                os.close(fd)
            try:
                connection.sendall(f"error {exc}\n".encode())
            except OSError:
                pass
            connection.close()
            return None
        if pid == 0:
            return self._become(request, fds, connection)
        for fd in fds:
            os.close(fd)
        try:
            # as the shell does, from both sides: in its launcher's group before it runs
            os.setpgid(pid, request["pgid"])
        except ProcessLookupError:
            pass  # it has ended already: its status is reported as any other
        except OSError as exc:
            os.kill(pid, signal.SIGKILL)
            self._reply(connection, f"error cannot join the launcher's process group: {exc}\n")
            return None
        if self._reply(connection, f"started {pid}\n"):
            self.reports[pid] = connection
        return None

    @staticmethod
    def _reply(connection: socket.socket, line: str) -> bool:
        try:
            connection.sendall(line.encode())
        except OSError:
            connection.close()
            return False
        return True

    def _become(self, request: dict[str, Any], fds: list[int], connection: socket.socket) -> Job:
        """In the forked process: take over the launcher's process context."""
        signal.set_wakeup_fd(-1)
        for number in (
            signal.SIGCHLD,
            signal.SIGTERM,
            signal.SIGHUP,
            signal.SIGQUIT,
            signal.SIGUSR1,
            signal.SIGUSR2,
        ):
            signal.signal(number, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            os.setpgid(0, request["pgid"])
        except OSError:
            pass  # the warm parent set it, or ends this process
        # nothing of the warm parent, nor of other tests' processes, stays open here
        for held in (self.listener, connection, *self.reports.values()):
            os.close(held.detach())
        for fd in (self.wake_read, self.wake_write):
            os.close(fd)
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target)
        life = 3
        os.dup2(fds[3], life, inheritable=False)
        os.closerange(life + 1, os.sysconf("SC_OPEN_MAX"))
        os.umask(request["umask"])
        os.chdir(request["cwd"])
        env: dict[bytes, bytes] = request["env"]
        os.environ.clear()
        os.environb.update(env)
        show_environment(env)
        forget_temporary_directory()
        sys.path[:] = list(dict.fromkeys([*_pythonpath(env), *self.base_path]))
        argv: list[str] = request["argv"]
        sys.argv = argv[1:]
        show_command_line(argv)
        return Job(request["role"], argv, life)


def forget_temporary_directory() -> None:
    """Temporary files go where the launcher's ``TMPDIR`` says (the test's run directory),
    not where the warm parent's imports first looked: ``tempfile`` and multiprocessing
    (the pool's ``pymp-*`` folder) cache the folder they chose."""
    import tempfile

    tempfile.tempdir = None
    process = sys.modules.get("multiprocessing.process")
    if process is not None:
        process.current_process()._config.pop("tempdir", None)


def end_with_launcher(life: int, role: str) -> None:
    """End this process when its launcher is gone: the pipe it holds closes."""

    def watch() -> None:
        while True:
            try:
                if not os.read(life, 64):
                    break
            except InterruptedError:
                continue
            except OSError:
                break
        if role == "interchange":
            import logging

            logging.getLogger("parsl.executors.high_throughput.interchange").warning(
                "The executor's process is gone; exiting"
            )
            os._exit(1)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="launcher-watch", daemon=True).start()


def run(job: Job) -> None:
    """Run the interchange or the worker pool, as their scripts run in a new
    interpreter, and exit as it would."""
    if any(name in os.environb for name in COVERAGE_STARTUP):
        try:
            import coverage
        except ImportError:
            pass
        else:
            coverage.process_startup()
    end_with_launcher(job.life, job.role)
    try:
        if job.role == "interchange":
            from parsl.executors.high_throughput.interchange import Interchange

            sys.modules["_parslflow_htex_interchange"].main(Interchange, watch_parent=False)
        else:
            sys.modules["_parslflow_htex_pool"].main(job.argv[2:])
    except SystemExit as exc:
        code = exit_code(exc.code)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        code = 130
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    else:
        code = 0
    finish(code)


def exit_code(value: object) -> int:
    """The exit code of ``sys.exit(value)``."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    print(value, file=sys.stderr)
    return 1


def finish(code: int) -> None:
    """Exit as an interpreter does (its other threads, then its exit handlers), except
    for freeing every module inherited from the warm parent one by one: that takes the
    better part of a second and gains nothing."""
    import atexit

    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)


def main(argv: list[str]) -> None:
    address, *options = [word for word in argv if word]
    extra = [o.split("=", 1)[1] for o in options if o.startswith("--preload=")]
    # its own process group: a terminal's Ctrl-C is the session's to handle, and it ends
    # this process at its end
    os.setpgid(0, 0)
    # listening before the imports: the first test's worker pool may ask while they run
    # (it waits), and a failure here closes its connection (it then starts cold)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\0" + address)
    listener.listen(64)
    os.write(1, b"listening\n")
    preload(extra)
    problem = fork_safety_problem()
    if problem:
        sys.stderr.write(problem + "\n")
        sys.exit(2)
    parent = WarmParent(listener)
    # what is imported stays out of the forked processes' garbage collections, so
    # that they do not copy its memory by touching it
    gc.freeze()
    os.write(1, f"ready {os.getpid()}\n".encode())
    quiet = os.open(os.devnull, os.O_RDWR)
    os.dup2(quiet, 1)
    os.dup2(quiet, 2)
    os.close(quiet)
    job = parent.serve()
    run(job)


if __name__ == "__main__":
    # Run by path, this folder heads sys.path; its module names must not shadow a user's.
    if sys.path and os.path.abspath(sys.path[0]) == _HERE:
        del sys.path[0]
    main(sys.argv[1:])
