"""The warm start of each test's own HTEX: its interchange and worker pool are forked from
one warm parent per session, each with exactly the environment, working directory and
process group its launcher gave it; the warm parent is the session's own, ends with it,
and a dead one costs one cold start with a warning."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.htex

# Each test reports where its HTEX processes came from, into a JSON file per test.
WHERE = """
import json
import os
import sys

import psutil
import pytest
from parsl import python_app

from pytest_parslflow.htex.warm import warm_parent_pids


@python_app
def where():
    import os
    import sys

    return {
        "pid": os.getpid(),
        "pool": os.getppid(),
        "pgid": os.getpgid(0),
        "cwd": os.getcwd(),
        "executable": sys.executable,
        "path": sys.path,
    }


def _environ(pid):
    return psutil.Process(pid).environ()


def record(name, dfk):
    executor = dfk.executors["htex_local"]
    info = where().result()
    pool = psutil.Process(info["pool"])
    launchers = [
        p for p in psutil.process_iter(["cmdline"])
        if "_warm_launch.py" in " ".join(p.info["cmdline"] or []) and "pool" in p.info["cmdline"]
        and os.getpgid(p.pid) == info["pgid"]
    ]
    interchange = [
        p for p in psutil.Process(pool.ppid()).children()
        if p.pid != pool.pid and "interchange" in " ".join(p.cmdline())
    ]
    info.update(
        warm=sorted(warm_parent_pids()),
        pool_parent=pool.ppid(),
        block_groups=sorted(executor.provider._groups.values()),
        pool_environ_matches=[_environ(pool.pid) == _environ(p.pid) for p in launchers],
        interchange_environ_matches=[
            _environ(p.pid) == _environ(executor.interchange_proc.pid) for p in interchange
        ],
        worker_port=executor.worker_port,
        run_dir=dfk.run_dir,
        session_path=sys.path,
    )
    with open(os.path.join(os.environ["WHERE_DIR"], name + ".json"), "w") as f:
        json.dump(info, f)
"""


def _read(folder: Path, name: str) -> dict:  # type: ignore[type-arg]
    import json

    return json.loads((folder / f"{name}.json").read_text())


def test_each_test_forks_its_own_htex_from_one_warm_parent(
    pytester: pytest.Pytester, run_parslflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WHERE_DIR", str(pytester.path))
    pytester.makepyfile(
        WHERE
        + """
@pytest.mark.parsl(executor="htex")
@pytest.mark.parametrize("i", range(3))
def test_htex(i, parsl_dfk):
    record(f"t{i}", parsl_dfk)
"""
    )
    run_parslflow("-p", "no:randomly").assert_outcomes(passed=3)
    runs = [_read(pytester.path, f"t{i}") for i in range(3)]
    warm = {tuple(run["warm"]) for run in runs}
    assert len(warm) == 1 and len(next(iter(warm))) == 1, warm
    (warm_pid,) = next(iter(warm))
    for run in runs:
        # the pool is forked from the warm parent, and sits in its block's process group
        assert run["pool_parent"] == warm_pid
        assert run["block_groups"] == [run["pgid"]]
        # with the environment of the launcher that stands in for it, exactly
        assert run["pool_environ_matches"] == [True]
        assert run["executable"] == runs[0]["executable"]
        assert run["cwd"] == str(pytester.path)
        assert {p for p in run["session_path"] if p} <= set(run["path"])
    # the first test's interchange starts the cold way while the warm parent imports
    # (its pool waits for it); later ones are forked too
    assert [run["interchange_environ_matches"] for run in runs] == [[], [True], [True]]
    # each test its own interchange port, run directory, pool and worker
    assert len({run["worker_port"] for run in runs}) == 3
    assert len({run["run_dir"] for run in runs}) == 3
    assert len({run["pool_parent"] for run in runs}) == 1
    assert len({run["pid"] for run in runs}) == 3
    assert not psutil.pid_exists(warm_pid), "the warm parent outlived its session"


def test_cold_switch(
    pytester: pytest.Pytester, run_parslflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WHERE_DIR", str(pytester.path))
    monkeypatch.setenv("PARSLFLOW_WARM_START", "0")
    pytester.makepyfile(
        WHERE
        + """
