"""The HighThroughputExecutor and LocalProvider classes behind the plugin's ``htex``.

This module imports Parsl: it is imported only when a test builds its executor.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Sequence
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
        job_id = super().submit(command, tasks_per_node, job_name)  # type: ignore[no-untyped-call]
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


#: seconds between checks that the interchange is still alive
WATCHDOG_PERIOD = 0.25
#: seconds to wait for the interchange to answer a command
COMMAND_TIMEOUT = 5.0


class FastStartHTEX(HighThroughputExecutor):
    """A HighThroughputExecutor whose first blocks start together with the
    interchange, at load, instead of after it and the strategy's first tick.

    Its worker pool finds the interchange's worker port in ``<logdir>/interchange.port``
    (see ``_htex_interchange``), so it can start before the port is known here.
    Blocks launched at load count against the strategy's first (initial) request.
    """

    _scaling_initialized = False
    _early_blocks = 0

    def initialize_scaling(self) -> None:
        # Called early by _start_local_interchange_process, then again by start().
        if self._scaling_initialized:
            return
        super().initialize_scaling()  # type: ignore[no-untyped-call]
        self._scaling_initialized = True

    def _start_local_interchange_process(self) -> None:
        port_file = os.path.join(self.logdir, PORT_FILE)
        if os.path.exists(port_file):
            os.remove(port_file)
        self.initialize_scaling()
        assert self.provider is not None, "HTEX always has a provider"
        init_blocks: int = self.provider.init_blocks
        super().scale_out_facade(init_blocks)
        self._early_blocks = init_blocks
        try:
            super()._start_local_interchange_process()
        except BaseException:
            # load() fails, and no cleanup will come: stop what was started.
            with contextlib.suppress(Exception):
                self.shutdown(timeout=1)
            raise

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
        super().start()  # type: ignore[no-untyped-call]
        self._stopping = threading.Event()
        watchdog = threading.Thread(
            target=self._watch_interchange, name="HTEX-Interchange-Watchdog", daemon=True
        )
        watchdog.start()

    def _watch_interchange(self) -> None:
        """Fail every pending task at once if the interchange dies: Parsl would leave
        their futures pending for ever."""
        while not self._stopping.wait(WATCHDOG_PERIOD):
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
