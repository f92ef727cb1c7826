"""The HighThroughputExecutor and LocalProvider classes behind the plugin's ``htex``.

This module imports Parsl: it is imported only when a test builds its executor.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psutil
from parsl.executors import HighThroughputExecutor
from parsl.providers import LocalProvider

from pytest_parslflow.htex._htex_interchange import PORT_FILE

#: How long a cancelled block's processes get to exit on SIGTERM before SIGKILL.
CANCEL_GRACE_SECONDS = 3.0
#: How often the block's state is read: a block that died is noticed this fast.
STATUS_POLLING_SECONDS = 1


class BlockLocalProvider(LocalProvider):
    """A LocalProvider whose blocks are noticed dead within a second and whose
    ``cancel`` returns only once every process of the block has exited."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self._groups: dict[str, int] = {}

    @property
    def status_polling_interval(self) -> int:
        return STATUS_POLLING_SECONDS

    def submit(
        self, command: str, tasks_per_node: int, job_name: str = "parsl.localprovider"
    ) -> Any:
        if _SHELL_SAFE.match(self.script_dir or "") or hasattr(self, "channel"):
            job_id = super().submit(command, tasks_per_node, job_name)  # type: ignore[no-untyped-call]
        else:
            job_id = submit_quoted(self, command, tasks_per_node, job_name)
        # The block runs in the process group of the shell that started it; note
        # it now, while the block's first process surely exists.
        try:
            self._groups[job_id] = os.getpgid(int(job_id))
        except ProcessLookupError:
            pass
        return job_id

    def cancel(self, job_ids: Sequence[Any]) -> list[bool]:
        groups = []
        for job_id in job_ids:
            self.resources[job_id]["cancelled"] = True
            group = self._groups.pop(job_id, None)
            if group is not None:
                groups.append(group)
        _note_task_commands(self, set(groups))
        stop_process_groups(groups)
        return [True for _ in job_ids]

    def cancel_all(self) -> None:
        """Cancel every block still running; the ones already cancelled are skipped."""
        self.cancel(list(self._groups))


def _note_task_commands(provider: BlockLocalProvider, groups: set[int]) -> None:
    """Name, for the leak guard's report, the commands that tasks still run in the
    blocks about to be cancelled (a bash app's command that outlived its test):
    processes a worker started, whose environment names the worker. They get the
    guard's grace to end on their own first, as a task that just finished may still be
    on its way out."""
    from pytest_parslflow import leaks, origins

    owner = origins.registry().claimed_owner(provider)
    if owner is None or not groups:
        return
    running = {p.pid: note for p in _group_members(groups) if (note := leaks.task_command(p.pid))}
    deadline = time.monotonic() + leaks.GRACE
    while running and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = {p.pid for p in _group_members(groups)}
        running = {pid: note for pid, note in running.items() if pid in alive}
    owner.notes += [f"{note}: ended with its block" for note in running.values()]


def _candidates() -> list[psutil.Process]:
    """Processes that may be in a block's group: on Linux, where the test process is a
    subreaper, only its descendants (cheap whatever runs on the host)."""
    from pytest_parslflow import leaks

    if leaks.is_subreaper():
        processes = []
        for pid in leaks.descendants(os.getpid()):
            try:
                processes.append(psutil.Process(pid))
            except psutil.Error:
                continue
        return processes
    return list(psutil.process_iter())


#: a path that LocalProvider's own (unquoted) shell command takes as it is
_SHELL_SAFE = re.compile(r"^[\w./+:,@%=-]*$", re.ASCII)


def submit_quoted(provider: LocalProvider, command: str, tasks_per_node: int, job_name: str) -> str:
    """``LocalProvider.submit`` with every path shell-quoted: Parsl's own puts the submit
    script's path unquoted into a ``bash -c '...'``, so a basetemp with a space, a quote
    or a ``$`` never starts a block."""
    import time

    from parsl.jobs.states import JobState, JobStatus
    from parsl.providers.errors import SubmitException
    from parsl.utils import execute_wait

    job_name = f"{job_name}.{time.time()}"
    script_dir = str(provider.script_dir)
    script_path = os.path.abspath(os.path.join(script_dir, f"{job_name}.sh"))
    wrap_command = (
        provider.worker_init
        + f"\nexport JOBNAME={job_name}\n"
        + provider.launcher(command, tasks_per_node, provider.nodes_per_block, script_dir)
    )
    provider._write_submit_script(wrap_command, script_path)
    sh, ec, out, err = (shlex.quote(script_path + suffix) for suffix in ("", ".ec", ".out", ".err"))
    inner = (
        f"echo - >{ec} && {{ {{ bash {sh} 1>{out} 2>{err} ; echo $? > {ec} ; }} "
        f'>/dev/null 2>&1 & echo "PID:$!" ; }}'
    )
    retcode, stdout, stderr = execute_wait(
        f"/bin/bash -c {shlex.quote(inner)}", provider.cmd_timeout
    )
    if retcode != 0:
        raise SubmitException(
            job_name, f"Launch command exited with code {retcode}", stdout, stderr
        )
    for line in stdout.split("\n"):
        if line.startswith("PID:"):
            job_id = line.split("PID:")[1].strip()
            break
    else:
        raise SubmitException(job_name, "Channel failed to start remote command/retrieve PID")
    provider.resources[job_id] = {
        "job_id": job_id,
        "status": JobStatus(JobState.RUNNING),
        "remote_pid": int(job_id),
        "script_path": script_path,
    }
    return job_id