@pytest.mark.parsl(executor="htex")
def test_htex(parsl_dfk):
    record("cold", parsl_dfk)
"""
    )
    run_parslflow().assert_outcomes(passed=1)
    run = _read(pytester.path, "cold")
    assert run["warm"] == []
    # the pool is its block's own process, as Parsl starts it
    assert run["block_groups"] == [run["pgid"]]
    assert run["pool_environ_matches"] == []


def test_a_bad_switch_value_is_one_clear_error(
    pytester: pytest.Pytester, run_parslflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARSLFLOW_WARM_START", "sometimes")
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = run_parslflow()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*PARSLFLOW_WARM_START='sometimes': use 1 (warm start, the default) or 0 *"]
    )
    assert "Traceback" not in result.stderr.str()


def test_a_dead_warm_parent_costs_one_cold_start_and_a_warning(
    pytester: pytest.Pytester, run_parslflow
) -> None:
    pytester.makepyfile(
        """
import os
import signal
import time

import psutil
import pytest
from parsl import python_app

from pytest_parslflow.htex.warm import warm_parent_pids

@python_app
def pool():
    import os
    return os.getppid()

seen = []

@pytest.mark.parsl(executor="htex")
def test_first():
    (warm,) = warm_parent_pids()
    seen.append(warm)
    assert psutil.Process(pool().result()).ppid() == warm

def test_the_warm_parent_dies():
    os.kill(seen[0], signal.SIGKILL)
    # not reaped here: the session finds it dead as it is
    while psutil.Process(seen[0]).status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.01)

@pytest.mark.parsl(executor="htex")
def test_starts_cold():
    assert warm_parent_pids() == frozenset()
    assert psutil.Process(pool().result()).ppid() != seen[0]

@pytest.mark.parsl(executor="htex")
def test_starts_warm_again():
    (warm,) = warm_parent_pids()
    assert warm != seen[0]
    assert psutil.Process(pool().result()).ppid() == warm
"""
    )
    result = run_parslflow("-p", "no:randomly")
    result.assert_outcomes(passed=4, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "*test_starts_cold*",
            "*WarmStartWarning: the warm parent of this session's HTEX (pid *) ended (it "
            "exited with code -9); this test's HTEX starts the cold way, and the next one "
            "starts a new warm parent",
        ]
    )


def _pid_from(path: Path) -> int:
    return int(path.read_text())


WARM_PID = """
import os
import pytest
from parsl import python_app
from pytest_parslflow.htex.warm import warm_parent_pids

@python_app
def one():
    return 1

@pytest.mark.parsl(executor="htex")
def test_htex():
    assert one().result() == 1
    (pid,) = warm_parent_pids()
    with open(os.environ["WARM_PID_FILE"], "w") as f:
        f.write(str(pid))
"""


@pytest.mark.parametrize("how", ["interrupted", "killed"])
def test_the_warm_parent_ends_with_its_session(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    pid_file = pytester.path / "warm.pid"
    monkeypatch.setenv("WARM_PID_FILE", str(pid_file))
    if how == "interrupted":
        ending = "def test_zz_interrupt():\n    raise KeyboardInterrupt\n"
    else:
        ending = "def test_zz_killed():\n    os.kill(os.getpid(), 9)\n"
    pytester.makepyfile(WARM_PID + "\n" + ending)
    result = pytester.runpytest_subprocess("-p", "parslflow", "-p", "no:randomly")
    if how == "interrupted":
        assert result.ret == pytest.ExitCode.INTERRUPTED
        # ended by the session, before it exited
        assert not psutil.pid_exists(_pid_from(pid_file))
    else:
        assert result.ret == -signal.SIGKILL
        # ended by itself, once the session's process was gone
        try:
            psutil.Process(_pid_from(pid_file)).wait(60)
        except psutil.NoSuchProcess:
            pass


def test_the_leak_guard_spares_the_warm_parent_not_what_it_forked(
    pytester: pytest.Pytester, run_parslflow
) -> None:
    pytester.makepyfile(
        """
