"""The local HTEX made for tests: no PATH dependence, apps from test code, the executor
matrix, loopback-only sockets, reports, records and shared DFKs on real HTEX."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from conftest import FLAKY_APP

pytestmark = pytest.mark.htex


def test_apps_from_test_module_conftest_and_package_without_venv_on_path(
    pytester: pytest.Pytester, run_parslflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the session's interpreter is invoked by full path; its bin/ is not on PATH
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != venv_bin)
    monkeypatch.setenv("PATH", path)
    pytester.makepyfile(
        **{
            "sitepkg/__init__.py": "",
            "sitepkg/apps.py": """
from parsl import python_app

@python_app
def from_package(x):
    import os
    return x, os.getpid()
""",
        }
    )
    pytester.makeconftest(
        """
from parsl import python_app

@python_app
def from_conftest(x):
    import os
    return x, os.getpid()
"""
    )
    pytester.makepyfile(
        """
import os
import pytest
from parsl import python_app
from conftest import from_conftest
from sitepkg.apps import from_package

@python_app
def from_module(x):
    import os
    return x, os.getpid()

@pytest.mark.parsl(executor="htex")
def test_apps_run_on_workers():
    for app in (from_module, from_conftest, from_package):
        value, pid = app(3).result()
        assert value == 3 and pid != os.getpid()
"""
    )
    run_parslflow("-v").assert_outcomes(passed=1)


def test_executor_matrix_and_loopback_sockets(pytester: pytest.Pytester, run_parslflow) -> None:
    pytester.makepyfile(
        """
import os
import psutil
import pytest
from parsl import python_app

@python_app
def where():
    import os
    return os.getpid()

@pytest.mark.parsl(executor=["thread", "htex"])
def test_runs_in_this_process(parsl_dfk):
    assert where().result() == os.getpid()

@pytest.mark.parsl(executor="htex")
def test_listens_on_loopback_only():
    where().result()
    processes = [psutil.Process(), *psutil.Process().children(recursive=True)]
    listening = [
        c.laddr for p in processes for c in p.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]
    assert listening
    # an IPv6 socket bound to the IPv4 loopback shows as ::ffff:127.0.0.1
    assert {addr.ip for addr in listening} <= {"127.0.0.1", "::ffff:127.0.0.1", "::1"}
"""
    )
    result = run_parslflow("-v")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*::test_runs_in_this_process[[]thread[]] PASSED*",
            "*::test_runs_in_this_process[[]htex[]] FAILED*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*_ test_runs_in_this_process[[]htex[]] _*",
            "*- parsl: tasks -*",
            "run dir: */test_runs_in_this_process_htex*/runinfo/000 (kept)",
            "1 tasks: 1 exec_done",
        ]
    )


def test_htex_failure_reports(pytester: pytest.Pytester, run_parslflow) -> None:
    pytester.makepyfile(
        """
import pytest
from parsl import python_app

@python_app
def boom(i):
    raise ValueError(f"boom {i}")

@python_app
def slow(i):
    return i

@pytest.mark.parsl(executor="htex", retries=1)
def test_app_raises_on_workers():
    boom(3).result()

@pytest.mark.parsl(executor="htex")
def test_worker_killed(parsl_faults):
    parsl_faults.lose_worker(slow, on_try=1)(1).result()
"""
    )
    result = run_parslflow("--parslflow-log-lines=60")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "task 0  boom  failed  tries=2  executor=htex_local  executor ids *, *",
            "  try 0: ValueError: boom 3   (test_htex_failure_reports.py:6 in boom)",
            "  try 1: ValueError: boom 3   (test_htex_failure_reports.py:6 in boom)",
            "*- parsl: 000/parsl.log (task 0) -*",
            "*Parsl task 0 try 1 launched on executor htex_local with executor id *",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*- parsl: 000/htex_local/interchange.log (executor tasks *, *) -*",
            "*- parsl: 000/htex_local/block-0/*/manager.log (executor tasks *, *) -*",
            "*- parsl: 000/htex_local/block-0/*/worker_*.log (executor tasks *, *) -*",
            "*Received executor task *",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "task 0  slow  failed  tries=1  executor=htex_local  executor ids *",
            "  try 0: WorkerLost: Task failure due to loss of worker*",
            "*- parsl: 000/htex_local/block-0/*/manager.log (executor tasks *) -*",
        ]
    )


def test_records_restart_and_monitoring_on_htex(pytester: pytest.Pytester, run_parslflow) -> None:
    pytester.makepyfile(
        FLAKY_APP
        + """
