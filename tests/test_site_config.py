"""``--parslflow-config`` in full: a user's site config file is used as written (executors,
providers), with the test's own run directory and the marks' explicit settings layered
on top; ``fresh_config()`` is called for every load; reports and task records work the
same as with the built-in configs."""

from __future__ import annotations

import pytest

# A site config as a user writes one for a cluster, here on a LocalProvider. The HTEX
# scripts are run by full path with this interpreter: the venv's bin/ need not be on PATH.
SITE_HTEX = """
import sys
from pathlib import Path

import parsl.executors.high_throughput as htex_package
from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.executors.high_throughput.executor import DEFAULT_LAUNCH_CMD
from parsl.launchers import SingleNodeLauncher
from parsl.providers import LocalProvider

SCRIPTS = Path(htex_package.__file__).parent
CALLS = Path(__file__).with_name("fresh_config_calls.txt")


def fresh_config():
    with CALLS.open("a") as calls:
        calls.write("called\\n")
    pool = f"{sys.executable} {SCRIPTS / 'process_worker_pool.py'}"
    return Config(
        executors=[
            HighThroughputExecutor(
                label="site_htex",
                address="127.0.0.1",
                max_workers_per_node=1,
                launch_cmd=DEFAULT_LAUNCH_CMD.replace("process_worker_pool.py", pool, 1),
                interchange_launch_cmd=[sys.executable, str(SCRIPTS / "interchange.py")],
                # no PYTHONPATH for the workers: the plugin gives them the session's
                provider=LocalProvider(
                    init_blocks=1,
                    max_blocks=1,
                    launcher=SingleNodeLauncher(),
                ),
            )
        ],
        retries=3,
        strategy_period=0.2,
    )
"""

SITE_THREADS = """
from pathlib import Path

from parsl.config import Config
from parsl.executors import ThreadPoolExecutor

CALLS = Path(__file__).with_name("fresh_config_calls.txt")


def fresh_config():
    with CALLS.open("a") as calls:
        calls.write("called\\n")
    return Config(executors=[ThreadPoolExecutor(label="site_threads", max_threads=3)], retries=2)
"""


def calls(pytester: pytest.Pytester) -> int:
    path = pytester.path / "fresh_config_calls.txt"
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.htex
def test_site_htex_as_written_with_report_retries_and_own_run_dirs(
    pytester: pytest.Pytester, run_parslflow
) -> None:
    pytester.makepyfile(site=SITE_HTEX)
    pytester.makepyfile(
        """
import pathlib
import parsl
import pytest
from parsl import python_app
from parsl.providers import LocalProvider

@python_app
def add_one(x):
    return x + 1

@python_app
def boom(x):
    raise ValueError(f"boom {x}")

def note(parsl_run_dir):
    with open(pathlib.Path(__file__).with_name("run_dirs.txt"), "a") as f:
        f.write(f"{parsl_run_dir}\\n")

@pytest.mark.parsl(workers=4)
def test_as_written(parsl_run_dir, parsl_tasks):
    note(parsl_run_dir)
    dfk = parsl.dfk()
    executor = dfk.executors["site_htex"]
    # executors and providers stay as written: the marker's workers=4 is for the
    # built-in configs; the config's own retries stay where no mark sets them
    assert executor.max_workers_per_node == 1
    assert type(executor.provider) is LocalProvider
    assert dfk.config.retries == 3
    assert dfk.run_dir == str(parsl_run_dir / "000")
    assert add_one(1).result() == 2
    assert [(t.app, t.state, t.executor) for t in parsl_tasks] == [("add_one", "exec_done", "site_htex")]

@pytest.mark.parsl(retries=1)
def test_fails(parsl_run_dir):
    note(parsl_run_dir)
    assert parsl.dfk().config.retries == 1
    boom(7).result()
"""
    )
    result = run_parslflow("--parslflow-config", "site.py", "--parslflow-keep", "all")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- parsl: tasks -*",
            "run dir: */runinfo/000 (kept)",
            "1 tasks: 1 failed",
            "task 0  boom  failed  tries=2  executor=site_htex  executor ids 1, 2",
            "  try 0: ValueError: boom 7 *",
            "  try 1: ValueError: boom 7 *",
            "*- parsl: 000/parsl.log (task 0) -*",
            "*Task 0 failed after 1 retry attempts*",
            "*- parsl: 000/site_htex/interchange.log (executor tasks 1, 2) -*",
            "*- parsl: 000/site_htex/block-0/*/worker_0.log (executor tasks 1, 2) -*",
            "*Received executor task 2*",
        ]
    )
    assert calls(pytester) == 2  # one Config per test
    run_dirs = (pytester.path / "run_dirs.txt").read_text().splitlines()
    assert len(set(run_dirs)) == 2
    # inside the inner session's basetemp, which pytester puts in its own folder
    assert all(d.startswith(f"{pytester.path}/runpytest-") for d in run_dirs), run_dirs


def test_fresh_config_per_load_restart_and_layered_memo_settings(
    pytester: pytest.Pytester, run_parslflow
) -> None:
    pytester.makepyfile(site=SITE_THREADS)
    pytester.makepyfile(
        """
import parsl
import pytest
from parsl import python_app

@python_app(cache=True)
def square(log, x):
    with open(log, "a") as f:
        f.write(f"{x}\\n")
    return x * x

def handler(exception, task_record):
    return 1.0

@pytest.mark.parsl(checkpoint="task_exit")
def test_restart_reuses_checkpoints(tmp_path, parsl_restart, parsl_tasks):
    log = tmp_path / "ran.txt"
    assert [square(str(log), x).result() for x in range(3)] == [0, 1, 4]
    first = parsl.dfk()
    second = parsl_restart()
    assert second is not first and "site_threads" in second.executors
    assert [square(str(log), x).result() for x in range(3)] == [0, 1, 4]
    assert log.read_text().splitlines() == ["0", "1", "2"]
    assert [t.state for t in parsl_tasks if t.run == 1] == ["memo_done"] * 3

@pytest.mark.parsl(app_cache=False, retry_handler=handler)
def test_cache_off_and_retry_handler(tmp_path):
    log = tmp_path / "ran.txt"
    assert square(str(log), 2).result() == 4
    assert square(str(log), 2).result() == 4
    assert log.read_text().splitlines() == ["2", "2"]  # no memo: the body ran twice
    config = parsl.dfk().config
    assert config.retry_handler is handler and config.retries == 2
"""
    )
    run_parslflow("--parslflow-config", "site.py", "-v").assert_outcomes(passed=2)
    assert calls(pytester) == 3  # two loads for the restarting test, one for the other


