"""Nothing leaks, nothing hangs: the leak guard, timeouts, broken blocks, a dead
interchange, and a chaos session under xdist that leaves nothing behind."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

SLOW_APP = """
import pytest
from parsl import python_app

@python_app
def slow(seconds):
    import time
    time.sleep(seconds)
    return seconds
"""


# blocks that cannot start, by test name: a failing worker_init, a missing worker command
BROKEN_BLOCKS = """
import pytest
from pytest_parslflow.config import builtin_config

BREAKS = {
    "test_bad_worker_init": ("worker_init", "echo 'module load cuda: no such module' >&2; exit 3"),
    "test_missing_worker_command": ("launch_cmd", "no-such-worker-command --flag"),
    "test_broken_block": ("worker_init", "echo 'no scratch space' >&2; exit 1"),
}

@pytest.hookimpl(optionalhook=True)
def pytest_parslflow_make_config(request, settings):
    if request.node.name not in BREAKS:
        return None
    config = builtin_config(settings)
    executor = config.executors[0]
    name, value = BREAKS[request.node.name]
    setattr(executor.provider if name == "worker_init" else executor, name, value)
    return config
"""


def _marked_processes(mark: str) -> list[int]:
    """Processes whose environment carries ``CHAOS_MARK=mark``."""
    wanted = f"CHAOS_MARK={mark}\0".encode()
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                environ = Path(f"/proc/{name}/environ").read_bytes()
                stat = Path(f"/proc/{name}/stat").read_bytes()
            except OSError:
                continue
            if wanted in environ and stat.split(b") ")[-1][:1] != b"Z":
                found.append(int(name))
    return found


@pytest.mark.htex
def test_leak_guard_names_and_ends_what_a_test_left(
    pytester: pytest.Pytester, run_parslflow
) -> None:
    pytester.makepyfile(
        SLOW_APP
        + """
import parsl
from pytest_parslflow.config import builtin_config
from pytest_parslflow.settings import ParslSettings

def test_forgets_an_htex(parsl_run_dir):  # opts in: the test is managed
    config = builtin_config(ParslSettings(executor="htex"))
    config.run_dir = str(parsl_run_dir)
    parsl.load(config)
    parsl.clear()  # no longer the loaded DFK, and never cleaned up

@pytest.mark.parsl
def test_leaves_a_thread_app_running():
    slow(3)

def test_nothing_of_them_remains():
    import psutil
    from pytest_parslflow.htex.warm import warm_parent_pids
    # the session's HTEX warm parent is the session's own
    children = [
        p for p in psutil.Process().children(recursive=True)
        if p.status() != psutil.STATUS_ZOMBIE
        and "resource_tracker" not in " ".join(p.cmdline())
        and p.pid not in warm_parent_pids()
    ]
    assert children == []
"""
    )
    result = run_parslflow("-v")
    result.assert_outcomes(passed=3, errors=2)
    # the full message (the short summary repeats it, cut)
    line = max(
        (line for line in result.stdout.lines if "test_forgets_an_htex leaked Parsl" in line),
        key=len,
    )
    for part in (
        "thread 'JobStatusPoller-",
        "(parsl: HTEX interchange), listening on ",
        "_htex_pool.py",
        "): ended",
        " in the test process",
    ):
        assert part in line, (part, line)
    result.stdout.fnmatch_lines(
        [
            "*test_leaves_a_thread_app_running leaked Parsl resources: thread 'ThreadPoolExecutor-threads_0'*"
        ]
    )


@pytest.mark.parametrize("mode", ["warn", "off"])
def test_leak_modes(pytester: pytest.Pytester, run_parslflow, mode: str) -> None:
    pytester.makepyfile(
        SLOW_APP
        + """
@pytest.mark.parsl
def test_leaves_a_thread_app_running():
    slow(2)
"""
    )
    result = run_parslflow(f"--parslflow-leaks={mode}")
    if mode == "warn":
        result.assert_outcomes(passed=1, warnings=1)
        result.stdout.fnmatch_lines(["*Warning: *leaked Parsl resources: thread*"])
    else:
        result.assert_outcomes(passed=1)
        assert "leaked" not in result.stdout.str()


@pytest.mark.htex
def test_timeouts_report_tasks_in_flight_and_the_next_test_is_clean(
    pytester: pytest.Pytester, run_parslflow
) -> None:
    pytester.makepyfile(
        SLOW_APP
        + """
@pytest.mark.parsl(executor="htex", timeout=3)
def test_htex_timeout():
    slow(60).result()

@pytest.mark.parsl(executor="htex")
def test_next_runs_on_a_clean_slate():
    assert slow(0).result() == 0
"""
    )
    result = run_parslflow("-v")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*Failed: Timeout (>3.0s) from pytest-timeout*",
            "*- parsl: tasks -*",
            "1 tasks in flight:",
            "task 0  slow  launched  executor=htex_local  executor ids *  for * s",
        ]
    )
    result.stdout.fnmatch_lines(
        ["*worker_*.log (executor tasks *) -*", "*Received executor task *"]
    )


@pytest.mark.htex
def test_broken_blocks_and_a_dead_interchange_fail_fast_with_their_cause(
    pytester: pytest.Pytester, run_parslflow
) -> None:
    pytester.makeconftest(BROKEN_BLOCKS)
    pytester.makepyfile(
        SLOW_APP
        + """
@pytest.mark.parsl(executor="htex", timeout=60)
def test_bad_worker_init():
    slow(0).result()

@pytest.mark.parsl(executor="htex", timeout=60)
def test_missing_worker_command():
    slow(0).result()