import pytest
from parsl import python_app

@python_app(cache=True)
def square(side, x):
    with open(side, "a") as f:
        f.write(f"{x}\\n")
    return x * x

@pytest.mark.parsl(executor="htex", retries=2)
def test_retries_recorded(tmp_path, parsl_tasks):
    assert flaky(str(tmp_path / "n"), 2).result() == 3
    (task,) = parsl_tasks
    assert task.tries == 3 and len(task.executor_ids) == 3
    assert [str(e) for e in task.exceptions] == ["transient failure 1", "transient failure 2"]

@pytest.mark.parsl(executor="htex", checkpoint="task_exit")
def test_restart(tmp_path, parsl_restart, parsl_tasks):
    side = tmp_path / "side"
    assert square(str(side), 4).result() == 16
    parsl_restart()
    assert square(str(side), 4).result() == 16
    assert side.read_text().splitlines() == ["4"]
    assert [t.state for t in parsl_tasks] == ["exec_done", "memo_done"]

@pytest.mark.parsl(executor="htex", monitoring=True)
def test_monitoring(tmp_path, parsl_monitoring):
    for x in range(3):
        square(str(tmp_path / "side"), x)
    assert [r["task_status_name"] for r in parsl_monitoring.tasks()] == ["exec_done"] * 3

def test_nothing_left_running():
    import psutil
    from pytest_parslflow.htex.warm import warm_parent_pids
    # the session's warm parent, from which each test's HTEX is forked, is its own
    children = [
        p for p in psutil.Process().children(recursive=True)
        if "resource_tracker" not in " ".join(p.cmdline()) and p.pid not in warm_parent_pids()
    ]
    assert children == []
"""
    )
    run_parslflow("-v").assert_outcomes(passed=4)


def test_shared_htex_dfk_is_replaced_when_broken(pytester: pytest.Pytester, run_parslflow) -> None:
    pytester.makepyfile(
        """
import os
import pytest
from parsl import python_app

@python_app
def pid():
    import os
    return os.getpid()

shared = pytest.mark.parsl(executor="htex", scope="session")
seen = []

@shared
@pytest.mark.parametrize("i", range(3))
def test_one_dfk(i, parsl_dfk):
    seen.append(parsl_dfk)
    assert pid().result() != os.getpid()
    assert len({id(d) for d in seen}) == 1

@shared
def test_breaks_it(parsl_dfk):
    parsl_dfk.executors["htex_local"].interchange_proc.kill()
    parsl_dfk.executors["htex_local"].interchange_proc.wait()

@shared
def test_gets_a_new_one(parsl_dfk):
    assert parsl_dfk is not seen[0]
    assert pid().result() != os.getpid()
"""
    )
    result = run_parslflow("-v", "-p", "no:randomly")
    result.assert_outcomes(passed=5, warnings=1)
    result.stdout.fnmatch_lines(
        [
            # found by the check before the test, or by the executor's watchdog before it
            "*session-scoped DataFlowKernel*was broken (*the interchange of executor htex_local exited*replaced for*test_gets_a_new_one*"
        ]
    )


def test_apps_from_test_modules_under_importlib_import_mode(pytester: pytest.Pytester) -> None:
    # importlib mode leaves sys.path alone and names modules from the rootdir; the
    # console script (unlike `python -m pytest`) does not put the rootdir on sys.path
    pytester.makepyfile(
        **{
            "suite/test_importlib.py": """
import os
import pytest
from parsl import python_app

@python_app
def where():
    import os
    return os.getpid()

@pytest.mark.parsl(executor="htex")
def test_app_on_worker():
    assert where().result() != os.getpid()
"""
        }
    )
    console_script = Path(sys.executable).parent / "pytest"
    result = pytester.run(
        str(console_script), "-p", "parslflow", "--import-mode=importlib", "suite"
    )
    result.assert_outcomes(passed=1)