def _group_members(groups: set[int]) -> list[psutil.Process]:
    members = []
    for process in _candidates():
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            if os.getpgid(process.pid) in groups:
                members.append(process)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


def _signal_groups(groups: set[int], signum: int) -> None:
    for group in groups:
        try:
            os.killpg(group, signum)
        except (ProcessLookupError, PermissionError):
            pass


def stop_process_groups(group_ids: Sequence[int]) -> None:
    """SIGTERM every process in the groups, SIGKILL what is left after a grace
    period, and return once none of them runs any more."""
    groups = {group for group in group_ids if _group_members({group})}
    if not groups:
        return
    _signal_groups(groups, signal.SIGTERM)
    deadline = time.monotonic() + CANCEL_GRACE_SECONDS
    while _group_members(groups):
        if time.monotonic() > deadline:
            _signal_groups(groups, signal.SIGKILL)
            psutil.wait_procs(_group_members(groups), timeout=CANCEL_GRACE_SECONDS)
            return
        time.sleep(0.005)


@contextlib.contextmanager
def shell_quoted_paths(executor: HighThroughputExecutor) -> Iterator[None]:
    """While HTEX composes its worker launch command, the paths it puts in (logdir,
    cert_dir, logconf) are shell-quoted, and their braces doubled for the second
    ``str.format`` that fills in the block id: any basetemp path starts a block."""
    saved = {
        name: getattr(executor, name)
        for name in ("cert_dir", "logconf_path")
        if isinstance(getattr(executor, name, None), str)
    }
    # worker_logdir is run_dir/label: a quoted root of the same directory stands in (a
    # root that a user set may name a variable for the shell to expand, and stays as it is)
    own_root = executor.worker_logdir_root is None
    try:
        for name, value in saved.items():
            setattr(executor, name, _format_literal(value))
        if own_root:
            executor.worker_logdir_root = _format_literal(executor.run_dir + "/")
        yield
    finally:
        for name, value in saved.items():
            setattr(executor, name, value)
        if own_root:
            executor.worker_logdir_root = None


def _format_literal(text: str) -> str:
    return shlex.quote(text).replace("{", "{{").replace("}", "}}")


#: seconds between checks that the interchange is still alive
WATCHDOG_PERIOD = 0.25
#: seconds to wait for the interchange to answer a command
COMMAND_TIMEOUT = 5.0


class _DeliveryTracking(dict[Any, Any]):
    """HTEX's pending futures by executor task id, remembering the one that the result
    thread took last (it takes a future before loading its result)."""

    last: Any = None

    def pop(self, key: Any, *default: Any) -> Any:
        future = super().pop(key, *default)
        self.last = future
        return future


