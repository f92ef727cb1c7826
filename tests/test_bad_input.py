"""Bad marker arguments fail that test alone; bad options are usage errors at start-up."""

from __future__ import annotations

import pytest

BAD_MARKS = {
    "test_misspelt": (
        "retires=2",
        "*test_misspelt: *unknown argument 'retires' (did you mean 'retries'?); allowed: executor, workers, retries*",
    ),
    "test_wrong_type": (
        "workers='2'",
        "*test_wrong_type: parsl marker argument workers='2' is not allowed: an int from 1 to 256",
    ),
    "test_out_of_range": (
        "retries=-1",
        "*test_out_of_range: parsl marker argument retries=-1 is not allowed: an int >= 0",
    ),
    "test_unknown_mode": (
        "checkpoint='sometimes'",
        "*test_unknown_mode: parsl marker argument checkpoint='sometimes' is not allowed: None or one of 'task_exit', 'periodic', 'dfk_exit', 'manual'",
    ),
    "test_period_without_periodic": (
        "checkpoint='task_exit', checkpoint_period='00:00:05'",
        "*test_period_without_periodic: parsl marker argument checkpoint_period='00:00:05' is not allowed: it needs checkpoint='periodic' (checkpoint is 'task_exit')",
    ),
    "test_periodic_without_period": (
        "checkpoint='periodic'",
        "*test_periodic_without_period: parsl marker argument checkpoint='periodic' is not allowed without checkpoint_period='HH:MM:SS'",
    ),
    "test_bad_period": (
        "checkpoint='periodic', checkpoint_period='5s'",
        "*test_bad_period: parsl marker argument checkpoint_period='5s' is not allowed: None or a period 'HH:MM:SS'*",
    ),
    "test_bad_executor": (
        "executor='gpu'",
        "*test_bad_executor: parsl marker argument executor='gpu' is not allowed: one of 'thread', 'htex' or a non-empty list of them*",
    ),
    "test_positional": (
        "'thread'",
        "*test_positional: @pytest.mark.parsl takes keyword arguments only, got positional 'thread'*",
    ),
    "test_bad_scope": (
        "scope='class'",
        "*test_bad_scope: parsl marker argument scope='class' is not allowed: one of 'function', 'module', 'session'",
    ),
    "test_bad_timeout": (
        "timeout=-3",
        "*test_bad_timeout: parsl marker argument timeout=-3 is not allowed: None or a number of seconds > 0",
    ),
    "test_nan_timeout": (
        "timeout=float('nan')",
        "*test_nan_timeout: parsl marker argument timeout=nan is not allowed: None or a finite number of seconds from 0.1 to 604800 (a week)",
    ),
    "test_infinite_timeout": (
        "timeout=float('inf')",
        "*test_infinite_timeout: parsl marker argument timeout=inf is not allowed: None or a finite number of seconds from 0.1 to 604800*",
    ),
    "test_huge_float_timeout": (
        "timeout=1e300",
        "*test_huge_float_timeout: parsl marker argument timeout=1e+300 is not allowed: None or a finite number of seconds*",
    ),
    "test_huge_int_timeout": (
        "timeout=10**30",
        "*test_huge_int_timeout: parsl marker argument timeout=1000000000000000000000000000000 is not allowed: None or a finite*",
    ),
    "test_tiny_timeout": (
        "timeout=1e-6",
        "*test_tiny_timeout: parsl marker argument timeout=1e-06 is not allowed: None or a finite number of seconds from 0.1*",
    ),
    "test_too_many_workers": (
        "workers=10000",
        "*test_too_many_workers: parsl marker argument workers=10000 is not allowed: an int from 1 to 256 (the plugin's limit)",
    ),
    "test_too_many_retries": (
        "retries=10**9",
        "*test_too_many_retries: parsl marker argument retries=1000000000 is not allowed: an int from 0 to 1000 (the plugin's limit)",
    ),
    "test_bad_bool": ("monitoring='yes'", "*test_bad_monitoring*"),
    "test_bad_handler": (
        "retry_handler=3",
        "*test_bad_handler: parsl marker argument retry_handler=3 is not allowed: None or a callable*",
    ),
}


