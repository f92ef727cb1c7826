"""Starts an interchange or a worker pool of the plugin's HTEX from the session's warm
parent (``_warm_parent``), standing in for it where it was launched.

Run as ``python -I -S _warm_launch.py ADDRESS ROLE PYTHON SCRIPT ARGS...``: by the
executor in place of its interchange (``Popen``), by a block's launcher in place of its
worker pool. The last part, ``PYTHON SCRIPT ARGS...``, is the cold command.

This process costs a bare interpreter (no ``site``, standard library only). It hands
the warm parent its environment, working directory, umask, process group, standard
streams and one end of a pipe; the warm parent forks a process that takes all of them
over, exactly, and runs the role. Then this process stands in for it:

- a signal sent to this process (``Popen.terminate()``, a shell's ``kill``) is passed
  on to it; when it ends, this process ends the same way (exit code or signal), which
  is what ``Popen.poll()`` and the block's exit code file read;
- if this process dies first (SIGKILL), the forked process sees its pipe close and
  ends too; the interchange's stand-in also ends when the executor's process is gone,
  as Parsl's interchange does.

Where the warm parent cannot be reached or refuses, this process becomes the cold
command (``exec``), so a block or an interchange always starts.
"""

from __future__ import annotations

# A bare interpreter's imports cost less than its start-up; ``socket``, ``signal`` and
# ``typing`` (enum, functools, ...) would double it. Their C modules do the same here.
import _signal  # type: ignore[import-not-found]  # no stubs: signal's C module
import _socket
import _struct
import marshal
import os
import select
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType
    from typing import NoReturn

#: signals passed on to the forked process
FORWARDED = (
    _signal.SIGTERM,
    _signal.SIGINT,
    _signal.SIGHUP,
    _signal.SIGQUIT,
    _signal.SIGUSR1,
    _signal.SIGUSR2,
)
#: seconds between checks that the executor's process is still there (interchange)
PARENT_POLL_SECONDS = 0.5
#: seconds to wait for the warm parent's answer to a request: as long as the session
#: waits for its imports, which the first test's pool may wait for
ANSWER_TIMEOUT = 120.0

_HEADER = _struct.Struct("!I")


def cold(command: list[str], why: str = "") -> NoReturn:
    """Become the cold command."""
    if why:
        sys.stderr.write(f"pytest-parslflow: starting cold ({why})\n")
        sys.stderr.flush()
    os.execv(command[0], command)


def _stream(fd: int) -> int:
    """``fd`` where it is open, else a descriptor on /dev/null in its place."""
    try:
        os.fstat(fd)
    except OSError:
        return os.open(os.devnull, os.O_RDWR)
    return fd


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def request(connection: _socket.socket, role: str, command: list[str], life: int) -> None:
    data = marshal.dumps(
        {
            "role": role,
            "argv": command,
            "env": dict(os.environb),
            "cwd": os.getcwdb(),
            "umask": _umask(),
            "pgid": os.getpgid(0),
            "launcher": os.getpid(),
        }
    )
    fds = [_stream(0), _stream(1), _stream(2), life]
    rights = _struct.pack(f"{len(fds)}i", *fds)
    connection.sendmsg(
        [_HEADER.pack(len(data)) + data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)]
    )


class Answers:
    """The warm parent's answer lines, one at a time (two may come in one read)."""

    def __init__(self, connection: _socket.socket) -> None:
        self.connection = connection
        self.buffer = b""

    def ready(self, timeout: float) -> bool:
        if b"\n" in self.buffer:
            return True
        readable, _, _ = select.select([self.connection], [], [], timeout)
        return bool(readable)

    def line(self, timeout: float | None = None) -> bytes:
        """The next line, or ``b""`` where the warm parent closed the connection."""
        while b"\n" not in self.buffer:
            if timeout is not None and not self.ready(timeout):
                raise TimeoutError("no answer from the warm parent")
            chunk = self.connection.recv(256)
            if not chunk:
                return b""
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line + b"\n"


def end_like(status: int) -> NoReturn:
    """End this process as the forked process ended (``os.waitpid`` status)."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        _signal.signal(number, _signal.SIG_DFL)
        os.kill(os.getpid(), number)
        os._exit(128 + number)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


def wait_without_warm_parent(pid: int) -> NoReturn:
    """The warm parent is gone: its status reports will not come. Wait for the
    forked process to end; its exit code cannot be known here."""
    try:
        handle = os.pidfd_open(pid)
    except (AttributeError, OSError):
        while os.path.exists(f"/proc/{pid}"):
            select.select([], [], [], 0.05)
    else:
        select.select([handle], [], [])
    os._exit(1)


def main(argv: list[str]) -> None:
    address, role, *command = argv
    try:
        connection = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        connection.connect("\0" + address)
    except OSError as exc:
        cold(command, f"the warm parent is not reachable: {exc}")
    # the forked process holds the read end; the write end, never written, closes
    # when this process ends
    life_read, _life_write = os.pipe()
    child = [0]
    pending: list[int] = []

    def forward(number: int, frame: FrameType | None) -> None:
        if child[0]:
            try:
                os.kill(child[0], number)
            except OSError:
                pass
        else:
            pending.append(number)

    for number in FORWARDED:
        _signal.signal(number, forward)
    answers = Answers(connection)
    try:
        request(connection, role, command, life_read)
        answer = answers.line(ANSWER_TIMEOUT)
    except OSError as exc:
        answer = f"error {exc}\n".encode()
    os.close(life_read)
    if not answer.startswith(b"started "):
        for number in FORWARDED:
            _signal.signal(number, _signal.SIG_DFL)
        for waiting in pending:  # a signal that came meanwhile was meant for the process
            os.kill(os.getpid(), waiting)
        why = answer.decode(errors="replace").strip() or "the warm parent closed the connection"
        cold(command, why)
    child[0] = int(answer.split()[1])
    for meant in pending:
        forward(meant, None)
    parent = os.getppid()
    while True:
        if role == "interchange" and not answers.ready(PARENT_POLL_SECONDS):
            if os.getppid() != parent:
                # the executor's process is gone: closing our end of the pipe ends
                # the interchange, as Parsl's own interchange ends then
                os._exit(1)
            continue
        line = answers.line()
        if not line:
            wait_without_warm_parent(child[0])
        if line.startswith(b"exited "):
            end_like(int(line.split()[1]))


if __name__ == "__main__":
    main(sys.argv[1:])
