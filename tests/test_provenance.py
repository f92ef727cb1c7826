"""The leak guard knows where a process came from, and nothing Parsl started outlives a
test, an interrupted session or pytest itself.

Each session runs in a subprocess, with a token of its own in its environment (which
every process it starts inherits) and a temporary directory of its own (``TMPDIR``),
so that what it leaves is checked from outside: by token, by process tree, and by
the entries of its temporary directory.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import uuid
from pathlib import Path

import psutil
import pytest

#: generous: only guards against a hang, never a measure of speed
HANG_GUARD = 300


#: seconds a process ended as pytest exits may take to be gone (a hang guard, no more)
EXIT_GRACE = 5.0


def _marked(mark: str) -> list[str]:
    """Processes still running whose environment carries ``PROVENANCE_MARK=mark``, once
    those on their way out (a process ended as pytest exits: its exit is not instant)
    had a few seconds to go, and multiprocessing's resource tracker had time to see its
    last client go (it ends on its own then; the deadline only guards against a hang)."""
    start = time.monotonic()
    while found := _marked_now(mark):
        waited = time.monotonic() - start
        if waited > 30 or (
            waited > EXIT_GRACE and not all("resource_tracker" in line for line in found)
        ):
            break
        time.sleep(0.1)
    return found


def _marked_now(mark: str) -> list[str]:
    wanted = f"PROVENANCE_MARK={mark}"
    found = []
    for process in psutil.process_iter():
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            environ = process.environ()
            if f"PROVENANCE_MARK={environ.get('PROVENANCE_MARK')}" == wanted:
                found.append(f"{process.pid} {' '.join(process.cmdline())}")
        except psutil.Error:
            continue
    return found


class Session:
    """A pytest session in a subprocess with its own token and temporary directory,
    started with default signal dispositions (as from a terminal)."""

    def __init__(self, pytester: pytest.Pytester, python: str = sys.executable) -> None:
        self.mark = uuid.uuid4().hex
        self.tmp = pytester.path.parent / f"systmp-{self.mark[:8]}"
        self.tmp.mkdir()
        self.ready = pytester.path / "ready"
        self.basetemp = pytester.path / "basetemp"
        self.python = python
        self.cwd = pytester.path

    def start(self, *args: str) -> subprocess.Popen[str]:
        env = dict(os.environ)
        env.pop("PYTEST_ADDOPTS", None)
        env.update(PROVENANCE_MARK=self.mark, TMPDIR=str(self.tmp), READY=str(self.ready))

        def default_signals() -> None:
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(signum, signal.SIG_DFL)

        command = [self.python, "-m", "pytest", "-p", "parslflow", "-p", "no:cacheprovider"]
        command += ["-p", "no:randomly", f"--basetemp={self.basetemp}", *args]
        return subprocess.Popen(
            command,
            cwd=self.cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=default_signals,
        )

    def run(self, *args: str) -> tuple[int, str]:
        process = self.start(*args)
        try:
            output, _ = process.communicate(timeout=HANG_GUARD)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        return process.returncode, output

    def temp_entries(self) -> list[str]:
        return sorted(os.listdir(self.tmp))


def _outcomes(output: str) -> dict[str, int]:
    return pytest.RunResult(0, output.splitlines(), [], 0.0).parseoutcomes()


# --- a venv whose path contains "parsl" ---------------------------------------------------


def parsl_named_python(root: Path) -> str:
    """An interpreter in ``my-parsl-project/.venv`` that shares this venv's packages:
    a pyvenv.cfg, a link to this interpreter and a link to its site-packages (no copy,
    no install). Every path the session runs from then contains ``parsl``."""
    venv = root / "my-parsl-project" / ".venv"
    (venv / "bin").mkdir(parents=True)
    shutil.copy(Path(sys.prefix) / "pyvenv.cfg", venv / "pyvenv.cfg")
    os.symlink(sys.executable, venv / "bin" / "python")
    lib = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    lib.mkdir(parents=True)
    os.symlink(sysconfig.get_paths()["purelib"], lib / "site-packages")
    return str(venv / "bin" / "python")


PARSL_PATH_CONFTEST = """
import subprocess, sys
import pytest

@pytest.fixture(scope="session")
def helper_server():
    # a session fixture's helper, whose command line says "parsl" and "interchange"
    server = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)", "parsl", "interchange"]
    )
    yield server
    server.kill()
    server.wait()
