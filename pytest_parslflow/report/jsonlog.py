"""Parsl's JSON logs (``Config(initialize_logging=JSONLogging())``): ``parsl.jsonlog``,
``interchange.jsonlog``, ``manager.jsonlog``, ``worker_N.jsonlog``, one JSON object a line.

They are excerpted as the text logs are (the task patterns and level words match inside
the JSON text) and shown as the text logs' lines are: time, level, message.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

SUFFIX = ".jsonlog"


def readable(line: str) -> str | None:
    """``HH:MM:SS LEVEL   message`` for one of Parsl's JSON log records, else ``None``."""
    if not line.startswith("{"):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or "levelname" not in record:
        return None
    message = record.get("formatted", record.get("msg", ""))
    created: Any = record.get("created")
    try:
        time = datetime.datetime.fromtimestamp(float(created)).strftime("%H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        time = "--:--:--"
    task = record.get("parsl.task")
    # one line a record, as in the text logs: a traceback is named by its last line
    first, *rest = str(message).split("\n") or [""]
    text = first
    if rest:
        text += f"  [+{len(rest)} lines, ending: {rest[-1].strip()}]"
    if task is not None and f"ask {task}" not in text:
        text += f"  [task {task}]"
    return f"{time} {record['levelname']:<7} {text}"


def twins(path: Path) -> list[Path]:
    """``path`` and its JSON twin (``parsl.log`` and ``parsl.jsonlog``), those that exist."""
    return [p for p in (path, path.with_suffix(SUFFIX)) if p.is_file()]


def globs(pattern: str) -> tuple[str, str]:
    """A ``*.log`` glob pattern and the same for JSON logs."""
    return pattern, pattern[: -len(".log")] + SUFFIX
