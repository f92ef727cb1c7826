"""A site config for a Slurm cluster: the same tests, run on a real batch scheduler.

    pytest -p parslflow --parslflow-config examples/site/slurm_config.py tests_of_your_workflow/

Parsl's convention: ``fresh_config()`` returns a new ``parsl.config.Config`` each time
it is called, and the plugin calls it for every test (and every ``parsl_restart``), then
gives the Config the test's own ``run_dir`` and the marks' explicit settings (retries,
retry_handler, checkpoint, app_cache). Executors and providers stay as written here.

It is written for the single-node Slurm that ``.ci/slurm.sh`` starts on this machine's
loopback address; on a real cluster set ``address`` to an interface the compute nodes
reach, and the partition, account and walltime to yours (or use the environment
variables below). The worker command and the interchange run with this session's
interpreter by full path, so the workers need neither the venv's ``bin/`` on PATH nor a
shared installation beyond the session's own paths: the plugin gives the workers of a
``--parslflow-config`` the session's ``sys.path`` as PYTHONPATH, so that apps defined
in test modules and conftests can be imported there (nothing to export by hand).
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import parsl.executors.high_throughput as htex_package
from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.executors.high_throughput.executor import DEFAULT_LAUNCH_CMD
from parsl.launchers import SrunLauncher
from parsl.providers import SlurmProvider

#: the HTEX scripts of the installed Parsl, run by full path
SCRIPTS = Path(htex_package.__file__).resolve().parent


def _quoted(text: str) -> str:
    """``text`` inside HTEX's launch command, which Parsl fills in with ``str.format``."""
    return shlex.quote(text).replace("{", "{{").replace("}", "}}")


def fresh_config() -> Config:
    pool = f"{_quoted(sys.executable)} {_quoted(str(SCRIPTS / 'process_worker_pool.py'))}"
    return Config(
        executors=[
            HighThroughputExecutor(
                label="slurm_htex",
                address=os.environ.get("PARSLFLOW_SLURM_ADDRESS", "127.0.0.1"),
                max_workers_per_node=2,
                cores_per_worker=1,
                heartbeat_period=2,
                heartbeat_threshold=10,
                launch_cmd=DEFAULT_LAUNCH_CMD.replace("process_worker_pool.py", pool, 1),
                interchange_launch_cmd=[sys.executable, str(SCRIPTS / "interchange.py")],
                provider=SlurmProvider(
                    partition=os.environ.get("PARSLFLOW_SLURM_PARTITION"),
                    account=os.environ.get("PARSLFLOW_SLURM_ACCOUNT"),
                    nodes_per_block=1,
                    init_blocks=1,
                    min_blocks=0,
                    max_blocks=1,
                    walltime=os.environ.get("PARSLFLOW_SLURM_WALLTIME", "00:10:00"),
                    # share the node with other tests' blocks (pytest -n N)
                    exclusive=False,
                    launcher=SrunLauncher(),
                ),
            )
        ],
        # the first block is submitted at the strategy's first tick: make it come soon
        strategy_period=0.5,
        usage_tracking=0,
    )
