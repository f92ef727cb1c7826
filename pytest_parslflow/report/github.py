"""GitHub Actions: ``::error`` workflow commands at the line where an app raised, and the
job summary's Markdown.

Everything here works on plain data (:class:`CIFailure` dicts), which is what travels
from an xdist worker to the controller, where both are written.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

#: annotations per failed test, and per session (GitHub itself shows at most 10 error
#: annotations per step and 50 per job)
MAX_PER_TEST = 5
MAX_PER_SESSION = 10
#: rows of the job summary's table
MAX_SUMMARY_ROWS = 50
#: root tasks listed per test in the summary's table
MAX_ROOTS_PER_TEST = 3
#: characters of an exception's text in a message or a cell
MAX_MESSAGE = 500
MAX_CELL = 200


def escape_data(text: str) -> str:
    """A workflow command's message, escaped as GitHub's runner unescapes it."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value (``file``, ``title``, ...): also ``:`` and ``,``."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 15] + " ...[truncated]"


def workspace_path(path: str, start: Path) -> str:
    """``path`` as GitHub wants it: relative to ``$GITHUB_WORKSPACE`` (the repository)
    when it is inside, else relative to ``start`` when inside that, else as given."""
    full = os.path.abspath(path)
    for base in (os.environ.get("GITHUB_WORKSPACE"), os.fspath(start)):
        if not base:
            continue
        relative = os.path.relpath(full, os.path.abspath(base))
        if not relative.startswith(".."):
            return relative
    return path


def error_commands(
    tests: Iterable[Mapping[str, Any]],
    start: Path,
    skip: Mapping[str, tuple[str, int]] | None = None,
) -> tuple[list[str], int]:
    """The ``::error`` lines for failed tests' failed tasks, and how many were left out.

    A task whose location is where another plugin already annotated the test (``skip``:
    node id to (file, line), pytest-github-actions-annotate-failures' choice) is left out.
    """
    skip = skip or {}
    lines: list[str] = []
    left_out = 0
    for test in tests:
        shown = 0
        for failure in test["tasks"]:
            path, line = failure.get("file"), failure.get("line")
            if path is None:
                path, line = test["file"], test["line"]
            path = workspace_path(path, start)
            if skip.get(test["nodeid"]) == (path, line):
                continue
            if shown == MAX_PER_TEST or len(lines) == MAX_PER_SESSION:
                left_out += 1
                continue
            title = f"{test['nodeid']}: task {failure['task']} {failure['app']}"
            caused = failure["root"] not in (None, failure["task"])
            if caused:
                title += f" ({failure['state']}, root task {failure['root']})"
            message = _cut(failure["exception"], MAX_MESSAGE)
            detail = f"task {failure['task']} {failure['app']} {failure['state']}"
            if caused:
                detail += f": caused by task {failure['root']}, which failed here"
            else:
                detail += f" after {failure['tries']} tr{'y' if failure['tries'] == 1 else 'ies'}"
                detail += f" on executor {failure['executor']}"
            lines.append(
                f"::error file={escape_property(path)},line={line},"
                f"title={escape_property(title)}::{escape_data(message + chr(10) + detail)}"
            )
            shown += 1
    return lines, left_out


def _cell(text: object) -> str:
    """A Markdown table cell: one line, pipes escaped."""
    flat = " ".join(str(text).split())
    return _cut(flat, MAX_CELL).replace("|", "\\|")


def _code(text: object) -> str:
    flat = " ".join(str(text).split()).replace("`", "'")
    return f"`{flat}`".replace("|", "\\|")


def summary_markdown(line: str, tests: Sequence[Mapping[str, Any]], artifacts: str | None) -> str:
    """The job summary's section: the Parsl summary line and a table of failed tests."""
    parts = ["## Parsl", "", line, ""]
    if not tests:
        return "\n".join(parts) + "\n"
    parts += [
        "| test | root task | app | exception | tries | executor | artifacts |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    rows = 0
    for test in tests:
        artifact = _code(test["artifact"]) if test.get("artifact") else "-"
        roots = [t for t in test["tasks"] if t["root"] in (None, t["task"])]
        if not roots:  # the test failed, but no task of it did
            parts.append(
                f"| {_code(test['nodeid'])} | - | - | {_cell(test.get('crash') or 'failed')} "
                f"| - | - | {artifact} |"
            )
            rows += 1
        for failure in roots[:MAX_ROOTS_PER_TEST]:
            parts.append(
                f"| {_code(test['nodeid'])} | {failure['task']} | {_code(failure['app'])} "
                f"| {_cell(failure['exception'])} | {failure['tries']} "
                f"| {_cell(failure['executor'])} | {artifact} |"
            )
            rows += 1
        if len(roots) > MAX_ROOTS_PER_TEST:
            more = len(roots) - MAX_ROOTS_PER_TEST
            parts.append(f"| {_code(test['nodeid'])} | … {more} more | | | | | |")
        if rows >= MAX_SUMMARY_ROWS:
            left = len(tests) - tests.index(test) - 1
            if left:
                parts.append(f"\n… and {left} more failed Parsl tests")
            break
    parts.append("")
    if artifacts:
        parts += [
            f"Run directories, reports and pictures of these tests: `{artifacts}` "
            f"(each test's folder holds `report.txt` and `parsl-run.svg`).",
            "",
        ]
    return "\n".join(parts) + "\n"