"""

PARSL_PATH_TESTS = """
import multiprocessing.resource_tracker
import os
import sys
import psutil
import pytest
from parsl import bash_app, python_app

@python_app
def one():
    return 1

@bash_app
def sleeps(started):
    return f"touch {started}; sleep 30"

def test_runs_from_a_parsl_named_venv():
    assert "my-parsl-project" in sys.executable

@pytest.mark.parsl
def test_with_the_helper(helper_server):
    assert one().result() == 1

@pytest.mark.parsl(monitoring=True)
def test_monitoring(parsl_monitoring, helper_server):
    assert one().result() == 1
    assert len(parsl_monitoring.tasks()) == 1

@pytest.mark.parsl(executor=["thread", "htex"])
def test_deliberate_leak(helper_server, tmp_path):
    sleeps(tmp_path / "started")  # never waited for
    while not (tmp_path / "started").exists():
        pass

def test_helpers_survive(helper_server):
    assert helper_server.poll() is None
    tracker = multiprocessing.resource_tracker._resource_tracker._pid
    assert tracker is not None, "monitoring started the resource tracker"
    assert psutil.Process(tracker).status() != psutil.STATUS_ZOMBIE
    left = [
        " ".join(p.cmdline()) for p in psutil.Process().children(recursive=True)
        if p.status() != psutil.STATUS_ZOMBIE and "sleep 30" in " ".join(p.cmdline())
    ]
    assert left == []
"""


@pytest.mark.htex
def test_a_venv_whose_path_says_parsl_gives_no_false_leak(pytester: pytest.Pytester) -> None:
    python = parsl_named_python(pytester.path)
    pytester.makeconftest(PARSL_PATH_CONFTEST)
    pytester.makepyfile(test_parsl_path=PARSL_PATH_TESTS)
    session = Session(pytester, python)
    _code, output = session.run("-v")
    outcomes = _outcomes(output)
    assert outcomes.get("passed") == 6, output
    assert outcomes.get("errors", outcomes.get("error")) == 2, output
    leaked = [line for line in output.splitlines() if "leaked Parsl resources" in line]
    assert leaked, output
    for line in leaked:
        assert "test_deliberate_leak" in line, line
        assert "resource_tracker" not in line and "time.sleep(600)" not in line, line
    assert any("bash app 'sleeps' (task 0) command 'touch " in line for line in leaked)
    assert any("task command 'sleep 30'" in line for line in leaked)
    assert "KeyError" not in output
    assert _marked(session.mark) == []
    assert session.temp_entries() == []


# --- a test's apps end with it --------------------------------------------------------------

BASH_APPS = """
import os
import psutil
import pytest
from parsl import bash_app

@bash_app
def sleeps():
    return "sleep 60"

@bash_app
def detaches():
    return "setsid sleep 61 >/dev/null 2>&1 </dev/null & sleep 62 >/dev/null 2>&1 & echo started"

def sleeping():
    mark = os.environ["PROVENANCE_MARK"]
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("PROVENANCE_MARK") != mark:
                continue
            if process.status() != psutil.STATUS_ZOMBIE and "sleep 6" in " ".join(process.cmdline()):
                found.append(process.pid)
        except psutil.Error:
            continue
    return found

@pytest.fixture(autouse=True)
def nothing_of_the_last_test_runs():
    assert sleeping() == [], "a command of an earlier test still runs"

@pytest.mark.parsl(executor=EXECUTOR, timeout=3)
def test_times_out():
    sleeps().result()

@pytest.mark.parsl(executor=EXECUTOR)
def test_detaches():
    assert detaches().result() == 0

def test_after_them():
    pass
"""


@pytest.mark.parametrize("executor", ["thread", pytest.param("htex", marks=pytest.mark.htex)])
def test_bash_apps_still_running_end_with_their_test(
    pytester: pytest.Pytester, executor: str
) -> None:
    pytester.makepyfile(test_bash=BASH_APPS.replace("EXECUTOR", repr(executor)))
    session = Session(pytester)
    _code, output = session.run("-v")
    outcomes = _outcomes(output)
    assert outcomes.get("failed") == 1, output  # the timeout
    assert outcomes.get("passed") == 2, output
    assert outcomes.get("errors", outcomes.get("error")) == 2, output  # named, ended
    text = " ".join(output.split())
    if executor == "thread":
        assert "bash app 'sleeps' (task 0) command 'sleep 60': process " in text, output
        for seconds in (61, 62):
            assert f"(sleep {seconds}) started by bash app 'detaches' (task 0): ended" in text
    else:
        assert "task command 'sleep 60': process " in text, output
        assert "task command 'sleep 61': process " in text, output
        assert "task command 'sleep 62': process " in text, output
    assert "Use the parsl marker" not in output
    assert _marked(session.mark) == []
    assert session.temp_entries() == []


STUCK_THREAD_APP = """
import pytest
from parsl import python_app

