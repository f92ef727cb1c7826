"""Loading: -p parslflow with and without autoload, -p no:parslflow, and no Parsl import."""

from __future__ import annotations

import pytest

MARKED = """
import parsl
import pytest

@pytest.mark.parsl
def test_marked():
    assert parsl.dfk() is not None
"""


def test_p_parslflow_with_autoload_disabled(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(MARKED)
    pytester.runpytest_subprocess("-p", "parslflow", "--strict-markers").assert_outcomes(passed=1)


def test_no_parslflow_disables_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
def test_plugin_absent(request):
    assert not request.config.pluginmanager.hasplugin("parslflow")
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:parslflow", "--help")
    assert "--parslflow-executor" not in result.stdout.str()
    pytester.runpytest_subprocess("-p", "no:parslflow").assert_outcomes(passed=1)


def test_a_session_without_parsl_tests_never_imports_parsl(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
import sys

def pytest_sessionfinish(session):
    print("parsl imported:", "parsl" in sys.modules)
"""
    )
    pytester.makepyfile(
        """
import sys
import pytest

@pytest.mark.parametrize("i", range(3))
def test_plain(i, tmp_path):
    assert "parsl" not in sys.modules
"""
    )
    result = pytester.runpytest_subprocess("-p", "parslflow", "-s", "--strict-markers")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*parsl imported: False*"])


def test_public_names_resolve_without_importing_parsl() -> None:
    """Everything in ``pytest_parslflow.__all__`` (what tests annotate fixtures with)
    resolves, and importing the package does not import Parsl."""
    import subprocess
    import sys

    code = (
        "import sys, pytest_parslflow as p\n"
        "assert 'parsl' not in sys.modules\n"
        "print(sorted(n for n in p.__all__ if getattr(p, n) is None))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