import parsl
import psutil
import pytest
from pytest_parslflow.config import builtin_config
from pytest_parslflow.htex.warm import warm_parent_pids
from pytest_parslflow.settings import ParslSettings

seen = []

@pytest.mark.parsl(executor="htex")
def test_starts_it():
    seen.extend(warm_parent_pids())

def test_forgets_an_htex(parsl_run_dir):  # opts in: its leaks are checked
    config = builtin_config(ParslSettings(executor="htex"))
    config.run_dir = str(parsl_run_dir)
    parsl.load(config)
    parsl.clear()  # no longer the loaded DFK, and never cleaned up

def test_only_the_warm_parent_remains():
    assert warm_parent_pids() == frozenset(seen)
    children = [
        p.pid for p in psutil.Process().children(recursive=True)
        if p.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(p.cmdline())
    ]
    assert children == seen
"""
    )
    result = run_parslflow("-p", "no:randomly", "-v")
    result.assert_outcomes(passed=3, errors=1)
    line = max(
        (line for line in result.stdout.lines if "test_forgets_an_htex leaked Parsl" in line),
        key=len,
    )
    for part in ("(parsl: HTEX interchange)", "_htex_pool.py", "): ended"):
        assert part in line, (part, line)
    assert "_warm_parent.py" not in line


def test_a_pool_that_fails_in_the_warm_parent_reports_its_exit_code(
    pytester: pytest.Pytester, run_parslflow
) -> None:
    # the forked pool exits at once (its port file never comes): its exit code reaches
    # the block's exit code file through the launcher that stands in for it
    pytester.makeconftest(
        """
import pytest
from pytest_parslflow.config import builtin_config

@pytest.hookimpl(optionalhook=True)
def pytest_parslflow_make_config(request, settings):
    config = builtin_config(settings)
    executor = config.executors[0]
    executor.launch_cmd = executor.launch_cmd.replace("{logdir}/interchange.port", "/")
    return config
"""
    )
    pytester.makepyfile(
        """
import pytest
from parsl import python_app

@python_app
def one():
    return 1

@pytest.mark.parsl(executor="htex", timeout=60)
def test_broken():
    one().result()
"""
    )
    result = run_parslflow()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*- parsl: 000/submit_scripts/*.sh.err (exit code 1) -*", "*IsADirectoryError*"]
    )
    assert "Timeout" not in result.stdout.str()
    assert os.environ.get("PARSLFLOW_WARM_START", "1") != "0"


def test_the_warm_parent_will_not_fork_with_a_thread_running(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # what it imports must leave it with one thread and no ZMQ context: else it refuses
    # to serve, and the session starts every HTEX the cold way
    import sys

    import pytest_parslflow.htex

    pytester.makepyfile(
        threader="""
import threading
import time

threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
"""
    )
    script = Path(pytest_parslflow.htex.__file__).parent / "_warm_parent.py"
    monkeypatch.setenv("PYTHONPATH", str(pytester.path))
    result = pytester.run(sys.executable, str(script), "parslflow-test", "--preload=threader")
    assert result.ret == 2
    result.stderr.fnmatch_lines(["2 threads run in the warm parent after its imports"])
    assert "ready" not in result.stdout.str()


def test_a_stand_in_that_cannot_reach_the_warm_parent_becomes_the_cold_command(
    pytester: pytest.Pytester,
) -> None:
    # the warm parent ended between the session's check and the launch: the process
    # still starts, the cold way, and its exit code is the cold command's
    import sys

    import pytest_parslflow.htex

    stand_in = Path(pytest_parslflow.htex.__file__).parent / "_warm_launch.py"
    cold = [sys.executable, "-c", "import sys; print('cold', sys.argv[1:]); sys.exit(7)", "x"]
    result = pytester.run(
        sys.executable, "-I", "-S", str(stand_in), "parslflow-warm-gone", "pool", *cold
    )
    assert result.ret == 7
    result.stdout.fnmatch_lines(["cold ['x']"])
    result.stderr.fnmatch_lines(
        ["pytest-parslflow: starting cold (the warm parent is not reachable: *)"]
    )