@python_app
def forever():
    while True:
        pass

@pytest.mark.parsl(timeout=2)
def test_stuck():
    forever().result()
"""


def test_a_stuck_thread_app_never_keeps_pytest_from_exiting(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_stuck=STUCK_THREAD_APP)
    session = Session(pytester)
    code, output = session.run()  # returns: pytest exited with the app still running
    assert code == 1, output
    text = " ".join(output.split())
    # the worker thread's name: Parsl 2025.1 gives its executors no thread name prefix
    assert re.search(
        r"thread 'ThreadPoolExecutor-(threads_)?\d+(_\d+)?' still running task 0 \(app forever\), at ",
        text,
    ), output
    assert re.search(r"test_stuck\.py:[67] in forever", text), output


# --- interrupted sessions ----------------------------------------------------------------------

INTERRUPTED = """
import os
import pathlib
import pytest
from parsl import bash_app, python_app

@bash_app
def sleeps():
    return "sleep 60"

@python_app
def slow():
    import time
    time.sleep(60)

@pytest.mark.parsl(executor=EXECUTOR, monitoring=MONITORING)
def test_interrupted(parsl_run_dir):
    futures = [sleeps(), slow()]
    pathlib.Path(os.environ["READY"]).write_text(str(parsl_run_dir))
    for future in futures:
        future.result()
"""


def _tree(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


@pytest.mark.parametrize("signame", ["SIGINT", "SIGINT twice", "SIGTERM", "SIGHUP"])
@pytest.mark.parametrize(
    ("executor", "monitoring"),
    [
        ("thread", False),
        pytest.param("htex", True, marks=pytest.mark.htex, id="htex-monitoring"),
    ],
)
def test_an_interrupted_session_leaves_nothing(
    pytester: pytest.Pytester, signame: str, executor: str, monitoring: bool
) -> None:
    pytester.makepyfile(
        test_interrupted=INTERRUPTED.replace("EXECUTOR", repr(executor)).replace(
            "MONITORING", repr(monitoring)
        )
    )
    session = Session(pytester)
    process = session.start("-v")
    try:
        while not session.ready.exists() and process.poll() is None:
            time.sleep(0.05)
        time.sleep(0.5)  # the apps' commands are running
        tree = _tree(process.pid)
        assert tree, "the session started processes"
        signum = getattr(signal, signame.split()[0])
        process.send_signal(signum)
        if signame.endswith("twice"):
            time.sleep(0.2)
            process.send_signal(signum)
        output, _ = process.communicate(timeout=HANG_GUARD)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "KeyboardInterrupt" in output, output
    assert _marked(session.mark) == []
    _, alive = psutil.wait_procs([p for p in tree if p.is_running()], timeout=EXIT_GRACE)
    assert [p.pid for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []
    assert session.temp_entries() == []
    run_dir = Path(session.ready.read_text())
    assert (run_dir / "000" / "parsl.log").exists(), "the interrupted test's run dir is kept"


# --- a DFK that fails to start ---------------------------------------------------------------

CANNOT_START = """
import pytest
from pytest_parslflow.config import builtin_config

@pytest.hookimpl(optionalhook=True)
def pytest_parslflow_make_config(request, settings):
    config = builtin_config(settings)
    if request.node.name == "test_cannot_start":
        config.executors[0].interchange_launch_cmd = ["no-such-interchange.py"]
    return config
"""


@pytest.mark.htex
def test_a_dfk_that_fails_to_start_is_stopped_and_is_no_leak(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CANNOT_START)
    pytester.makepyfile(
        test_start="""
import threading
import pytest
from parsl import python_app

@python_app
def one():
    return 1

@pytest.mark.parsl(executor="htex")
def test_cannot_start():
    pass

def test_nothing_of_it_runs():
    names = [t.name for t in threading.enumerate()]
    assert not [n for n in names if n.startswith(("JobStatusPoller", "HTEX-"))], names

