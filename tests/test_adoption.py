"""Installing the plugin into an existing Parsl suite: what does not opt in is only observed.

Each pattern below is how research repositories load Parsl today, with a deliberate
failure in each. Its per-test outcomes and exit code must be the same with the plugin
autoloaded (as after ``pip install``) and with ``-p no:parslflow``.
"""

from __future__ import annotations

import re

import pytest

APPS = """
import parsl
import pytest
from parsl import python_app
from parsl.config import Config
from parsl.executors import ThreadPoolExecutor

@python_app
def double(x):
    return 2 * x

@python_app
def boom(x):
    raise ValueError(f"boom {x}")

def thread_config(run_dir):
    return Config(executors=[ThreadPoolExecutor(label="suite")], run_dir=str(run_dir))
"""

# a real project's conftest: its own --parsl-config option, a session fixture named
# parsl_config and a session DFK fixture
OWN_OPTION_CONFTEST = """
import parsl
import pytest
from parsl.config import Config
from parsl.executors import ThreadPoolExecutor

def pytest_addoption(parser):
    parser.addoption("--parsl-config", default="local", help="the suite's own option")

@pytest.fixture(scope="session")
def parsl_config(request, tmp_path_factory):
    assert request.config.getoption("--parsl-config") == "local"
    run_dir = tmp_path_factory.mktemp("suite") / "runinfo"
    return Config(executors=[ThreadPoolExecutor(label="suite")], run_dir=str(run_dir))

@pytest.fixture(scope="session")
def context(parsl_config):
    dfk = parsl.load(parsl_config)
    yield dfk
    dfk.cleanup()
"""

OWN_OPTION_TESTS = (
    APPS
    + """
def test_uses_the_suite_dfk(context):
    assert double(2).result() == 4
    assert parsl.dfk() is context

def test_fails_in_an_app(context):
    boom(1).result()

def test_still_has_the_suite_dfk(context):
    assert parsl.dfk() is context
    assert double(3).result() == 6

def test_asks_for_parsl_config(parsl_config, context):
    assert parsl_config is context.config
"""
)

SETUP_MODULE_TESTS = (
    APPS
    + """
import tempfile

def setup_module():
    parsl.load(thread_config(tempfile.mkdtemp()))

def teardown_module():
    parsl.dfk().cleanup()
    parsl.clear()

def test_first():
    assert double(1).result() == 2

def test_second():
    assert double(2).result() == 4

def test_fails():
    assert double(3).result() == 7

def test_third():
    assert double(4).result() == 8
"""
)

MODULE_AUTOUSE_TESTS = (
    APPS
    + """
@pytest.fixture(scope="module", autouse=True)
def module_dfk(tmp_path_factory):
    dfk = parsl.load(thread_config(tmp_path_factory.mktemp("module")))
    yield dfk
    assert parsl.dfk() is dfk, "the DFK this module loaded is no longer the loaded one"
    dfk.cleanup()
    parsl.clear()

def test_first():
    assert double(1).result() == 2

def test_fails():
    boom(2).result()

def test_last(module_dfk):
    assert parsl.dfk() is module_dfk
"""
)

PARAMETRIZED_CONFIG_TESTS = (
    APPS
    + """
@pytest.fixture(params=["none", "threads"])
def parsl_config(request, tmp_path):
    return None if request.param == "none" else thread_config(tmp_path)

def test_loads_what_it_is_given(parsl_config):
    if parsl_config is None:
        pytest.skip("no Parsl for this one")
    with parsl.load(parsl_config):
        assert double(5).result() == 10

def test_fails_on_purpose(parsl_config):
    assert parsl_config is None
"""
)

SLOPPY_TESTS = (
    APPS
    + """
def test_loads_and_never_cleans_up(tmp_path):
    parsl.load(thread_config(tmp_path))
    assert double(1).result() == 2

def test_uses_that_dfk():
    assert double(2).result() == 4

def test_fails_on_that_dfk():
    boom(3).result()

def test_loads_again(tmp_path):
    parsl.load(thread_config(tmp_path))
"""
)

