"""Every snippet of the README runs, as a reader would run it.

The README's fenced blocks are read by language:

- ``python`` blocks that define tests are written into a pytester directory as
  test modules and run with the plugin; they must pass;
- a ``python`` block whose first line is a ``# conftest.py`` comment (or a path
  ending in ``conftest.py``, e.g. ``# tests/cluster/conftest.py``) becomes that
  conftest, next to a trivial Parsl test that must pass;
- ``ini`` blocks become the ``pytest.ini`` of a trivial session that must pass;
- a block preceded by ``<!-- snippet: compile-only -->`` is only compiled, one
  preceded by ``<!-- snippet: site-config -->`` is a ``--parslflow-config`` file whose
  ``fresh_config()`` must build a ``parsl.config.Config`` (it may name a
  scheduler that is not here, so nothing is submitted);
- every other language (bash, yaml, plain output) is skipped.

A ``python`` block that fits none of these is an error, so that a new snippet
cannot silently go untested.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"

#: the command CI greps for in the README, byte for byte
CI_COMMAND = ".venv/bin/python -m pytest -n 2 tests"

DIRECTIVES = ("compile-only", "site-config")
_FENCE = re.compile(r"^```(?P<lang>[\w+-]*)\s*$")
_DIRECTIVE = re.compile(r"^<!--\s*snippet:\s*(?P<name>[\w-]+)\s*-->$")
_CONFTEST = re.compile(r"^#\s*(?P<path>(?:[\w.-]+/)*conftest\.py)\s*$")
_DEFINES_TEST = re.compile(r"^(?:async\s+)?def test_\w*\(", re.MULTILINE)

#: the trivial Parsl test that runs next to a conftest snippet
TRIVIAL_TEST = """
import pytest
from parsl import python_app


@python_app
def answer() -> int:
    return 42


@pytest.mark.parsl
def test_{name}() -> None:
    assert answer().result() == 42