@pytest.mark.parsl(executor="htex")
def test_next_starts():
    assert one().result() == 1
"""
    )
    session = Session(pytester)
    _code, output = session.run("-v")
    outcomes = _outcomes(output)
    assert outcomes.get("errors", outcomes.get("error")) == 1, output
    assert outcomes.get("passed") == 2, output
    assert "no-such-interchange.py" in output
    assert "leaked" not in output, output
    assert _marked(session.mark) == []


def test_the_monitoring_example_runs_from_a_venv_whose_path_says_parsl(
    pytester: pytest.Pytester,
) -> None:
    examples = Path(__file__).resolve().parent.parent / "examples"
    session = Session(pytester, parsl_named_python(pytester.path))
    session.cwd = examples.parent
    _code, output = session.run(str(examples / "test_monitoring.py"), "--rootdir", str(examples))
    assert _outcomes(output) == {"passed": 1}, output
    assert _marked(session.mark) == []
    assert session.temp_entries() == []


UNKNOWN_ORIGIN = """
import os
import pathlib
import signal
import pytest
from parsl import python_app

@python_app
def one():
    return 1

@pytest.mark.parsl
def test_starts_a_process_parsl_did_not(tmp_path):
    assert one().result() == 1
    pid_file = pathlib.Path(os.environ["READY"])
    os.system(f"sleep 30 >/dev/null 2>&1 & echo $! > {pid_file}")
    pid = pid_file.read_text().strip()
    while not pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep"):
        pass  # the background job's shell has yet to become sleep

def test_it_still_runs():
    pid = int(pathlib.Path(os.environ["READY"]).read_text())
    os.kill(pid, 0)  # not ended
    os.kill(pid, signal.SIGKILL)
"""


def test_a_process_of_unknown_origin_is_named_and_left_alone(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_unknown=UNKNOWN_ORIGIN)
    session = Session(pytester)
    _code, output = session.run("-v")
    assert _outcomes(output) == {"passed": 2, "warnings": 1}, output
    text = " ".join(output.split())
    assert (
        "(sleep 30) started during the test and still runs; it was not started by Parsl, so it was left alone"
        in text
    ), output


SUITE_DFK = """
import parsl
import pytest
from parsl import python_app
from pytest_parslflow.config import builtin_config
from pytest_parslflow.settings import ParslSettings

@python_app
def one():
    return 1

@pytest.fixture(scope="session")
def suite_dfk(tmp_path_factory):
    config = builtin_config(ParslSettings(executor="htex"))
    config.run_dir = str(tmp_path_factory.mktemp("suite"))
    dfk = parsl.load(config)
    yield dfk
    dfk.cleanup()

@pytest.mark.parsl
def test_marked_first(suite_dfk):
    assert one().result() == 1

def test_the_suite_dfk_still_serves(suite_dfk):
    assert suite_dfk.executors["htex_local"].interchange_proc.poll() is None
    assert one().result() == 1
"""


@pytest.mark.htex
def test_what_a_broader_fixture_loads_during_a_marked_test_is_not_the_tests(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_suite=SUITE_DFK)
    session = Session(pytester)
    _code, output = session.run("-v")
    assert _outcomes(output) == {"passed": 2}, output
    assert _marked(session.mark) == []


NO_POPEN = """
import os
import pytest
from pytest_parslflow.origins import launch_environment, record_launch

@pytest.mark.parsl
def test_a_launcher_without_popen():
    # as a fork server would start Parsl's processes: not through subprocess.Popen
    env = {k.encode(): v.encode() for k, v in launch_environment().items()}
    recorded = os.posix_spawn("/bin/sleep", ["sleep", "37"], env)
    record_launch(recorded, "sleep 37")
    # and one that only carries the environment, detached from its starter
    os.posix_spawn("/bin/sh", ["sh", "-c", "setsid sleep 38 >/dev/null 2>&1 &"], env)
"""


def test_a_launcher_other_than_popen_gives_the_environment_and_records(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_no_popen=NO_POPEN)
    session = Session(pytester)
    _code, output = session.run("-v")
    assert _outcomes(output) == {"passed": 1, "errors": 1}, output
    text = " ".join(output.split())
    assert "(sleep 37): ended" in text, output
    assert "(sleep 38): ended" in text, output
    assert _marked(session.mark) == []
