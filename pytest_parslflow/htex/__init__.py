"""The local HighThroughputExecutor made for tests: fast start, loopback only, no PATH lookups.

Where a test's time goes with stock HTEX, and what is done here instead:

- the interchange is started, and only once it answers is the first block
  submitted, at the strategy's next tick: here the block is launched at load
  together with the interchange (``_htex_executor.FastStartHTEX``) and reads
  the worker port from a file the interchange writes (``_htex_interchange``);
- the worker pool spawns a multiprocessing manager and every worker as fresh
  interpreters that each import Parsl again: here, on Linux, they are forked
  from the pool (``_htex_pool``), which also keeps a manager that connects
  this early from clashing with its own probe at the interchange;
- cancelling a block shells out to ``ps`` and ``kill`` and returns without
  waiting: here the block's process group is signalled directly and waited for,
  so nothing of it outlives the test (``_htex_executor.BlockLocalProvider``).

Logs stay where Parsl writes them, at INFO, with the lines that name executor
tasks in ``interchange.log`` and ``manager.log`` raised from DEBUG. With a Parsl
older than the single worker port (``--port``), Parsl's own scripts run, by
full path, and the first block waits for the strategy's first tick.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_parslflow.settings import ParslSettings

if TYPE_CHECKING:
    from parsl.executors import HighThroughputExecutor

HTEX_LABEL = "htex_local"

#: The strategy's tick; short, so a lost block is replaced quickly.
STRATEGY_PERIOD = 0.1

#: Seconds between heartbeats of manager and interchange; also how often a
#: manager checks its workers, so a dead worker is noticed within it.
HEARTBEAT_PERIOD = 1
#: Seconds without a heartbeat after which a manager or the interchange is lost.
HEARTBEAT_THRESHOLD = 5
#: Milliseconds the interchange and the executor's result thread wait per poll.
POLL_PERIOD_MS = 10
#: The pool starts at most (cores / cores_per_worker) workers; a tiny share, exact
#: in binary, lets ``settings.workers`` alone decide, on any number of cores.
CORES_PER_WORKER = 2.0**-10

_HERE = Path(__file__).resolve().parent


def _entry_script(name: str) -> str:
    """The full path of an HTEX entry script, so that no PATH lookup is needed."""
    import parsl.executors.high_throughput as htex_package

    return str(Path(htex_package.__file__).parent / name)


def session_pythonpath(extra_paths: Sequence[Path] = ()) -> str:
    """The session's import path as a ``PYTHONPATH`` value: its ``sys.path`` and
    ``extra_paths`` (pytest's rootdir, for ``--import-mode=importlib``)."""
    entries = [p for p in sys.path if p] + [os.fspath(p) for p in extra_paths]
    return os.pathsep.join(dict.fromkeys(entries))


def _worker_init(extra_paths: Sequence[Path], own_pool: bool = True) -> str:
    """Workers import apps from test modules, conftests and the project as the session does:
    from its ``sys.path`` and, for ``--import-mode=importlib`` (which leaves ``sys.path``
    alone and names modules from the rootdir), from pytest's rootdir.

    Where coverage measures the session, the environment also tells the worker pool
    (the plugin's, or with ``own_pool`` false Parsl's) to measure its workers
    (``coverage_support``)."""
    from pytest_parslflow.htex.coverage_support import worker_environment

    lines = [f"export PYTHONPATH={shlex.quote(session_pythonpath(extra_paths))}"]
    for name, value in worker_environment(own_pool).items():
        lines.append(f"export {name}={shlex.quote(value)}")
    return "\n".join(lines)


def _format_literal(text: str) -> str:
    """``text`` inside a launch command, which Parsl fills in with ``str.format``."""
    return shlex.quote(text).replace("{", "{{").replace("}", "}}")


def _launch_commands() -> tuple[str, list[str], bool]:
    """The pool's launch command, the interchange's, and whether they start fast.

    The fast pair needs a Parsl whose pool takes the interchange's single worker
    port as ``--port``; an older one gets its own scripts, by full path.
    """
    from parsl.executors.high_throughput.executor import DEFAULT_LAUNCH_CMD

    python = _format_literal(sys.executable)
    if "--port={worker_port}" in DEFAULT_LAUNCH_CMD:
        from pytest_parslflow.htex._htex_interchange import PORT_FILE

        pool = f"{python} {_format_literal(str(_HERE / '_htex_pool.py'))} {{logdir}}/{PORT_FILE}"
        launch = DEFAULT_LAUNCH_CMD.replace("process_worker_pool.py", pool, 1)
        return launch, [sys.executable, str(_HERE / "_htex_interchange.py")], True
    pool = f"{python} {_format_literal(_entry_script('process_worker_pool.py'))}"
    launch = DEFAULT_LAUNCH_CMD.replace("process_worker_pool.py", pool, 1)
    return launch, [sys.executable, _entry_script("interchange.py")], False


def make_htex_executor(
    settings: ParslSettings, extra_paths: Sequence[Path] = ()
) -> HighThroughputExecutor:
    """The plugin's local HTEX for ``settings``: ``settings.workers`` workers in one
    block on this machine, listening on 127.0.0.1 only, encrypted."""
    from parsl.launchers import SingleNodeLauncher

    from pytest_parslflow.htex.executor import BlockLocalProvider, FastStartHTEX

    launch_cmd, interchange_cmd, fast = _launch_commands()
    executor_class = FastStartHTEX if fast else _plain_htex()
    return executor_class(
        label=HTEX_LABEL,
        address="127.0.0.1",
        loopback_address="127.0.0.1",
        max_workers_per_node=settings.workers,
        cores_per_worker=CORES_PER_WORKER,
        heartbeat_period=HEARTBEAT_PERIOD,
        heartbeat_threshold=HEARTBEAT_THRESHOLD,
        poll_period=POLL_PERIOD_MS,
        worker_debug=False,
        encrypted=True,
        launch_cmd=launch_cmd,
        interchange_launch_cmd=interchange_cmd,
        provider=BlockLocalProvider(
            worker_init=_worker_init(extra_paths, own_pool=fast),
            init_blocks=1,
            min_blocks=0,
            max_blocks=1,
            launcher=SingleNodeLauncher(),
        ),
    )


def _plain_htex() -> type[HighThroughputExecutor]:
    from parsl.executors import HighThroughputExecutor

    return HighThroughputExecutor
