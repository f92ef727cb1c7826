"""Command-line options and their ini twins, read and checked once at start-up."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_parslflow.settings import (
    EXECUTORS,
    KEEP_CHOICES,
    LEAK_CHOICES,
    SettingsError,
    parse_executors,
)

if TYPE_CHECKING:
    from pytest_parslflow.config import ConfigFile

DEFAULT_LOG_LINES = 40


@dataclass(frozen=True)
class Options:
    """The session's pytest-parslflow options, after defaults and checks."""

    executors: tuple[str, ...] = ("thread",)
    keep: str = "failed"
    log_lines: int = DEFAULT_LOG_LINES
    leaks: str = "fail"
    config_file: ConfigFile | None = None


OPTIONS = pytest.StashKey[Options]()

# (option, ini, help, metavar, default)
_OPTIONS: tuple[tuple[str, str, str, str, str], ...] = (
    (
        "--parslflow-executor",
        "parslflow_executor",
        "default executor, or comma-separated list of executors, for Parsl tests: "
        "thread, htex (default: thread)",
        "{thread,htex}[,...]",
        "thread",
    ),
    (
        "--parslflow-config",
        "parslflow_config",
        "Python file defining fresh_config() (or config) to use instead of the built-in "
        "local Parsl config",
        "PATH",
        "",
    ),
    (
        "--parslflow-keep",
        "parslflow_keep",
        "which tests' Parsl run directories survive the session: failed, all, none "
        "(default: failed)",
        "{failed,all,none}",
        "failed",
    ),
    (
        "--parslflow-log-lines",
        "parslflow_log_lines",
        f"upper bound on excerpt lines per log file in a failure report "
        f"(default: {DEFAULT_LOG_LINES})",
        "N",
        str(DEFAULT_LOG_LINES),
    ),
    (
        "--parslflow-leaks",
        "parslflow_leaks",
        "what a leaked DataFlowKernel, thread, process or socket does to the test: "
        "fail, warn, off (default: fail)",
        "{fail,warn,off}",
        "fail",
    ),
    (
        "--parslflow-artifacts",
        "parslflow_artifacts",
        "also copy each kept run directory, with the test's failure report and picture, into "
        "DIR (one folder per test, named after its node id) for CI to upload",
        "DIR",
        "",
    ),
    (
        "--parslflow-github-annotations",
        "parslflow_github_annotations",
        "GitHub ::error annotations at the line where a failed Parsl task raised, when "
        "GITHUB_ACTIONS=true: on, off (default: on)",
        "{on,off}",
        "on",
    ),
)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("parslflow", "Parsl workflow testing (pytest-parslflow)")
    for option, ini, help, metavar, default in _OPTIONS:
        group.addoption(option, dest=ini, default=None, metavar=metavar, help=help)
        parser.addini(ini, default=default, help=help)


def _raw(config: pytest.Config, option: str, ini: str) -> tuple[str, str, Path]:
    """The value, where it came from (for messages) and the folder relative paths start at."""
    value: Any = config.getoption(ini)
    if value is not None:
        return str(value), f"{option}", config.invocation_params.dir
    base = config.inipath.parent if config.inipath else config.rootpath
    return str(config.getini(ini)).strip(), f"ini {ini}", base


def read_options(config: pytest.Config) -> Options:
    """Read and check every option; a bad value is a ``pytest.UsageError``."""
    value, where, _ = _raw(config, "--parslflow-executor", "parslflow_executor")
    try:
        executors = parse_executors(value)
    except SettingsError as exc:
        raise pytest.UsageError(
            f"{where}={value!r} is not allowed: use {exc} (comma-separated), "
            f"e.g. --parslflow-executor thread,htex; executors: {', '.join(EXECUTORS)}"
        ) from None

    keep, where, _ = _raw(config, "--parslflow-keep", "parslflow_keep")
    if keep not in KEEP_CHOICES:
        raise pytest.UsageError(
            f"{where}={keep!r} is not allowed: use one of {', '.join(KEEP_CHOICES)}"
        )

    leaks, where, _ = _raw(config, "--parslflow-leaks", "parslflow_leaks")
    if leaks not in LEAK_CHOICES:
        raise pytest.UsageError(
            f"{where}={leaks!r} is not allowed: use one of {', '.join(LEAK_CHOICES)}"
        )

    lines, where, _ = _raw(config, "--parslflow-log-lines", "parslflow_log_lines")
    try:
        log_lines = int(lines)
    except ValueError:
        log_lines = 0
    if log_lines < 1:
        raise pytest.UsageError(
            f"{where}={lines!r} is not allowed: use a whole number of lines >= 1, "
            f"e.g. {DEFAULT_LOG_LINES}"
        )

    path, where, base = _raw(config, "--parslflow-config", "parslflow_config")
    config_file = None
    if path:
        from pytest_parslflow.config import ConfigFile, ConfigFileError

        try:
            config_file = ConfigFile(base / path, where)
        except ConfigFileError as exc:
            raise pytest.UsageError(str(exc)) from None

    return Options(
        executors=executors,
        keep=keep,
        log_lines=log_lines,
        leaks=leaks,
        config_file=config_file,
    )


def options_of(config: pytest.Config) -> Options:
    return config.stash.get(OPTIONS, Options())
