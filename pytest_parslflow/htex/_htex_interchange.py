"""Runs HTEX's interchange for the plugin's executor, as Parsl's ``interchange.py`` does.

Started by file path with the test session's interpreter. What differs:

- once the worker port is bound it is written to ``<logdir>/interchange.port``,
  so that the worker pool, launched at the same moment as this process, can
  connect without waiting for the executor's round trip;
- Parsl's package ``__init__`` modules are skipped on import (see
  ``import_interchange``);
- the lines naming executor tasks are logged at INFO;
- the interchange ends when the process that started it is gone.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
import threading
import time
from typing import Any

PORT_FILE = "interchange.port"
LOGGER = "parsl.executors.high_throughput.interchange"


def write_port_file(logdir: str, port: int) -> None:
    """Publish ``port`` atomically: a reader sees the whole number or no file."""
    path = os.path.join(logdir, PORT_FILE)
    partial = f"{path}.{os.getpid()}"
    with open(partial, "w") as f:
        f.write(str(port))
    os.replace(partial, path)


class TaskLinesAtInfo(logging.Filter):
    """The interchange logs which executor tasks went to which manager, and which
    came back, at DEBUG only; those lines are raised to INFO, since failure
    reports pick lines by task id and debug logging throughout costs a busy
    test a good share of its task throughput."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.DEBUG and str(record.msg).startswith(
            ("Sent tasks:", "Removing task")
        ):
            record.levelno = logging.INFO
            record.levelname = logging.getLevelName(logging.INFO)
        return True


def exit_with_parent(poll_seconds: float = 0.5) -> None:
    """End this interchange once the process that started it is gone.

    Parsl's interchange outlives a client that died without shutting it down (a
    killed pytest session); its pool then follows it within the heartbeat
    threshold.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        logging.getLogger(LOGGER).warning("The executor's process %d is gone; exiting", parent)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def import_interchange() -> Any:
    """Parsl's Interchange class, imported without running the ``__init__.py``
    of ``parsl``, ``parsl.executors`` and ``parsl.monitoring``.

    Those import the DataFlowKernel, the apps, every executor and the monitoring
    hub (with SQLAlchemy where it is installed): most of this process's start-up,
    and CPU time that the worker pool, starting at the same moment, needs more.
    The interchange uses none of them. Should some Parsl's interchange fail to
    import so, it is imported the ordinary way.
    """
    import importlib.util
    import types

    spec = importlib.util.find_spec("parsl")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    if folders:
        root = folders[0]
        for name, folder in (
            ("parsl", root),
            ("parsl.executors", os.path.join(root, "executors")),
            ("parsl.monitoring", os.path.join(root, "monitoring")),
        ):
            package = types.ModuleType(name)
            package.__path__ = [folder]
            sys.modules[name] = package
        try:
            from parsl.executors.high_throughput.interchange import Interchange
        except Exception:
            for name in [n for n in sys.modules if n == "parsl" or n.startswith("parsl.")]:
                del sys.modules[name]
        else:
            return Interchange
    from parsl.executors.high_throughput.interchange import Interchange

    return Interchange


def main(interchange_class: Any = None, watch_parent: bool = True) -> None:
    """Run the interchange. The warm parent (``_warm_parent``) passes the class it
    imported, and watches the launcher itself instead of this process's parent."""
    if interchange_class is None:
        interchange_class = import_interchange()
    from parsl.utils import setproctitle

    setproctitle("parsl: HTEX interchange")
    if watch_parent:
        exit_with_parent()
    logging.getLogger(LOGGER).addFilter(TaskLinesAtInfo())
    config = pickle.load(sys.stdin.buffer)
    interchange = interchange_class(**config)
    write_port_file(config["logdir"], interchange.worker_port)
    interchange.start()


if __name__ == "__main__":
    # Run by path, this folder heads sys.path; its module names (config,
    # settings, ...) must not shadow a user's.
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]
    main()
