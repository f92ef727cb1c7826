"""Where people look when CI fails: the picture of a failed run, ``--parslflow-artifacts``,
GitHub annotations and job summary, pytest-html extras, monitoring errors of passing tests.

One plugin object, :class:`ParslCI`, registered by ``plugin.py`` at configure, and its
per-test hooks (:class:`ParslCITests`), registered with the managed tests' hooks. Its
``pytest_runtest_makereport`` wraps the plugin's own (``tryfirst``: outside it), so it
sees the failure report just made and the test's run before the teardown forgets it.
What the controller needs (annotations, the summary's rows) travels on the teardown
report as plain data (``report.parslflow_ci``), as the session summary's figures do.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_parslflow.lifecycle import REPORT, TEST_RUN, ParslTestRun
from pytest_parslflow.options import _raw, options_of

ARTIFACTS = ("--parslflow-artifacts", "parslflow_artifacts")
ANNOTATIONS = ("--parslflow-github-annotations", "parslflow_github_annotations")
#: the key xdist's controller hands the artifacts folder to its workers under
WORKER_ARTIFACTS = "parslflow_artifacts"
#: failed tasks of one test carried to the controller (annotations and summary rows)
MAX_TASKS_CARRIED = 20

#: the picture of the test's failed run (``None``: none could be drawn); set at its
#: first failing phase, so also "this attempt of the test failed"
PICTURE = pytest.StashKey["Path | None"]()
#: the first failing phase's crash message and longrepr, for the summary and report.txt
CRASH = pytest.StashKey[tuple[str, str]]()


@dataclass(frozen=True)
class CISettings:
    """``--parslflow-artifacts`` (absolute) and whether GitHub annotations are on."""

    artifacts: Path | None = None
    annotations: bool = True


def read_settings(config: pytest.Config) -> CISettings:
    """Read and check the CI options; a bad value is a ``pytest.UsageError``."""
    value, where, _ = _raw(config, *ANNOTATIONS)
    switch = value.lower()
    if switch not in ("on", "off", "true", "false", "1", "0", "yes", "no"):
        raise pytest.UsageError(
            f"{where}={value!r} is not allowed: use on or off (GitHub ::error annotations "
            f"of failed Parsl tasks when GITHUB_ACTIONS=true)"
        )
    annotations = switch in ("on", "true", "1", "yes")
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is not None and WORKER_ARTIFACTS in workerinput:
        given = workerinput[WORKER_ARTIFACTS]
        return CISettings(Path(given) if given else None, annotations)
    value, where, base = _raw(config, *ARTIFACTS)
    if not value:
        return CISettings(None, annotations)
    folder = (base / value).resolve()
    if folder.exists() and not folder.is_dir():
        raise pytest.UsageError(
            f"{where}={value!r} is not allowed: {folder} exists and is not a folder; give a "
            f"folder (made if missing) to copy failed tests' run directories into"
        )
    return CISettings(folder, annotations)


def _crash(report: pytest.TestReport) -> tuple[str, str]:
    longrepr: Any = report.longrepr
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:
        message = (str(crash.message).strip().splitlines() or [""])[0]
    elif isinstance(longrepr, tuple) and len(longrepr) == 3:
        message = str(longrepr[2])
    else:
        message = (str(longrepr or "").strip().splitlines() or [f"{report.when} failed"])[-1]
    return message, report.longreprtext


def _name_picture(text: str, picture: Path) -> str:
    """The report with a ``picture:`` line under its ``run dir:`` lines."""
    lines = text.split("\n")
    at = max((i for i, line in enumerate(lines) if line.startswith("run dir: ")), default=0)
    lines.insert(at + 1, f"picture: {picture}")
    return "\n".join(lines)


def failed_tasks(run: ParslTestRun, nodeid: str, location: tuple[str, int]) -> dict[str, Any]:
    """Plain data about a failed test's failed tasks: roots first, each with the file and
    line where it (or, for a ``dep_fail``, its root) raised in the workflow's code."""
    from pytest_parslflow.report.failure import _describe

    tasks = run.tasks()
    by_key = {(t.run, t.id): t for t in tasks}
    failed = sorted(
        (t for t in tasks if t.failed),
        key=lambda t: (t.root not in (None, t.id), t.run, t.id),
    )
    carried = []
    for task in failed[:MAX_TASKS_CARRIED]:
        root = by_key.get((task.run, task.root)) if task.root not in (None, task.id) else None
        source = root or task
        frames = source.frames[-1] if source.frames else ()
        frame = frames[-1] if frames else None
        exc = source.exceptions[-1] if source.exceptions else None
        carried.append(
            {
                "task": task.id,
                "run": task.run,
                "app": task.app,
                "state": task.state,
                "root": task.root,
                "tries": task.tries,
                "executor": task.executor,
                "exception": _describe(exc) if exc is not None else task.state,
                "file": frame.filename if frame is not None else None,
                "line": frame.lineno if frame is not None else None,
            }
        )
    return {
        "nodeid": nodeid,
        "file": location[0],
        "line": location[1],
        "tasks": carried,
        "failed_tasks": len(failed),
    }