@pytest.mark.parsl(executor="htex", timeout=60)
def test_interchange_dies(parsl_dfk):
    future = slow(30)
    import time
    time.sleep(1)
    parsl_dfk.executors["htex_local"].interchange_proc.kill()
    future.result()
"""
    )
    result = run_parslflow("-v", "--durations=0")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(
        [
            "*- parsl: 000/submit_scripts/*.sh.err (exit code 3) -*",
            "module load cuda: no such module",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*- parsl: 000/submit_scripts/*.sh.err (exit code 127) -*",
            "*no-such-worker-command: command not found",
        ]
    )
    result.stdout.fnmatch_lines(
        ["*BadStateException*the interchange of executor htex_local exited with code -9*"]
    )
    assert "Timeout" not in result.stdout.str()


CHAOS = """
import os
import time
import parsl
import pytest
from parsl import python_app
from parsl.config import Config
from parsl.executors import ThreadPoolExecutor

@python_app
def work(i):
    return i

@python_app
def boom(i):
    raise ValueError(f"boom {i}")

@python_app
def slow(seconds):
    import time
    time.sleep(seconds)
    return seconds

@pytest.mark.parsl
@pytest.mark.parametrize("i", range(18))
def test_thread_passes(i):
    assert work(i).result() == i

@pytest.mark.parsl(executor="htex")
@pytest.mark.parametrize("i", range(2))
def test_htex_passes(i):
    assert work(i).result() == i

@pytest.mark.parsl(retries=1)
@pytest.mark.parametrize("i", range(4))
def test_thread_fails(i):
    boom(i).result()

@pytest.mark.parsl(executor="htex", retries=1)
def test_killed_worker_is_retried(parsl_faults):
    assert parsl_faults.lose_worker(work, on_try=1)(7).result() == 7

@pytest.mark.parsl(executor="htex")
def test_killed_worker_fails(parsl_faults):
    parsl_faults.lose_worker(work, on_try=1)(8).result()

@pytest.mark.parsl(executor="htex", timeout=3)
def test_htex_times_out():
    slow(60).result()

@pytest.mark.parsl(timeout=2)
def test_thread_times_out_and_leaks_its_thread():
    slow(4).result()

@pytest.mark.parsl(executor="htex", timeout=60)
def test_broken_block():
    work(0).result()

def test_forgets_its_dfk(parsl_run_dir):
    parsl.load(Config(executors=[ThreadPoolExecutor()], run_dir=str(parsl_run_dir)))

@pytest.mark.flaky(reruns=2)
@pytest.mark.parsl
def test_flaky_then_passes(parsl_run_dir):
    counter = parsl_run_dir.parent.parent / "flaky_attempts"
    attempts = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(attempts))
    assert work(attempts).result() == 3

@pytest.mark.parametrize("i", range(15))
def test_plain(i):
    assert i >= 0
"""

# a module-scoped DFK, and a helper process whose command line says "parsl": not Parsl's,
# so never ended by the plugin
CHAOS_SHARED = """
import subprocess
import sys
import pytest
from parsl import python_app

@python_app
def work(i):
    return i

@pytest.fixture(scope="module")
def helper():
    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "parsl"])
    yield server
    alive = server.poll() is None
    server.kill()
    server.wait()
    assert alive, "the plugin ended a process it did not start"

@pytest.mark.parsl(executor="htex", scope="module")
@pytest.mark.parametrize("i", range(2))
def test_htex_shared_passes(i, helper):
    assert work(i).result() == i

def test_a_helper_that_says_parsl(helper):
    assert helper.poll() is None

@pytest.mark.parsl(executor="htex", scope="module")
@pytest.mark.parametrize("i", range(2))
def test_htex_shared_still_passes(i, helper):
    assert work(i).result() == i
    assert helper.poll() is None
"""


@pytest.mark.htex
def test_chaos_session_under_xdist_leaves_nothing_behind(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    mark = uuid.uuid4().hex
    monkeypatch.setenv("CHAOS_MARK", mark)
    # the session's own temporary directory, whose entries are counted after it
    system_tmp = pytester.path.parent / f"systmp-{mark[:8]}"
    system_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(system_tmp))
    pytester.makeconftest(BROKEN_BLOCKS)
    pytester.makepyfile(test_chaos=CHAOS, test_chaos_shared=CHAOS_SHARED)
    result = pytester.runpytest_subprocess(
        "-p",
        "parslflow",
        "-p",
        "rerunfailures",
        "-p",
        "xdist",
        "-n",
        "2",
        "-p",
        "no:randomly",
        f"--basetemp={pytester.path / 'basetemp'}",
    )
    outcomes = result.parseoutcomes()
    # 18 + 4 + 2 thread/HTEX passes, 1 retried kill, 1 rerun pass, 15 plain, 1 helper,
    # and the test that forgets its DFK passes its call (it errors in teardown)
    assert outcomes.get("passed") == 43, outcomes
    # 4 app failures, 1 kill without retries, 2 timeouts, 1 broken block
    assert outcomes.get("failed") == 8, outcomes
    # the thread app left running by a timeout, the forgotten DFK
    assert outcomes.get("errors", outcomes.get("error")) == 2, outcomes
    assert outcomes.get("rerun") == 2, outcomes
    assert sum(outcomes.get(k, 0) for k in ("passed", "failed")) == 51
    result.stdout.fnmatch_lines(["*- parsl summary -*", "* tests used Parsl: *"])
    assert "helper_that_says_parsl leaked" not in result.stdout.str()
    assert _marked_processes(mark) == []
    assert os.listdir(system_tmp) == []
