"""The local HighThroughputExecutor made for tests: fast start, loopback only, no PATH lookups."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_parslflow.settings import ParslSettings

if TYPE_CHECKING:
    from parsl.executors import HighThroughputExecutor

HTEX_LABEL = "htex_local"

#: The strategy's tick; short, so a lost block is replaced quickly.
STRATEGY_PERIOD = 0.1


def _entry_script(name: str) -> str:
    """The full path of an HTEX entry script, so that no PATH lookup is needed."""
    import parsl.executors.high_throughput as htex_package

    return str(Path(htex_package.__file__).parent / name)


def _worker_init() -> str:
    """Workers import apps from test modules, conftests and the project as the session does."""
    path = os.pathsep.join(p for p in sys.path if p)
    return f"export PYTHONPATH={shlex.quote(path)}"


def make_htex_executor(settings: ParslSettings) -> HighThroughputExecutor:
    from parsl.executors import HighThroughputExecutor
    from parsl.executors.high_throughput.executor import DEFAULT_LAUNCH_CMD
    from parsl.launchers import SingleNodeLauncher
    from parsl.providers import LocalProvider

    pool = f"{sys.executable} {_entry_script('process_worker_pool.py')}"
    return HighThroughputExecutor(
        label=HTEX_LABEL,
        address="127.0.0.1",
        loopback_address="127.0.0.1",
        max_workers_per_node=settings.workers,
        cores_per_worker=1,
        heartbeat_period=2,
        heartbeat_threshold=10,
        poll_period=10,
        launch_cmd=DEFAULT_LAUNCH_CMD.replace("process_worker_pool.py", pool, 1),
        interchange_launch_cmd=[sys.executable, _entry_script("interchange.py")],
        provider=LocalProvider(
            worker_init=_worker_init(),
            init_blocks=1,
            min_blocks=0,
            max_blocks=1,
            launcher=SingleNodeLauncher(),
        ),
    )