def _their_location(report: pytest.TestReport) -> tuple[str, int] | None:
    """Where pytest-github-actions-annotate-failures puts its annotation of a failed test
    (its own rule: the first traceback entry), so that none of ours repeats it."""
    from _pytest._code.code import ExceptionRepr, ReprEntry

    path, lineno, _ = report.location
    line = lineno + 1 if lineno is not None else 0
    longrepr = report.longrepr
    if isinstance(longrepr, ExceptionRepr):
        entries = longrepr.reprtraceback.reprentries
        if entries:
            entry = entries[0]
            if isinstance(entry, ReprEntry) and entry.reprfileloc is not None:
                path, line = entry.reprfileloc.path, entry.reprfileloc.lineno
        elif longrepr.reprcrash is not None:
            line = longrepr.reprcrash.lineno
    elif isinstance(longrepr, tuple):
        path, line = str(longrepr[0]), int(longrepr[1])
    return path, line


class ParslCI:
    """The plugin object holding the CI integrations' hooks."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.settings = read_settings(config)
        self.is_worker = hasattr(config, "workerinput")
        # pytest-html's extras, only where it is installed and writes a report
        self.html = config.pluginmanager.hasplugin("html") and bool(
            config.getoption("htmlpath", None)
        )
        #: failed Parsl tests' data, by node id (a rerun that passes removes its entry)
        self.failed: dict[str, dict[str, Any]] = {}
        #: where pytest-github-actions-annotate-failures annotated each failed test
        self.theirs: dict[str, tuple[str, int]] = {}

    # ---------------------------------------------------------------- xdist

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """Every worker copies into the controller's folder, wherever it runs from."""
        folder = self.settings.artifacts
        node.workerinput[WORKER_ARTIFACTS] = os.fspath(folder) if folder else ""

    # ---------------------------------------------------------------- per test
    # (hooks of :class:`ParslCITests`, registered only where a test opted in)

    def runtest_setup(self, item: pytest.Item) -> None:
        # a rerun (pytest-rerunfailures) is a new attempt of the same item
        if PICTURE in item.stash:
            del item.stash[PICTURE]
        if CRASH in item.stash:
            del item.stash[CRASH]

    def runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        # read before the plugin's own makereport forgets the run at teardown
        run = item.stash.get(TEST_RUN, None)
        monitoring: list[tuple[str, list[str]]] = []
        if run is not None and call.when == "teardown" and PICTURE not in item.stash:
            # before the run directory of a test that passed is removed
            monitoring = self._monitoring_errors(item, run)
        report = yield
        if run is None:
            return report
        try:
            if report.failed and PICTURE not in item.stash:
                self._failed(item, run, report)
            if report.when == "teardown":
                self._finished(item, run, report)
                if monitoring and PICTURE not in item.stash:
                    self._warn_monitoring(item, monitoring)
        except Exception as exc:  # the report is a help: it never breaks the test run
            item.warn(
                pytest.PytestWarning(
                    f"pytest-parslflow could not add its CI extras to {item.nodeid}: {exc!r}"
                )
            )
        return report

    def _failed(self, item: pytest.Item, run: ParslTestRun, report: pytest.TestReport) -> None:
        """The first failing phase: the picture, named in the report just made."""
        from pytest_parslflow.report.failure import SECTION

        item.stash[PICTURE] = None
        item.stash[CRASH] = _crash(report)
        text = item.stash.get(REPORT, "")
        if not text:
            return
        picture = self._draw(item, run)
        if picture is not None:
            named = _name_picture(text, picture)
            item.stash[REPORT] = named
            report.sections = [
                (title, named if (title, body) == (SECTION, text) else body)
                for title, body in report.sections
            ]
            text = named
        if self.html:
            from pytest_parslflow.report.html import extras

            report.extras = [*getattr(report, "extras", []), *extras(text, picture)]  # type: ignore[attr-defined]

    def _draw(self, item: pytest.Item, run: ParslTestRun) -> Path | None:
        from pytest_parslflow.report.artifacts import artifact_name
        from pytest_parslflow.report.picture import PICTURE_NAME, write_picture

        if not run.run_dir.is_dir():
            return None
        name = PICTURE_NAME
        if run.shared is not None:  # tests sharing a DFK share its run directory
            name = f"parsl-run-{artifact_name(item.nodeid)}.svg"
        picture = write_picture(
            run.run_dir / name,
            run.tasks(),
            item.nodeid,
            [Path(dfk.run_dir) for dfk in run.dfks],
        )
        item.stash[PICTURE] = picture
        return picture

    def _finished(self, item: pytest.Item, run: ParslTestRun, report: pytest.TestReport) -> None:
        """After teardown: the artifacts folder, the data for the controller, and a
        passing test's monitoring errors."""
        figures: Any = getattr(report, "parslflow", None)
        kept = figures.get("kept") if isinstance(figures, dict) else None
        failed = PICTURE in item.stash
        picture = item.stash.get(PICTURE, None)
        artifact = None
        if run.shared is not None and not failed and options_of(self.config).keep != "all":
            # a shared run directory is kept for the test of it that failed; the others
            # passed, and need no copy of their own
            kept = None
        if self.settings.artifacts is not None and kept:
            artifact = self._copy(item, run, Path(kept), picture)
        if failed:
            path, line, _ = item.reportinfo()
            location = (os.fspath(item.path if path is None else path), (line or 0) + 1)
            data = failed_tasks(run, item.nodeid, location)
            data["crash"] = item.stash[CRASH][0]
            data["artifact"] = os.fspath(artifact) if artifact else None
            data["picture"] = os.fspath(picture) if picture else None
            report.parslflow_ci = data  # type: ignore[attr-defined]

    def _monitoring_errors(
        self, item: pytest.Item, run: ParslTestRun
    ) -> list[tuple[str, list[str]]]:
        from pytest_parslflow.monitoring import monitoring_errors

        try:
            return monitoring_errors(run, 10)
        except Exception:  # the warning is a help: never a reason for an error
            return []

    def _warn_monitoring(self, item: pytest.Item, found: list[tuple[str, list[str]]]) -> None:
        names = ", ".join(name for name, _ in found)
        first = next(line for _, lines in found for line in lines)
        item.warn(
            pytest.PytestWarning(
                f"{item.nodeid} passed, but Parsl's monitoring logged errors (its database "
                f"may miss data) in {names}: {first}"
            )
        )

    def _copy(
        self, item: pytest.Item, run: ParslTestRun, base: Path, picture: Path | None
    ) -> Path | None:
        from pytest_parslflow.report.artifacts import artifact_name, copy_run, new_folder

        assert self.settings.artifacts is not None
        attempt: int = getattr(item, "execution_count", 1)
        folder = new_folder(self.settings.artifacts, artifact_name(item.nodeid, attempt))
        report = ""
        if PICTURE in item.stash:
            message, longrepr = item.stash[CRASH]
            report = f"{item.nodeid}: {message}\n\n{longrepr}\n\n{item.stash.get(REPORT, '')}"
        problems = copy_run(base, folder, report, picture)
        if problems:
            item.warn(
                pytest.PytestWarning(
                    f"--parslflow-artifacts: some of {base} was not copied into {folder}: "
                    + "; ".join(problems[:3])
                )
            )
        return folder

    # ---------------------------------------------------------------- the controller

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.is_worker:
            return
        outcome: str = report.outcome  # "rerun" from pytest-rerunfailures
        if report.when == "call" and (report.failed or outcome == "rerun"):
            if self.config.pluginmanager.get_plugin("annotate_errors") is not None:
                where = _their_location(report)
                if where is not None:
                    self.theirs[report.nodeid] = where
        if report.when != "teardown" or getattr(report, "parslflow", None) is None:
            return
        data: Any = getattr(report, "parslflow_ci", None)
        if isinstance(data, dict):
            self.failed[report.nodeid] = data
        else:  # passed (a rerun's last attempt, say)
            self.failed.pop(report.nodeid, None)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.is_worker or not self.failed:
            return
        if os.environ.get("GITHUB_ACTIONS") != "true" or not self.settings.annotations:
            return
        from pytest_parslflow.report.github import (
            MAX_PER_SESSION,
            MAX_PER_TEST,
            error_commands,
            workspace_path,
        )

        start = self.config.invocation_params.dir
        skip = {
            nodeid: (workspace_path(path, start), line)
            for nodeid, (path, line) in self.theirs.items()
        }
        lines, left_out = error_commands(self.failed.values(), start, skip)
        for line in lines:
            terminalreporter.write_line(line)
        if left_out:
            terminalreporter.write_line(
                f"parsl: {left_out} more failed tasks not annotated (at most {MAX_PER_TEST} "
                f"per test and {MAX_PER_SESSION} per session); the failure reports list them"
            )

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        target = os.environ.get("GITHUB_STEP_SUMMARY")
        if self.is_worker or not target:
            return
        summary: Any = self.config.pluginmanager.get_plugin("parslflow-summary")
        if summary is None or not summary.tests:
            return
        from pytest_parslflow.report.github import summary_markdown, workspace_path

        f = summary.figures
        line = (
            f"{summary.tests} tests used Parsl: {f['tasks']} tasks run, {f['retried']} "
            f"retried, {f['memo']} from memo or checkpoint, {f['failed']} failed"
        )
        start = self.config.invocation_params.dir
        tests = list(self.failed.values())
        for test in tests:
            if test.get("artifact"):
                test["artifact"] = workspace_path(test["artifact"], start)
        artifacts = self.settings.artifacts
        where = workspace_path(os.fspath(artifacts), start) if artifacts and tests else None
        try:
            with open(target, "a", encoding="utf-8") as handle:
                handle.write(summary_markdown(line, tests, where))
        except OSError as exc:
            sys.stderr.write(f"pytest-parslflow: could not append to {target}: {exc}\n")


class ParslCITests:
    """:class:`ParslCI`'s per-test hooks, registered with the hooks of the tests that opt
    in (so that a suite without them pays for no wrapper per test). Its
    ``pytest_runtest_makereport`` wraps the plugin's own (``tryfirst``: outside it)."""

    def __init__(self, ci: ParslCI) -> None:
        self.ci = ci

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        self.ci.runtest_setup(item)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        return (yield from self.ci.runtest_makereport(item, call))