class FastStartHTEX(HighThroughputExecutor):
    """A HighThroughputExecutor whose first blocks start together with the
    interchange, at load, instead of after it and the strategy's first tick.

    Its worker pool finds the interchange's worker port in ``<logdir>/interchange.port``
    (see ``_htex_interchange``), so it can start before the port is known here.
    Blocks launched at load count against the strategy's first (initial) request.
    """

    _scaling_initialized = False
    _early_blocks = 0
    #: launch the interchange before the first blocks: where it is forked from the warm
    #: parent it starts sooner than a block's pool, which waits for its port
    interchange_first = False

    def initialize_scaling(self) -> None:
        # Called early by _start_local_interchange_process, then again by start().
        if self._scaling_initialized:
            return
        with shell_quoted_paths(self):
            super().initialize_scaling()  # type: ignore[no-untyped-call]
        self._scaling_initialized = True

    def _start_local_interchange_process(self) -> None:
        port_file = os.path.join(self.logdir, PORT_FILE)
        if os.path.exists(port_file):
            os.remove(port_file)
        self.initialize_scaling()
        assert self.provider is not None, "HTEX always has a provider"
        init_blocks: int = self.provider.init_blocks

        def launch_early_blocks() -> None:
            super(FastStartHTEX, self).scale_out_facade(init_blocks)
            self._early_blocks = init_blocks

        if self.interchange_first:
            self._before_first_command(launch_early_blocks)
        else:
            launch_early_blocks()
        try:
            super()._start_local_interchange_process()
        except BaseException:
            # load() fails, and no cleanup will come: stop what was started.
            with contextlib.suppress(Exception):
                self.shutdown(timeout=1)
            raise

    def _before_first_command(self, action: Callable[[], None]) -> None:
        """Run ``action`` once, just before the first command to the interchange: Parsl
        sends it (asking for the worker port) right after launching the interchange."""
        client: Any = self.command_client
        run = client.run

        def run_after_action(*args: Any, **kwargs: Any) -> Any:
            del client.run  # back to the class's own
            action()
            return run(*args, **kwargs)

        client.run = run_after_action

    def scale_out_facade(self, n: int) -> list[str]:
        absorbed = min(n, self._early_blocks)
        self._early_blocks = 0
        if n - absorbed <= 0:
            return []
        blocks: list[str] = super().scale_out_facade(n - absorbed)
        return blocks

    def _command(self, command: str) -> Any:
        """A command to the interchange that cannot hang: Parsl waits forever for a reply,
        which never comes from an interchange that died (cleanup would hang in scale_in)."""
        from parsl.executors.high_throughput.errors import CommandClientTimeoutError

        process = self.interchange_proc
        if process is not None and process.poll() is not None:
            raise CommandClientTimeoutError(f"the interchange exited ({process.returncode})")
        return self.command_client.run(command, timeout_s=COMMAND_TIMEOUT)

    def connected_managers(self) -> list[dict[str, Any]]:
        try:
            managers: list[dict[str, Any]] = self._command("MANAGERS")
        except Exception:
            return []  # no interchange to ask: no manager to scale in
        return managers

    def connected_blocks(self) -> list[str]:
        try:
            blocks: list[str] = self._command("CONNECTED_BLOCKS")
        except Exception:
            return []
        return blocks

    def start(self) -> None:
        self._stopping = threading.Event()
        if type(getattr(self, "_tasks", None)) is dict:
            self._tasks = _DeliveryTracking(self._tasks)
        super().start()  # type: ignore[no-untyped-call]
        watchdog = threading.Thread(
            target=self._watch_interchange, name="HTEX-Interchange-Watchdog", daemon=True
        )
        watchdog.start()

    def _result_queue_worker(self) -> None:
        """Parsl's result thread, kept alive past a message it cannot handle: a result
        that cannot be unpickled here (its ``__reduce__`` raising outside the worker)
        ended the thread, and with it every later result, with that task's future left
        pending for ever. That task now fails with the error, and the thread goes on."""
        while True:
            try:
                super()._result_queue_worker()
            except Exception as exc:
                tasks = self._tasks
                future = tasks.last if isinstance(tasks, _DeliveryTracking) else None
                if future is not None and not future.done():
                    from parsl.serialize.errors import DeserializationError

                    task = getattr(future, "parsl_executor_task_id", "?")
                    error = DeserializationError(
                        f"the result of executor task {task} could not be loaded in pytest: "
                        f"{type(exc).__name__}: {exc}"
                    )
                    error.__cause__ = exc
                    future.set_exception(error)
                    continue
                self._result_thread_error = f"{type(exc).__name__}: {exc}"
                raise
            return

    _result_thread_error = ""

    def _result_thread_problem(self) -> str:
        """Why the result thread ended while the executor still runs, or ``""``."""
        thread = getattr(self, "_result_queue_thread", None)
        if thread is None or thread.is_alive() or self._stopping.is_set():
            return ""
        reason = self._result_thread_error or "see parsl.log"
        return f"the result thread of executor {self.label} ended ({reason})"

    def _watch_interchange(self) -> None:
        """Fail every pending task at once if the interchange or the result thread
        dies: Parsl would leave their futures pending for ever."""
        while not self._stopping.wait(WATCHDOG_PERIOD):
            problem = self._result_thread_problem()
            if problem:
                if not self.bad_state_is_set:
                    self.set_bad_state_and_fail_all(RuntimeError(problem))
                # its socket is closed by the thread only when it ends normally
                with contextlib.suppress(Exception):
                    self.incoming_q.close()
                return
            process = self.interchange_proc
            if process is not None and process.poll() is not None:
                if not self.bad_state_is_set:
                    self.set_bad_state_and_fail_all(
                        RuntimeError(
                            f"the interchange of executor {self.label} exited with code "
                            f"{process.returncode}; see {self.label}/interchange.log"
                        )
                    )
                return

    def shutdown(self, timeout: float = 10.0) -> None:
        stopping = getattr(self, "_stopping", None)
        if stopping is not None:
            stopping.set()
        try:
            super().shutdown(timeout)
        finally:
            # The strategy scales in before this, except for an executor in bad
            # state: its blocks must not outlive the test either.
            self._stop_blocks()

    def _stop_blocks(self) -> None:
        if isinstance(self.provider, BlockLocalProvider):
            self.provider.cancel_all()
