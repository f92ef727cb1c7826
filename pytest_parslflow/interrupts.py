"""pytest ends promptly and leaves nothing of Parsl, however it is stopped.

- SIGTERM (what a CI cancel sends) and SIGHUP take pytest's own interrupt path, as
  Ctrl-C does: a ``KeyboardInterrupt``, then the session's end, where every process
  that Parsl started is ended (first thing, before fixtures are torn down). Handlers
  are installed only where the signal's disposition is still the default.
- The worker threads of the thread executors of DFKs the plugin loads never keep
  the interpreter from exiting: an app stuck in ``while True`` is named by the leak
  guard, and pytest still exits after its summary.
- A DataFlowKernel whose start failed half way is stopped here: its poller,
  executors (their threads and sockets) and monitoring.

This module imports neither Parsl nor pytest at import time.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import traceback
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_parslflow.origins import Owner

_INSTALLED: dict[int, Any] = {}
_SIGNALS = ("SIGTERM", "SIGHUP")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"{signal.Signals(signum).name} received")


def install_handlers() -> None:
    """Turn SIGTERM and SIGHUP into pytest's interrupt (where nobody else handles them)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for name in _SIGNALS:
        signum = getattr(signal, name, None)
        if signum is None or signum in _INSTALLED:
            continue
        if signal.getsignal(signum) is signal.SIG_DFL:
            _INSTALLED[signum] = signal.signal(signum, _interrupt)


def restore_handlers() -> None:
    """Give SIGTERM and SIGHUP back their earlier disposition (the session's end)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum, previous in list(_INSTALLED.items()):
        if signal.getsignal(signum) is _interrupt:
            signal.signal(signum, previous)
        del _INSTALLED[signum]


def never_wait_at_exit(dfk: Any) -> None:
    """Make the worker threads of ``dfk``'s thread executors daemon threads that
    ``concurrent.futures`` does not join at exit: Python cannot stop a thread, and an
    app that never returns would otherwise keep pytest from exiting for ever."""
    from parsl.executors.threads import ThreadPoolExecutor

    for executor in dfk.executors.values():
        pool = getattr(executor, "executor", None)
        if isinstance(executor, ThreadPoolExecutor) and pool is not None:
            _daemon_workers(pool)


def _daemon_workers(pool: Any) -> None:
    import concurrent.futures.thread as cf_thread

    original = pool._adjust_thread_count
    if getattr(original, "_parslflow", False):
        return

    def adjust_thread_count() -> None:
        # A new thread takes its daemon flag from the thread that creates it.
        creator: Any = threading.current_thread()
        was = creator._daemonic
        creator._daemonic = True
        try:
            original()
        finally:
            creator._daemonic = was
        queues: Any = cf_thread._threads_queues
        for thread in list(pool._threads):
            queues.pop(thread, None)

    adjust_thread_count._parslflow = True  # type: ignore[attr-defined]
    pool._adjust_thread_count = adjust_thread_count


def failed_dfk(error: BaseException) -> Any:
    """The DataFlowKernel whose ``__init__`` raised ``error``, if it got that far."""
    for frame, _ in traceback.walk_tb(error.__traceback__):
        candidate = frame.f_locals.get("self")
        kind = type(candidate)
        if kind.__name__ == "DataFlowKernel" and kind.__module__ == "parsl.dataflow.dflow":
            return candidate
    return None


def stop_failed_start(error: BaseException, config: Any, owner: Owner) -> None:
    """Stop what a DataFlowKernel that failed to start had started: its poller, every
    executor (also one whose interchange never started: its result thread and
    sockets), its monitoring and its log file. What cannot be stopped is named in a
    note on ``error`` and is not held against the test as a leak."""
    dfk = failed_dfk(error)
    executors = list(getattr(config, "executors", ()))
    if dfk is not None:
        poller = getattr(dfk, "job_status_poller", None)
        if poller is not None:
            with contextlib.suppress(Exception):
                poller.close()
    for executor in executors:
        _stop_executor(executor)
    if dfk is not None:
        monitoring = getattr(dfk, "monitoring", None)
        if monitoring is not None:
            with contextlib.suppress(Exception):
                monitoring.close()
        launch_pool = getattr(dfk, "_task_launch_pool", None)
        if launch_pool is not None:
            launch_pool.shutdown(wait=False)
        unregister = getattr(dfk, "_logging_unregister_callback", None)
        if unregister is not None:
            with contextlib.suppress(Exception):
                unregister()
        import atexit

        atexit.unregister(dfk.atexit_cleanup)
    from pytest_parslflow.leaks import parsl_threads_after_grace, sockets_now

    left = parsl_threads_after_grace(set(owner.excused_threads))
    owner.excused_threads |= set(left)
    owner.excused_descriptors |= sockets_now()
    if left and hasattr(error, "add_note"):
        names = ", ".join(sorted(repr(thread.name) for thread in left.values()))
        error.add_note(f"pytest-parslflow: the failed DataFlowKernel left threads {names}")


def _stop_executor(executor: Any) -> None:
    with contextlib.suppress(Exception):
        executor.shutdown()
    exit_event = getattr(executor, "_result_queue_thread_exit", None)
    if exit_event is not None:
        exit_event.set()
    thread = getattr(executor, "_result_queue_thread", None)
    if thread is not None and thread.is_alive():
        thread.join(5)
    for name in ("outgoing_q", "incoming_q", "command_client"):
        pipe = getattr(executor, name, None)
        if pipe is not None:
            with contextlib.suppress(Exception):
                pipe.close()
