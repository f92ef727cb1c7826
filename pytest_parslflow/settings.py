"""Settings of a Parsl test: the ``parsl`` marker's arguments and the option defaults.

Every marker argument is validated here, before the test runs, into one
immutable :class:`ParslSettings` value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

MARKER = "parsl"

EXECUTORS = ("thread", "htex")
CHECKPOINT_MODES = ("task_exit", "periodic", "dfk_exit", "manual")
SCOPES = ("function", "module", "session")
KEEP_CHOICES = ("failed", "all", "none")
LEAK_CHOICES = ("fail", "warn", "off")

#: The hidden argument name the executor matrix parametrizes.
EXECUTOR_PARAM = "_parsl_executor"

#: The most workers a test may ask for: each HTEX worker is a process of its own.
MAX_WORKERS = 256
#: The most retries a task may get: every failed try's exception is kept for the report.
MAX_RETRIES = 1000
#: The marker's timeout range in seconds: below the minimum pytest-timeout's timer fires
#: inside pytest's own code, above the maximum (a week) the platform's timer overflows.
MIN_TIMEOUT = 0.1
MAX_TIMEOUT = 7 * 24 * 3600.0

_PERIOD = re.compile(r"^(\d+):([0-5]\d):([0-5]\d)$")

MARKER_HELP = (
    "parsl(executor='thread', workers=2, retries=0, retry_handler=None, checkpoint=None, "
    "checkpoint_period=None, app_cache=True, monitoring=False, timeout=None, scope='function'): "
    "run the test with its own loaded Parsl DataFlowKernel (pytest-parslflow)"
)


@dataclass(frozen=True)
class ParslSettings:
    """The merged settings of one Parsl test, read by attribute.

    ``explicit`` names the arguments that a mark set (as opposed to defaults).
    """

    executor: str = "thread"
    workers: int = 2
    retries: int = 0
    retry_handler: Callable[..., float] | None = None
    checkpoint: str | None = None
    checkpoint_period: str | None = None
    app_cache: bool = True
    monitoring: bool = False
    timeout: float | None = None
    scope: str = "function"
    explicit: frozenset[str] = field(default=frozenset(), compare=False)


ARGUMENTS: tuple[str, ...] = (
    "executor",
    "workers",
    "retries",
    "retry_handler",
    "checkpoint",
    "checkpoint_period",
    "app_cache",
    "monitoring",
    "timeout",
    "scope",
)


class SettingsError(Exception):
    """A marker argument or option value that is not allowed; the message is one line."""


def _choices(values: Iterable[str]) -> str:
    return ", ".join(repr(v) for v in values)


def parse_executors(value: object) -> tuple[str, ...]:
    """``"thread"``, ``"thread,htex"`` or ``["thread", "htex"]`` as a tuple of names."""
    allowed = f"one of {_choices(EXECUTORS)} or a non-empty list of them"
    if isinstance(value, str):
        names = [v.strip() for v in value.split(",")]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        names = list(value)
    else:
        raise SettingsError(allowed)
    if not names or any(n not in EXECUTORS for n in names) or len(set(names)) != len(names):
        raise SettingsError(allowed + " without repeats")
    return tuple(names)


def _int(minimum: int, maximum: int) -> Callable[[object], int]:
    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(f"an int from {minimum} to {maximum}")
        if value < minimum:
            raise SettingsError(f"an int >= {minimum}")
        if value > maximum:
            raise SettingsError(f"an int from {minimum} to {maximum} (the plugin's limit)")
        return value

    return check


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise SettingsError("True or False")
    return value


def _retry_handler(value: object) -> Callable[..., float] | None:
    if value is not None and not callable(value):
        raise SettingsError("None or a callable (exception, task_record) -> float")
    return value


def _checkpoint(value: object) -> str | None:
    if value is not None and value not in CHECKPOINT_MODES:
        raise SettingsError(f"None or one of {_choices(CHECKPOINT_MODES)}")
    return value


def _checkpoint_period(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _PERIOD.match(value):
        raise SettingsError("None or a period 'HH:MM:SS', e.g. '00:00:05'")
    return value


def _timeout(value: object) -> float | None:
    if value is None:
        return None
    allowed = f"None or a finite number of seconds from {MIN_TIMEOUT:g} to {MAX_TIMEOUT:g} (a week)"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SettingsError(allowed)
    if isinstance(value, float) and not math.isfinite(value):
        raise SettingsError(allowed)
    if value <= 0:
        raise SettingsError("None or a number of seconds > 0")
    if not MIN_TIMEOUT <= value <= MAX_TIMEOUT:
        raise SettingsError(allowed)
    return float(value)


def _scope(value: object) -> str:
    if value not in SCOPES:
        raise SettingsError(f"one of {_choices(SCOPES)}")
    return str(value)


_VALIDATORS: dict[str, Callable[[object], Any]] = {
    "executor": parse_executors,
    "workers": _int(1, MAX_WORKERS),
    "retries": _int(0, MAX_RETRIES),
    "retry_handler": _retry_handler,
    "checkpoint": _checkpoint,
    "checkpoint_period": _checkpoint_period,
    "app_cache": _bool,
    "monitoring": _bool,
    "timeout": _timeout,
    "scope": _scope,
}


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_mark(mark: pytest.Mark) -> dict[str, Any]:
    """The validated arguments of one ``parsl`` mark."""
    if mark.args:
        raise SettingsError(
            f"@pytest.mark.parsl takes keyword arguments only, got positional "
            f"{', '.join(_describe(a) for a in mark.args)}; allowed: {', '.join(ARGUMENTS)}"
        )
    checked: dict[str, Any] = {}
    for name, value in mark.kwargs.items():
        validator = _VALIDATORS.get(name)
        if validator is None:
            import difflib  # only for the error: loading the plugin stays cheap

            close = difflib.get_close_matches(name, ARGUMENTS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SettingsError(
                f"@pytest.mark.parsl got an unknown argument {name!r}{hint}; "
                f"allowed: {', '.join(ARGUMENTS)}"
            )
        try:
            checked[name] = validator(value)
        except SettingsError as exc:
            allowed = str(exc)
        else:
            continue
        raise SettingsError(
            f"parsl marker argument {name}={_describe(value)} is not allowed: {allowed}"
        )
    return checked


def merge_marks(marks: Iterable[pytest.Mark]) -> dict[str, Any]:
    """Validate every mark (closest first) and merge them: the closest wins per argument."""
    merged: dict[str, Any] = {}
    for mark in marks:
        for name, value in _check_mark(mark).items():
            merged.setdefault(name, value)
    return merged


def marked_executors(marks: Iterable[pytest.Mark], default: Sequence[str]) -> tuple[str, ...]:
    """The executors a test runs on; the default where a mark is invalid (setup reports it)."""
    try:
        return tuple(merge_marks(marks).get("executor", default))
    except SettingsError:
        return tuple(default[:1])


def check_function_marks(function_marks: Sequence[pytest.Mark]) -> None:
    """Two ``parsl`` marks on one function are an error naming both: which of them should
    win is not obvious from the code (a module's or class's mark beneath it is fine)."""
    own = [m for m in function_marks if isinstance(m, pytest.Mark) and m.name == MARKER]
    if len(own) > 1:
        shown = " and ".join(
            "@pytest.mark.parsl("
            + ", ".join(f"{name}={_describe(value)}" for name, value in mark.kwargs.items())
            + ")"
            for mark in own
        )
        raise SettingsError(
            f"the function has {len(own)} parsl marks, {shown}; merge them into one "
            f"@pytest.mark.parsl(...)"
        )


def build_settings(
    marks: Iterable[pytest.Mark],
    default_executors: Sequence[str],
    chosen_executor: str | None,
    function_marks: Sequence[pytest.Mark] = (),
) -> ParslSettings:
    """Merge and validate ``marks`` into settings; raises :class:`SettingsError`.
    ``function_marks`` are the marks on the test function itself (see
    :func:`check_function_marks`)."""
    check_function_marks(function_marks)
    merged = merge_marks(marks)
    explicit = frozenset(merged)
    executors: tuple[str, ...] = merged.pop("executor", tuple(default_executors))
    executor = chosen_executor if chosen_executor in executors else executors[0]
    if merged.get("checkpoint_period") is not None and merged.get("checkpoint") != "periodic":
        raise SettingsError(
            f"parsl marker argument checkpoint_period={merged['checkpoint_period']!r} "
            f"is not allowed: it needs checkpoint='periodic' "
            f"(checkpoint is {merged.get('checkpoint')!r})"
        )
    if merged.get("checkpoint") == "periodic" and merged.get("checkpoint_period") is None:
        raise SettingsError(
            "parsl marker argument checkpoint='periodic' is not allowed without "
            "checkpoint_period='HH:MM:SS'"
        )
    return ParslSettings(executor=executor, explicit=explicit, **merged)
