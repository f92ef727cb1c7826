"""Any basetemp path works for HTEX: a space, braces, ``$``, quotes and non-ASCII in it
start the block, and the report names the right files."""

from __future__ import annotations

import pytest

WORKFLOW = """
import pytest
from parsl import bash_app, python_app

@python_app
def boom():
    raise ValueError("boom in a strange place")

@bash_app
def convert(stdout=None, stderr=None):
    return "echo 'no such file: input.txt' >&2; exit 3"

@pytest.mark.parsl(executor="htex", timeout=120)
def test_python_app():
    boom().result()

@pytest.mark.parsl(executor="htex", timeout=120)
def test_bash_app(tmp_path):
    convert(stdout=str(tmp_path / "convert.out"), stderr=str(tmp_path / "convert.err")).result()
"""


@pytest.mark.htex
@pytest.mark.parametrize(
    "name",
    [
        pytest.param("with space", id="space"),
        pytest.param("brace {x} {}", id="braces"),
        pytest.param("dollar $HOME $(echo no)", id="dollar"),
        pytest.param("""quotes ' and " here""", id="quotes"),
        pytest.param("non-ascii é ü 测试", id="non-ascii"),
    ],
)
def test_htex_under_a_hostile_basetemp(pytester: pytest.Pytester, run_parslflow, name: str) -> None:
    pytester.makepyfile(WORKFLOW)
    basetemp = pytester.path / name
    result = run_parslflow(f"--basetemp={basetemp}", "-p", "no:randomly")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            f"run dir: {basetemp}/test_python_app0/runinfo/000 (kept)",
            "task 0  boom  failed  tries=1  executor=htex_local  executor ids *",
            "  try 0: ValueError: boom in a strange place*",
            "*- parsl: 000/htex_local/block-0/*/worker_*.log (executor tasks *) -*",
            "*Received executor task *",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*- parsl: */convert.err (task 0 convert) -*",
            "no such file: input.txt",
        ]
    )
    # nothing of the path was read by a shell: no `{x}` format error, no expansion
    text = result.stdout.str()
    assert "Failed to start block" not in text and "KeyError" not in text
    assert not (pytester.path / "dollar ").exists()
