"""A real batch scheduler: the plugin's tests run through ``--parslflow-config`` on a
single-node Slurm (``.ci/slurm.sh start``), with HTEX blocks submitted by Parsl's
``SlurmProvider`` (``examples/site/slurm_config.py``).

``.ci/run`` sets PARSLFLOW_SLURM=1 (and SLURM_CONF) once Slurm runs; without it these
tests are skipped, saying why (PARSLFLOW_SLURM_UNAVAILABLE: why Slurm could not start).
With it, a Slurm that does not answer is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

SITE_CONFIG = Path(__file__).resolve().parent.parent / "examples" / "site" / "slurm_config.py"

UNAVAILABLE = os.environ.get("PARSLFLOW_SLURM_UNAVAILABLE")

pytestmark = [
    pytest.mark.htex,
    pytest.mark.skipif(
        os.environ.get("PARSLFLOW_SLURM") != "1",
        reason=f"Slurm could not start: {UNAVAILABLE}"
        if UNAVAILABLE
        else "PARSLFLOW_SLURM is not set: .ci/run sets it once `bash .ci/slurm.sh start` "
        "has a single-node Slurm running (with SLURM_CONF)",
    ),
]

#: seconds for Slurm's queue to empty once the tests' blocks were cancelled
QUEUE_DRAIN_SECONDS = 30.0


def squeue() -> str:
    result = subprocess.run(
        ["squeue", "-h", "-o", "%i %j %T"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, f"squeue failed: {result.stderr}"
    return result.stdout.strip()


@pytest.fixture
def slurm() -> None:
    """Slurm answers, its queue is empty before the test, and empties again after it."""
    assert shutil.which("sinfo"), "PARSLFLOW_SLURM=1 but Slurm's commands are not on PATH"
    state = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    assert state.returncode == 0, f"PARSLFLOW_SLURM=1 but sinfo failed: {state.stderr}"
    assert "idle" in state.stdout.split() or "mix" in state.stdout.split(), state.stdout
    assert squeue() == "", "jobs were queued before the test"


def wait_for_empty_queue() -> str:
    deadline = time.monotonic() + QUEUE_DRAIN_SECONDS
    left = squeue()
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = squeue()
    return left


def test_tests_run_on_slurm_and_a_failure_is_reported(
    pytester: pytest.Pytester, slurm: None
) -> None:
    pytester.makepyfile(
        """
import os
import parsl
import pytest
from parsl import python_app

@python_app
def where():
    import os
    return os.environ.get("SLURM_JOB_ID"), os.getpid()

@python_app
def calibrate(sensor):
    raise RuntimeError(f"sensor {sensor} out of range")

@pytest.mark.parsl
def test_passes_on_slurm(parsl_tasks):
    assert "slurm_htex" in parsl.dfk().executors
    job, pid = where().result()
    assert job and pid != os.getpid()  # ran inside a Slurm job
    assert [t.state for t in parsl_tasks] == ["exec_done"]

@pytest.mark.parsl(retries=1)
def test_fails_on_slurm():
    calibrate(3).result()
"""
    )
    result = pytester.runpytest_subprocess(
        "-p",
        "parslflow",
        f"--parslflow-config={SITE_CONFIG}",
        "--parslflow-keep=all",
        "-v",
        timeout=300,
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- parsl: tasks -*",
            "run dir: */runinfo/000 (kept)",
            "1 tasks: 1 failed",
            "task 0  calibrate  failed  tries=2  executor=slurm_htex  executor ids *",
            "  try 0: RuntimeError: sensor 3 out of range *",
            "  try 1: RuntimeError: sensor 3 out of range *",
            "*- parsl: 000/parsl.log (task 0) -*",
            "*- parsl: 000/slurm_htex/interchange.log (executor tasks *) -*",
            "*- parsl: 000/slurm_htex/block-0/*/worker_*.log (executor tasks *) -*",
            "*Received executor task*",
        ]
    )
    # the block of every test was a Slurm job, and was cancelled at the test's end
    folders = {p.resolve() for p in pytester.path.glob("runpytest-*/*/runinfo/000/submit_scripts")}
    submit_scripts = [
        path
        for folder in folders
        for path in folder.glob("parsl.slurm_htex.block-*")
        if path.suffix not in (".stdout", ".stderr")
    ]
    assert len(submit_scripts) == 2, submit_scripts
    assert all("#SBATCH" in script.read_text() for script in submit_scripts)
    assert wait_for_empty_queue() == ""


def test_a_block_that_fails_on_slurm_is_reported_with_its_job_output(
    pytester: pytest.Pytester, slurm: None
) -> None:
    # a worker_init that fails: the job ends at once, no manager connects
    pytester.makepyfile(
        site=f"""
import importlib.util

spec = importlib.util.spec_from_file_location("slurm_site", {str(SITE_CONFIG)!r})
site = importlib.util.module_from_spec(spec)
spec.loader.exec_module(site)

def fresh_config():
    config = site.fresh_config()
    provider = config.executors[0].provider
    provider.worker_init = "echo 'cannot load the site environment' >&2; exit 3"
    return config
"""
    )
    pytester.makepyfile(
        """
import pytest
from parsl import python_app

@python_app
def never_runs():
    return 1

@pytest.mark.parsl(timeout=12)
def test_block_fails():
    never_runs().result()
"""
    )
    result = pytester.runpytest_subprocess(
        "-p", "parslflow", "--parslflow-config=site.py", timeout=300
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- parsl: tasks -*",
            "*task 0  never_runs  launched  executor=slurm_htex*",
            "*- parsl: 000/submit_scripts/*.stderr (*) -*",
            "cannot load the site environment",
        ]
    )
    assert wait_for_empty_queue() == ""


def test_the_example_workflows_run_on_slurm_as_they_are(slurm: None) -> None:
    """The whole examples/ folder through the site config, with no PYTHONPATH exported by
    hand: the plugin gives the site's workers the session's sys.path, so apps defined in
    the test modules and the example packages import on Slurm's workers."""
    examples = SITE_CONFIG.parent.parent
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "parslflow",
            f"--parslflow-config={SITE_CONFIG}",
            "-p",
            "no:cacheprovider",
            "-q",
            str(examples),
        ],
        cwd=examples.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout.splitlines()[-1]
    assert wait_for_empty_queue() == ""