PATTERNS = {
    "own_option": (OWN_OPTION_CONFTEST, OWN_OPTION_TESTS),
    "setup_module": ("", SETUP_MODULE_TESTS),
    "module_autouse": ("", MODULE_AUTOUSE_TESTS),
    "parametrized_config": ("", PARAMETRIZED_CONFIG_TESTS),
    "sloppy": ("", SLOPPY_TESTS),
}

_OUTCOME = re.compile(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (\S+)")


def outcomes(result: pytest.RunResult) -> dict[str, str]:
    """Each test's outcome, from the short summary of ``-rA``."""
    found = {}
    for line in result.stdout.lines:
        match = _OUTCOME.match(line)
        if match:
            found[match[2] + ("" if match[1] != "ERROR" else " (error)")] = match[1]
    return found


@pytest.fixture(autouse=True)
def _autoload(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plugins load as after ``pip install``."""
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)


def run_both_ways(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, ...]:
    """The session with the plugin autoloaded, as after ``pip install``, and without it."""
    with_plugin = pytester.runpytest_subprocess("-rA", "-p", "no:randomly", *args)
    without = pytester.runpytest_subprocess("-rA", "-p", "no:randomly", "-p", "no:parslflow", *args)
    return with_plugin, without


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
@pytest.mark.parametrize("strict", [False, True], ids=["default", "warnings-are-errors"])
def test_installing_the_plugin_changes_no_outcome(
    pytester: pytest.Pytester, pattern: str, strict: bool
) -> None:
    conftest, tests = PATTERNS[pattern]
    if conftest:
        pytester.makeconftest(conftest)
    pytester.makepyfile(**{f"test_{pattern}": tests})
    args = ("-W", "error::pytest.PytestWarning") if strict else ()
    with_plugin, without = run_both_ways(pytester, *args)
    assert outcomes(without), without.stdout.str()
    assert outcomes(with_plugin) == outcomes(without), with_plugin.stdout.str()
    assert with_plugin.ret == without.ret
    # every pattern has its deliberate failure
    assert "FAILED" in outcomes(with_plugin).values()


def test_the_suites_own_parsl_config_option_and_fixture(pytester: pytest.Pytester) -> None:
    """Its --parsl-config and the plugin's --parslflow-config live side by side."""
    pytester.makeconftest(OWN_OPTION_CONFTEST)
    pytester.makepyfile(test_own=OWN_OPTION_TESTS)
    result = pytester.runpytest_subprocess("-p", "parslflow", "--parsl-config=local")
    result.assert_outcomes(passed=3, failed=1)


def test_a_test_that_leaves_its_dfk_loaded_is_a_warning_naming_it(
    pytester: pytest.Pytester, run_parslflow
) -> None:
    pytester.makepyfile(test_sloppy=SLOPPY_TESTS)
    result = run_parslflow("-p", "no:randomly")
    result.assert_outcomes(passed=2, failed=2, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "*ParslflowWarning: test_sloppy.py::test_loads_and_never_cleans_up: the "
            "DataFlowKernel loaded by the test body (run dir *) is still loaded and running "
            "after the test; later tests will find it loaded.*"
        ]
    )
    off = run_parslflow("-p", "no:randomly", "--parslflow-leaks=off")
    off.assert_outcomes(passed=2, failed=2)
    assert "ParslflowWarning" not in off.stdout.str()


def test_a_broader_owner_is_checked_when_its_scope_ends(
    pytester: pytest.Pytester, run_parslflow
) -> None:
    pytester.makepyfile(
        test_owner=APPS
        + """
@pytest.fixture(scope="module")
def forgetful(tmp_path_factory):
    return parsl.load(thread_config(tmp_path_factory.mktemp("m")))

def test_one(forgetful):
    assert double(1).result() == 2

def test_two(forgetful):
    assert parsl.dfk() is forgetful
""",
        test_later="def test_later():\n    pass\n",
    )
    result = run_parslflow("-p", "no:randomly")
    result.assert_outcomes(passed=3, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "test_owner.py::test_two",
            "*ParslflowWarning: the DataFlowKernel started by fixture 'forgetful' of "
            "test_owner.py (module scope) (run dir *) is still running after its scope ended*",
        ]
    )


