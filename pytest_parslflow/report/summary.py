"""The session's Parsl summary at the end of the terminal report."""

from __future__ import annotations

from typing import Any

import pytest

#: kept run directories listed by name; the rest are counted
MAX_KEPT_SHOWN = 20


class SessionSummary:
    """A plugin object: adds up each Parsl test's figures, which arrive on its teardown
    report (as plain data, so they reach xdist's controller too)."""

    def __init__(self) -> None:
        self.tests = 0
        self.figures: dict[str, int] = {"tasks": 0, "retried": 0, "memo": 0, "failed": 0}
        self.kept: list[str] = []
        #: warnings that could not be issued as warnings (``-W error``)
        self.notes: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "teardown":
            return
        figures: Any = getattr(report, "parslflow", None)
        if not isinstance(figures, dict):
            return
        self.tests += 1
        for name in self.figures:
            self.figures[name] += int(figures.get(name, 0))
        kept = figures.get("kept")
        if kept and str(kept) not in self.kept:  # tests sharing a DFK share its folder
            self.kept.append(str(kept))

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.tests and not self.notes:
            return
        f = self.figures
        terminalreporter.write_sep("-", "parsl summary")
        terminalreporter.write_line(
            f"{self.tests} tests used Parsl: {f['tasks']} tasks run, {f['retried']} retried, "
            f"{f['memo']} from memo or checkpoint, {f['failed']} failed"
        )
        if self.kept:
            terminalreporter.write_line(f"kept run directories ({len(self.kept)}):")
            for path in self.kept[:MAX_KEPT_SHOWN]:
                terminalreporter.write_line(f"  {path}")
            if len(self.kept) > MAX_KEPT_SHOWN:
                terminalreporter.write_line(f"  ... and {len(self.kept) - MAX_KEPT_SHOWN} more")
        for note in self.notes:
            terminalreporter.write_line(f"warning: {note}")