def test_ini_parslflow_config_is_relative_to_the_ini_file(
    pytester: pytest.Pytester, run_parslflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeini("[pytest]\nparslflow_config = conf/site.py\n")
    pytester.makepyfile(**{"conf/site": SITE_THREADS})
    pytester.makepyfile(
        **{
            "sub/test_ini": """
import parsl
import pytest

@pytest.mark.parsl
def test_uses_the_site_config():
    assert "site_threads" in parsl.dfk().executors
"""
        }
    )
    monkeypatch.chdir(pytester.path / "sub")
    run_parslflow().assert_outcomes(passed=1)


def test_make_config_hook_comes_before_parsl_config(
    pytester: pytest.Pytester, run_parslflow
) -> None:
    pytester.makepyfile(site=SITE_THREADS)
    pytester.makepyfile(
        **{
            "cluster/conftest": """
import pytest
from parsl.config import Config
from parsl.executors import ThreadPoolExecutor

@pytest.hookimpl(optionalhook=True)
def pytest_parslflow_make_config(request, settings):
    return Config(executors=[ThreadPoolExecutor(label="from_hook")])
""",
            "cluster/test_cluster": """
import parsl
import pytest

@pytest.mark.parsl
def test_hook():
    assert "from_hook" in parsl.dfk().executors
""",
            "local/test_local": """
import parsl
import pytest

@pytest.mark.parsl
def test_site():
    assert "site_threads" in parsl.dfk().executors
""",
        }
    )
    run_parslflow("--parslflow-config", "site.py").assert_outcomes(passed=2)
    assert calls(pytester) == 1  # only the test without the hook used the file


def test_site_config_under_xdist_gives_every_test_its_own_run(
    pytester: pytest.Pytester, run_parslflow
) -> None:
    pytester.makepyfile(site=SITE_THREADS)
    pytester.makepyfile(
        """
import pathlib
import parsl
import pytest

@pytest.mark.parsl
@pytest.mark.parametrize("i", range(4))
def test_runs(i, parsl_run_dir):
    assert parsl.dfk().run_dir == str(parsl_run_dir / "000")
    with open(pathlib.Path(__file__).with_name("run_dirs.txt"), "a") as f:
        f.write(f"{parsl_run_dir}\\n")
"""
    )
    run_parslflow("--parslflow-config", "site.py", "-n", "2").assert_outcomes(passed=4)
    assert len(set((pytester.path / "run_dirs.txt").read_text().splitlines())) == 4
    assert calls(pytester) == 4


def test_site_workers_get_the_session_path_unless_the_site_sets_it(tmp_path) -> None:
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor, ThreadPoolExecutor
    from parsl.providers import LocalProvider

    from pytest_parslflow.config import share_session_path

    def htex(label: str, worker_init: str) -> HighThroughputExecutor:
        return HighThroughputExecutor(label=label, provider=LocalProvider(worker_init=worker_init))

    config = Config(
        executors=[
            htex("bare", ""),
            htex("conda", "conda activate env"),
            htex("own", "export PYTHONPATH=/site/lib"),
            htex("opted_out", 'export PYTHONPATH="$PYTHONPATH"'),
            ThreadPoolExecutor(label="threads"),
        ]
    )
    share_session_path(config, tmp_path)
    inits = {e.label: e.provider.worker_init for e in config.executors if e.label != "threads"}
    assert inits["bare"].startswith("export PYTHONPATH=")
    assert str(tmp_path) in inits["bare"] and '"${PYTHONPATH:+:$PYTHONPATH}"' in inits["bare"]
    assert inits["conda"].endswith("\nconda activate env")
    assert inits["conda"].splitlines()[0] == inits["bare"]
    assert inits["own"] == "export PYTHONPATH=/site/lib"
    assert inits["opted_out"] == 'export PYTHONPATH="$PYTHONPATH"'


@pytest.mark.htex
def test_a_site_executor_whose_scripts_are_not_on_path_says_why(
    pytester: pytest.Pytester, run_parslflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parsl's default HTEX runs ``interchange.py`` from PATH: with the venv not activated
    its bin/ is not there, and Parsl's FileNotFoundError alone does not say so."""
    pytester.makepyfile(
        site="""
from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.providers import LocalProvider

def fresh_config():
    return Config(executors=[HighThroughputExecutor(label="site", address="127.0.0.1",
                                                    provider=LocalProvider(init_blocks=0))])
""",
        test_site="""
import pytest

@pytest.mark.parsl
def test_needs_the_site():
    pass
""",
    )
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    result = run_parslflow("--parslflow-config=site.py", "-p", "no:randomly")
    assert result.parseoutcomes().get("errors", 0) >= 1, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*test_needs_the_site: the executor cannot start: 'interchange.py' is not on PATH "
            "(*No such file or directory*); the session's venv (*) is probably not activated, "
            "so its bin/ is not on PATH. Activate it, or give the executor the full path*"
        ]
    )
