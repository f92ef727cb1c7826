"""No hang on a broken result path (HTEX): a result that cannot be loaded in pytest fails
its task at once with the error, and a result thread that ends fails what is pending."""

from __future__ import annotations

import pytest

UNLOADABLE = """
import os
import pathlib
import pytest
import parsl
from parsl import python_app

PIDFILE = pathlib.Path(__file__).with_name("pytest.pid")

def _load(value):
    if PIDFILE.exists() and int(PIDFILE.read_text()) == os.getpid():
        raise RuntimeError("this result cannot be loaded outside the worker")
    return value

class Fussy:
    def __reduce__(self):
        return (_load, (1,))

@python_app
def make():
    return Fussy()

class FussyError(Exception):
    def __reduce__(self):
        return (_load_error, (str(self),))

def _load_error(text):
    _load(1)
    return FussyError(text)

@python_app
def fail_fussily():
    raise FussyError("raised in the worker")

@python_app
def ok(i):
    return i

@python_app
def slow():
    import time
    time.sleep(30)

@pytest.mark.parsl(executor="htex", timeout=60)
def test_unloadable_result(parsl_tasks):
    PIDFILE.write_text(str(os.getpid()))
    future = make()
    assert future.exception() is not None
    assert ok(2).result() == 2  # the result thread lives on
    future.result()

@pytest.mark.parsl(executor="htex", timeout=60)
def test_unloadable_exception():
    PIDFILE.write_text(str(os.getpid()))
    future = fail_fussily()
    assert future.exception() is not None
    assert ok(3).result() == 3
    future.result()

@pytest.mark.parsl(executor="htex", timeout=60)
def test_result_thread_ends():
    future = slow()
    parsl.dfk().executors["htex_local"].incoming_q.close()
    future.result()
"""


@pytest.mark.htex
def test_a_result_that_cannot_be_loaded_fails_its_task_at_once(
    pytester: pytest.Pytester, run_parslflow
) -> None:
    pytester.makepyfile(UNLOADABLE)
    result = run_parslflow("-p", "no:randomly", "-rA")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(
        [
            "*_ test_unloadable_result _*",
            "*- parsl: tasks -*",
            "task 0  make  failed  tries=1  executor=htex_local  executor ids *",
            "  try 0: DeserializationError: Failed to deserialize objects. Reason: the result of executor task * could not be loaded in pytest: RuntimeError: this result cannot be loaded outside the worker*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*_ test_unloadable_exception _*",
            "task 0  fail_fussily  failed  tries=1  executor=htex_local*",
            "  try 0: DeserializationError: Failed to deserialize objects. Reason: *this result cannot be loaded outside the worker*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*_ test_result_thread_ends _*",
            "task 0  slow  failed  tries=1  executor=htex_local*",
            "  try 0: BadStateException: Executor htex_local failed due to: the result thread of executor htex_local ended (*)*",
        ]
    )
    text = result.stdout.str()
    assert "Timeout" not in text
    assert "leaked" not in text