"""


@dataclass(frozen=True)
class Snippet:
    """One fenced block of the README."""

    lang: str
    text: str
    line: int  # of the opening fence, 1-based
    directive: str | None

    @property
    def where(self) -> str:
        return f"README.md:{self.line}"

    @property
    def conftest_path(self) -> str | None:
        first = self.text.splitlines()[0] if self.text.strip() else ""
        match = _CONFTEST.match(first)
        return match["path"] if match else None

    def kind(self) -> str:
        """What the test does with it: skip, compile-only, site-config, conftest,
        test, htex-test or ini; raises ValueError for a python block that fits none."""
        if self.lang not in ("python", "py", "ini"):
            return "skip"
        if self.directive is not None:
            if self.directive not in DIRECTIVES:
                raise ValueError(
                    f"{self.where}: unknown <!-- snippet: {self.directive} -->; "
                    f"use one of {', '.join(DIRECTIVES)}"
                )
            return self.directive
        if self.lang == "ini":
            return "ini"
        if self.conftest_path is not None:
            return "conftest"
        if _DEFINES_TEST.search(self.text):
            return "htex-test" if '"htex"' in self.text else "test"
        raise ValueError(
            f"{self.where}: a python snippet must define a test, start with a "
            f"'# conftest.py' comment, or be marked <!-- snippet: compile-only --> "
            f"on the line before it"
        )


def read_snippets(path: Path = README) -> list[Snippet]:
    """The fenced blocks of ``path`` in order, with the directive before each."""
    snippets: list[Snippet] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        fence = _FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        start = index
        end = start + 1
        while end < len(lines) and lines[end].rstrip() != "```":
            end += 1
        if end == len(lines):
            raise ValueError(f"README.md:{start + 1}: the code block is never closed")
        before = next((line.strip() for line in reversed(lines[:start]) if line.strip()), "")
        directive = _DIRECTIVE.match(before)
        snippets.append(
            Snippet(
                lang=fence["lang"].lower(),
                text="\n".join(lines[start + 1 : end]) + "\n",
                line=start + 1,
                directive=directive["name"] if directive else None,
            )
        )
        index = end + 1
    return snippets


SNIPPETS = read_snippets()


def of_kind(*kinds: str) -> list[Snippet]:
    return [s for s in SNIPPETS if _kind_or_none(s) in kinds]


def _kind_or_none(snippet: Snippet) -> str | None:
    try:
        return snippet.kind()
    except ValueError:
        return None


def params(snippets: list[Snippet]) -> list[Any]:
    return [pytest.param(s, id=s.where) for s in snippets]


def write_tests(pytester: pytest.Pytester, snippets: list[Snippet]) -> list[str]:
    """Write test snippets as modules and conftest snippets as conftests, each in a
    folder of its own with a trivial test; return the test files written."""
    files = []
    for snippet in snippets:
        if snippet.kind() == "conftest":
            assert snippet.conftest_path is not None
            conftest = pytester.path / f"conftest_line_{snippet.line}" / snippet.conftest_path
            conftest.parent.mkdir(parents=True, exist_ok=True)
            conftest.write_text(snippet.text, encoding="utf-8")
            name = f"conftest_snippet_line_{snippet.line}"
            test_file = conftest.parent / f"test_{name}.py"
            test_file.write_text(TRIVIAL_TEST.format(name=name), encoding="utf-8")
        else:
            test_file = pytester.path / f"test_readme_line_{snippet.line}.py"
            test_file.write_text(snippet.text, encoding="utf-8")
        files.append(str(test_file.relative_to(pytester.path)))
    return files


def run_and_check(pytester: pytest.Pytester, snippets: list[Snippet]) -> None:
    """Run the snippets in one pytest session with the plugin; every one must pass."""
    files = write_tests(pytester, snippets)
    result = pytester.runpytest_subprocess("-p", "parslflow", "-rA", *files, timeout=180)
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("errors", 0) == 0, outcomes
    passed = result.stdout.str()
    for snippet, file in zip(snippets, files, strict=True):
        assert re.search(rf"^PASSED {re.escape(file)}::", passed, re.MULTILINE), (
            f"{snippet.where}: no test of {file} passed"
        )


def test_readme_keeps_the_ci_command() -> None:
    assert CI_COMMAND in README.read_text(encoding="utf-8").splitlines()


def test_every_snippet_is_classified() -> None:
    problems = []
    for snippet in SNIPPETS:
        try:
            snippet.kind()
        except ValueError as exc:
            problems.append(str(exc))
    assert not problems, "\n".join(problems)
    # A sanity check on the parser: the README has snippets of every kind it relies on.
    kinds = {s.kind() for s in SNIPPETS}
    assert {"test", "conftest", "ini", "compile-only", "site-config"} <= kinds, kinds


PYTHON_KINDS = ("test", "htex-test", "conftest", "compile-only", "site-config")


@pytest.mark.parametrize("snippet", params(of_kind(*PYTHON_KINDS)))
def test_python_snippet_compiles(snippet: Snippet) -> None:
    compile(snippet.text, snippet.where, "exec")


def test_snippets_pass(pytester: pytest.Pytester) -> None:
    run_and_check(pytester, of_kind("test", "conftest"))


@pytest.mark.htex
def test_htex_snippets_pass(pytester: pytest.Pytester) -> None:
    snippets = of_kind("htex-test")
    if not snippets:
        pytest.skip("the README has no snippet that starts HTEX")
    run_and_check(pytester, snippets)


@pytest.mark.parametrize("snippet", params(of_kind("ini")))
def test_ini_snippet_configures_a_session(pytester: pytest.Pytester, snippet: Snippet) -> None:
    (pytester.path / "pytest.ini").write_text(snippet.text, encoding="utf-8")
    pytester.makepyfile(TRIVIAL_TEST.format(name="ini_snippet"))
    result = pytester.runpytest_subprocess("-p", "parslflow", "--strict-config", timeout=120)
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("snippet", params(of_kind("site-config")))
def test_site_config_snippet_builds_a_config(tmp_path: Path, snippet: Snippet) -> None:
    from parsl.config import Config

    path = tmp_path / f"site_config_line_{snippet.line}.py"
    path.write_text(snippet.text, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    first, second = module.fresh_config(), module.fresh_config()
    assert isinstance(first, Config) and first is not second  # a new Config per call
