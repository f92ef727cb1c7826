"""Runs HTEX's ``process_worker_pool`` for the plugin's executor, started cheaply.

Started by file path with the test session's interpreter as
``_htex_pool.py PORT_FILE <process_worker_pool arguments>``, where the
``--port`` argument is ``None``: the pool is launched together with the
interchange, imports Parsl while the interchange starts, then reads the worker
port from ``PORT_FILE``. Then Parsl's own pool code runs as ``__main__``, with
these changes:

- on Linux its processes (the workers and the multiprocessing manager) are
  forked from this already initialised interpreter instead of spawned as
  fresh ones that import Parsl all over again;
- its connection probe carries no identity (see ``probe_without_identity``);
- two of its log lines change level (see ``ManagerLogLevels``);
- where coverage measures the test session, the workers measure themselves
  and save their data when they end (see ``coverage_support``).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

#: Longer than the executor waits for the interchange (120 s): by then the
#: executor has given up and cancelled this block.
PORT_WAIT_SECONDS = 150.0
POOL_MODULE = "parsl.executors.high_throughput.process_worker_pool"
#: set by the block's worker_init where coverage measures the test session; the same
#: name as ``coverage_support.COVERAGE_ENV``
COVERAGE_ENV = "PARSLFLOW_COVERAGE"


def read_port(path: str, timeout: float) -> int:
    """Wait for the interchange to publish its worker port in ``path``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path) as f:
                return int(f.read())
        except FileNotFoundError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the interchange did not publish its worker port in {path} "
                    f"within {timeout:.0f} s"
                ) from None
            time.sleep(0.005)


def forget_parent_log_handlers() -> None:
    """In a forked worker, stop writing to the pool's ``manager.log``: the worker
    adds its own ``worker_N.log`` handler, and its lines belong there only."""
    for name in ("parsl", "concurrent.futures"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)


class ManagerLogLevels(logging.Filter):
    """Two of the manager's log lines at the level a reader of ``manager.log`` needs.

    Which executor tasks the manager received is logged at DEBUG only, so this
    line is raised to INFO: failure reports pick lines by task id, and debug
    logging throughout costs a busy test a good share of its task throughput.

    The manager waits ``heartbeat_period`` *milliseconds* for the interchange's
    answer to its connection probe and logs an ERROR when that wait ends, then
    blocks until the answer comes anyway; with a short heartbeat that ERROR is
    in nearly every ``manager.log``, so it is lowered to INFO, lest failure
    reports be led astray by it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if record.levelno == logging.DEBUG and message.startswith("Got executor tasks"):
            _relevel(record, logging.INFO)
        elif record.levelno == logging.ERROR and message.startswith(
            "Failed to connect to interchange"
        ):
            _relevel(record, logging.INFO)
        return True


def _relevel(record: logging.LogRecord, level: int) -> None:
    record.levelno = level
    record.levelname = logging.getLevelName(level)


def probe_without_identity(probe: Callable[..., Any]) -> Callable[..., Any]:
    """Parsl's manager probes the interchange from a socket with the manager's
    identity, closes it and connects its task socket with the same identity.
    The interchange drops a connection whose identity it still holds, so a
    manager that connects soon after its probe, as a forked pool does, waits
    forever for the answer to its second probe. The probe's identity only names
    it in the interchange's log; without it, the two connections never clash."""

    def probe_addresses(*args: Any, **kwargs: Any) -> Any:
        kwargs.pop("identity", None)
        return probe(*args, **kwargs)

    return probe_addresses


def load_coverage_support() -> ModuleType:
    """``coverage_support`` from this folder, by path: importing ``pytest_parslflow``
    would import pytest too."""
    name = "_parslflow_coverage_support"
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "coverage_support.py")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def fork_context() -> Any:
    """The context the pool's processes are forked from: with measured workers where
    coverage measures the test session (or, by its subprocess support, this pool)."""
    import multiprocessing

    spec = os.environ.get(COVERAGE_ENV)
    if spec or "coverage" in sys.modules:
        support = load_coverage_support()
        if support.pool_needs_coverage():
            try:
                import coverage  # noqa: F401  (imported once here, not in every worker)
            except ImportError:
                logging.getLogger(POOL_MODULE).warning(
                    "coverage measures the test session but cannot be imported here: "
                    "the workers are not measured"
                )
            else:
                return support.covered_fork_context(spec)
    return multiprocessing.get_context("fork")


def main(argv: list[str]) -> None:
    import runpy
    import warnings

    # The expensive part, done while the interchange starts.
    import parsl.multiprocessing
    from parsl.executors.high_throughput import probe, process_worker_pool

    port_file, *pool_args = argv
    if sys.platform.startswith("linux"):
        # Parsl's pool takes its process context from here when run below.
        parsl.multiprocessing.SpawnContext = fork_context()
    probe.probe_addresses = probe_without_identity(probe.probe_addresses)
    os.register_at_fork(after_in_child=forget_parent_log_handlers)
    warnings.filterwarnings("ignore", message=r".*fork\(\) may lead to deadlocks", category=Warning)
    logging.getLogger(POOL_MODULE).addFilter(ManagerLogLevels())

    port = read_port(port_file, PORT_WAIT_SECONDS)
    pool_args = [f"--port={port}" if arg == "--port=None" else arg for arg in pool_args]
    sys.argv = [process_worker_pool.__file__ or POOL_MODULE, *pool_args]
    # Imported above only for its imports; runpy warns about a module it
    # runs as __main__ that is imported already.
    del sys.modules[POOL_MODULE]
    runpy.run_module(POOL_MODULE, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    # Run by path, this folder heads sys.path; its module names (config,
    # settings, ...) must not shadow the modules of the tests' apps.
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]
    main(sys.argv[1:])