def test_each_bad_marker_argument_errors_that_test_alone(
    pytester: pytest.Pytester, run_parslflow
) -> None:
    body = ["import parsl, pytest", ""]
    for name, (args, _) in BAD_MARKS.items():
        body += [f"@pytest.mark.parsl({args})", f"def {name}():", "    pass", ""]
    body += [
        "@pytest.mark.parsl",
        "def test_good_one_still_runs():",
        "    assert parsl.dfk() is not None",
    ]
    pytester.makepyfile(test_marks="\n".join(body))
    pytester.makepyfile(
        test_module_mark="""
import pytest
pytestmark = pytest.mark.parsl(app_cache="no")

def test_under_bad_module_mark():
    pass
"""
    )
    result = run_parslflow("-rE")
    result.assert_outcomes(passed=1, errors=len(BAD_MARKS) + 1)
    expected = [line for name, (_, line) in BAD_MARKS.items() if name != "test_bad_bool"]
    expected.append(
        "*test_bad_bool: parsl marker argument monitoring='yes' is not allowed: True or False"
    )
    expected.append(
        "*test_under_bad_module_mark: parsl marker argument app_cache='no' is not allowed*"
    )
    for line in expected:
        result.stdout.fnmatch_lines([line])
    # One line per error, without a traceback into the plugin.
    assert "pytest_parslflow" not in result.stdout.str()
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_two_parsl_marks_on_one_function_are_an_error_naming_both(
    pytester: pytest.Pytester, run_parslflow
) -> None:
    pytester.makepyfile(
        """
import pytest
pytestmark = pytest.mark.parsl(retries=1)

@pytest.mark.parsl(retries=2)
@pytest.mark.parsl(workers=3)
def test_twice():
    pass

@pytest.mark.parsl(workers=3)
def test_once_under_a_module_mark():
    pass

class TestMarked:
    pytestmark = pytest.mark.parsl(workers=2)

    @pytest.mark.parsl(retries=2)
    def test_class_and_method(self):
        pass
"""
    )
    result = run_parslflow("-rE")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*test_twice: the function has 2 parsl marks, @pytest.mark.parsl(workers=3) and @pytest.mark.parsl(retries=2); merge them into one @pytest.mark.parsl(...)"
        ]
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--parslflow-keep=sometimes"],
            "*--parslflow-keep='sometimes' is not allowed: use one of failed, all, none",
        ),
        (
            ["--parslflow-leaks=loud"],
            "*--parslflow-leaks='loud' is not allowed: use one of fail, warn, off",
        ),
        (
            ["--parslflow-log-lines=0"],
            "*--parslflow-log-lines='0' is not allowed: use a whole number of lines >= 1*",
        ),
        (["--parslflow-log-lines=many"], "*--parslflow-log-lines='many' is not allowed*"),
        (
            ["--parslflow-executor=thread,gpu"],
            "*--parslflow-executor='thread,gpu' is not allowed: use one of 'thread', 'htex'*",
        ),
        (
            ["--parslflow-config=missing.py"],
            "*--parslflow-config=*missing.py: no such file; pass the path of a Python file that defines fresh_config()*",
        ),
    ],
)
def test_bad_option_is_a_usage_error(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_inprocess("-p", "parslflow", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_bad_ini_value_names_the_ini_key(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nparslflow_keep = never\n")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_inprocess("-p", "parslflow")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*ini parslflow_keep='never' is not allowed: use one of failed, all, none"]
    )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "X = 1\n",
            "*site.py: the file defines neither fresh_config() nor config; add `def fresh_config()*",
        ),
        (
            "raise RuntimeError('no cluster here')\n",
            "*site.py: importing the file raised RuntimeError: no cluster here; fix the file*",
        ),
        ("config = 42\n", "*site.py: `config` is a int, not a parsl.config.Config*"),
    ],
)
def test_bad_config_file_is_a_usage_error(
    pytester: pytest.Pytester, source: str, message: str
) -> None:
    pytester.makepyfile(site=source)
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_inprocess("-p", "parslflow", "--parslflow-config", "site.py")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
