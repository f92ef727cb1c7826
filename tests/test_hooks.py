"""The plugin's own hooks apply to the tests of the conftest's folder only."""

from __future__ import annotations

import pytest


def test_make_config_and_log_files_hooks_apply_to_their_folder(
    pytester: pytest.Pytester, run_parslflow
) -> None:
    pytester.makepyfile(
        **{
            "cluster/conftest.py": """
import pytest
from parsl.config import Config
from parsl.executors import ThreadPoolExecutor

@pytest.hookimpl(optionalhook=True)
def pytest_parslflow_make_config(request, settings):
    assert settings.executor == "thread" and settings.retries == 1
    return Config(executors=[ThreadPoolExecutor(label="cluster_threads")], retries=7)

@pytest.hookimpl(optionalhook=True)
def pytest_parslflow_log_files(run_dir):
    return [run_dir / "site.log", run_dir / "missing.log"]
""",
            "cluster/test_cluster.py": """
import parsl
import pytest
from parsl import python_app

@python_app
def boom():
    raise ValueError("boom")

@pytest.mark.parsl(retries=1)
def test_uses_the_hook_config(parsl_run_dir):
    dfk = parsl.dfk()
    assert "cluster_threads" in dfk.executors
    assert dfk.config.retries == 1  # the marker's explicit setting wins
    assert dfk.run_dir == str(parsl_run_dir / "000")

@pytest.mark.parsl(retries=1)
def test_extra_log_in_report(parsl_run_dir):
    (parsl_run_dir / "site.log").write_text("scheduler: ERROR node lost\\nall fine\\n")
    boom().result()
""",
            "local/test_local.py": """
import parsl
import pytest

@pytest.mark.parsl(retries=1)
def test_outside_the_folder():
    assert "threads" in parsl.dfk().executors
""",
        }
    )
    result = run_parslflow("-v")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*- parsl: site.log -*", "scheduler: ERROR node lost", "all fine"])
    assert "missing.log" not in result.stdout.str()


def test_conftest_with_optional_hooks_loads_without_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
import pytest

@pytest.hookimpl(optionalhook=True)
def pytest_parslflow_make_config(request, settings):
    return None
"""
    )
    pytester.makepyfile("def test_x(): pass")
    pytester.runpytest_subprocess("-p", "no:parslflow").assert_outcomes(passed=1)