def test_a_marked_test_next_to_a_suites_dfk_runs_on_its_own(
    pytester: pytest.Pytester, run_parslflow
) -> None:
    """The suite's DFK is set aside for the marked test, untouched, and is the loaded one
    again for the next test; a test that loads Parsl itself is told why it cannot."""
    pytester.makeconftest(OWN_OPTION_CONFTEST)
    pytester.makepyfile(
        test_mixed=APPS
        + """
import os

def test_before(context):
    assert parsl.dfk() is context

@pytest.mark.parsl
def test_marked(context, parsl_run_dir):
    dfk = parsl.dfk()
    assert dfk is not context
    assert os.path.commonpath([dfk.run_dir, str(parsl_run_dir)]) == str(parsl_run_dir)
    assert double(3).result() == 6
    assert not context.cleanup_called

def test_after(context):
    assert parsl.dfk() is context
    assert double(4).result() == 8

@pytest.mark.parsl
def test_marked_that_loads_parsl_itself():
    parsl.load(Config(executors=[ThreadPoolExecutor()]))

def test_last(context):
    assert parsl.dfk() is context
"""
    )
    result = run_parslflow("-p", "no:randomly", "-rA")
    result.assert_outcomes(passed=4, failed=1, warnings=2)
    result.stdout.fnmatch_lines(
        [
            "*note: the parsl marker loaded this test's DataFlowKernel before the test ran, "
            "so the test's own parsl.load() found one loaded.*override the parsl_config "
            "fixture in a conftest or implement pytest_parslflow_make_config; or run the "
            "test without the plugin (-p no:parslflow)",
        ]
    )
    # the conftest's parsl_config is the suite's running Config: not loaded twice
    result.stdout.fnmatch_lines(
        [
            "*ParslflowWarning: test_mixed.py::test_marked: the parsl_config fixture gives "
            "the Config that the DataFlowKernel loaded by fixture 'context' (session scope) "
            "already runs*so the test runs on the plugin's own Config*"
        ]
    )


def test_a_failing_test_that_did_not_opt_in_gets_its_tasks_and_log_lines(
    pytester: pytest.Pytester,
) -> None:
    """No change to the suite: the next CI failure of a Parsl test carries its log lines."""
    pytester.makeconftest(OWN_OPTION_CONFTEST)
    pytester.makepyfile(
        test_observed=APPS
        + """
def test_passes(context):
    assert double(1).result() == 2

def test_fails(context):
    futures = [double(2), boom(7)]
    assert futures[0].result() == 4
    futures[1].result()
"""
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:randomly", "--junitxml=out.xml", "-o", "junit_logging=system-out"
    )
    result.assert_outcomes(passed=1, failed=1)
    junit = (pytester.path / "out.xml").read_text()
    assert "2 tasks submitted during this test (ids 1-2): 1 exec_done, 1 failed" in junit
    result.stdout.fnmatch_lines(
        [
            "*- parsl: tasks -*",
            "run dir: *runinfo/000 (the suite's DataFlowKernel, loaded by fixture 'context' "
            "(session scope); not managed by pytest-parslflow*",
            "2 tasks submitted during this test (ids 1-2): 1 exec_done, 1 failed",
            "task 2  boom  failed  tries=1  executor=suite",
            "  try 0: ValueError",
            "*- parsl: parsl.log since the test began (task 2) -*",
            "*INFO    Task 2 try 0 failed with exception of type ValueError",
        ]
    )
    text = result.stdout.str()
    # chosen by the test's own tasks: nothing of the earlier test's task 0
    assert "Task 0 " not in text
    assert "parsl summary" not in text  # no test used Parsl through the plugin
