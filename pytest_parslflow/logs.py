"""Finding a run's log files and choosing the lines of each that explain a failure.

Files are scanned in large binary chunks with one compiled pattern, so a
100 MB ``parsl.log`` costs a fraction of a second and memory stays bounded:
only the chosen lines (at most ``max_lines`` of each kind) are kept.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 4 << 20
_LEVELS = rb"\b(?:WARNING|ERROR|CRITICAL)\b"
# a wanted task's line that tells what happened to it: a try launched, failed, retried,
# lost; such lines are chosen before its routine state changes
_KEY_EVENT = re.compile(rb"(?i)launched|fail|exception|retr|lost|cancel|timeout|killed")
_TAIL = 5

#: a chosen line: its number (from 0) and its bytes
_Hit = tuple[int, bytes]


@dataclass(frozen=True)
class Excerpt:
    """The chosen lines of one file, in file order, with ``[... N lines ...]`` where
    lines were skipped. ``task_lines`` counts the lines that named a wanted task."""

    path: Path
    lines: tuple[str, ...]
    task_lines: int


def task_pattern(ids: Iterable[object], executor: bool = False) -> bytes | None:
    """A pattern for lines naming any of ``ids``: ``task 3``, ``Task 3``, ``executor task 3``,
    and, in executor logs, id lists such as ``tasks: [4, 6]``."""
    alternatives = "|".join(sorted({re.escape(str(i)) for i in ids}))
    if not alternatives:
        return None
    listed = r"\[?(?:[\w'-]+,\s)*" if executor else ""
    return rf"(?i:\btasks?):?\s{listed}(?:{alternatives})\b".encode()


# Parsl's own log format (parsl.log_utils.DEFAULT_FORMAT) starts each line with the epoch,
# date, time, process, thread, logger:line and function; a report shows time, level, text.
_PARSL_LINE = re.compile(
    r"^\d+\.\d+ \d{4}-\d\d-\d\d (\d\d:\d\d:\d\d)\S* \S+ \S+ \S+ \S+ "
    r"(DEBUG|INFO|WARNING|ERROR|CRITICAL): (.*)$"
)


def _decode(line: bytes) -> str:
    text = line.rstrip(b"\r\n").decode("utf-8", "replace")
    parsl_line = _PARSL_LINE.match(text)
    if parsl_line:
        time, level, message = parsl_line.groups()
        return f"{time} {level:<7} {message}"
    return text


def _last_lines(block: bytes, n: int) -> list[bytes]:
    """The last ``n`` lines of ``block``, which ends with a newline."""
    lines: list[bytes] = []
    end = len(block) - 1
    while len(lines) < n and end >= 0:
        start = block.rfind(b"\n", 0, end) + 1
        lines.append(block[start:end])
        end = start - 1
    return lines[::-1]


def excerpt(path: Path, wanted: bytes | None, max_lines: int, tail: int = _TAIL) -> Excerpt:
    """The lines of ``path`` that match ``wanted``, WARNING/ERROR/CRITICAL lines and the
    last ``tail`` lines, at most ``max_lines`` in all.

    The wanted lines come first: those telling of tries and failures, then routine ones,
    DEBUG ones only with room to spare. Warnings/errors and the tail always get a share.
    Of a kind with too many lines the first and the last are kept."""
    parts = [rb"(?P<task>" + wanted + rb")"] if wanted else []
    parts.append(rb"(?P<level>" + _LEVELS + rb")")
    pattern = re.compile(b"|".join(parts))
    half = max(1, max_lines // 2)
    # per kind: the first `half` hits and the last `half` hits
    kinds: dict[str, tuple[list[_Hit], collections.deque[_Hit]]]
    kinds = {k: ([], collections.deque(maxlen=half)) for k in ("key", "task", "debug", "level")}
    task_lines = 0
    last: collections.deque[_Hit] = collections.deque(maxlen=tail)
    total = 0
    with path.open("rb") as handle:
        carry = b""
        while True:
            chunk = handle.read(_CHUNK)
            data = carry + chunk
            if not chunk:
                if not data:
                    break
                data += b"\n"
            cut = data.rfind(b"\n") + 1
            block, carry = data[:cut], data[cut:]
            # a cursor, so that line numbers cost one pass over the block in all
            cursor, number = 0, total
            for match in pattern.finditer(block):
                start = block.rfind(b"\n", 0, match.start()) + 1
                if start < cursor:
                    continue  # a second match on a line already taken
                number += block.count(b"\n", cursor, start)
                end = block.find(b"\n", match.end())
                text = block[start:end]
                cursor = end
                if wanted and match.group("task"):
                    task_lines += 1
                    if _KEY_EVENT.search(text):
                        kind = "key"
                    else:
                        kind = "debug" if b" DEBUG" in text[:160] else "task"
                else:
                    kind = "level"
                first, latest = kinds[kind]
                (first if len(first) < half else latest).append((number, text))
            lines_here = block.count(b"\n")
            block_end = _last_lines(block, tail)
            for offset, text in enumerate(block_end, start=total + lines_here - len(block_end)):
                last.append((offset, text))
            total += lines_here
            if not chunk:
                break
    found: dict[str, list[_Hit]] = {k: [*first, *latest] for k, (first, latest) in kinds.items()}
    found["tail"] = list(last)
    take = dict.fromkeys(found, 0)
    take["tail"] = min(len(found["tail"]), max_lines // 4)
    take["level"] = min(len(found["level"]), max_lines // 4)
    room = max_lines - take["tail"] - take["level"]
    for kind in ("key", "task", "debug", "level", "tail"):
        more = min(room, len(found[kind]) - take[kind])
        take[kind] += more
        room -= more
    chosen: dict[int, bytes] = {}
    for kind, hits in found.items():
        if kind == "tail":
            chosen.update(hits[len(hits) - take[kind] :] if take[kind] else [])
            continue
        head = (take[kind] + 1) // 2
        rest = take[kind] - head
        chosen.update(hits[:head] + (hits[len(hits) - rest :] if rest else []))
    lines: list[str] = []
    previous = -1
    for number in sorted(chosen):
        if number - previous > 1:
            lines.append(f"[... {number - previous - 1} lines ...]")
        lines.append(_decode(chosen[number]))
        previous = number
    if total - 1 > previous:
        lines.append(f"[... {total - 1 - previous} lines ...]")
    return Excerpt(path, tuple(lines), task_lines)


def tail_of(path: Path, lines: int) -> tuple[str, ...]:
    """The last ``lines`` lines of ``path``, reading only the end of the file."""
    with path.open("rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        block = 8192
        data = b""
        while size > 0 and data.count(b"\n") <= lines:
            step = min(block, size)
            size -= step
            handle.seek(size)
            data = handle.read(step) + data
            block *= 2
    kept = data.splitlines()[-lines:]
    skipped = data.count(b"\n") - len(kept) if size == 0 else None
    head = [] if skipped == 0 else ["[... earlier lines ...]"]
    return (*head, *(_decode(line) for line in kept))


def executor_logs(dfk_run_dir: Path) -> dict[str, list[Path]]:
    """Executor logs under one DFK run directory (``runinfo/000``), by kind."""
    found: dict[str, list[Path]] = {"interchange": [], "manager": [], "worker": []}
    for path in sorted(dfk_run_dir.glob("*/interchange.log")):
        found["interchange"].append(path)
    for path in sorted(dfk_run_dir.glob("*/block-*/*/manager.log")):
        found["manager"].append(path)
    for path in sorted(dfk_run_dir.glob("*/block-*/*/worker_*.log")):
        found["worker"].append(path)
    return found


def submit_outputs(dfk_run_dir: Path) -> list[tuple[Path, str | None]]:
    """Each submit script's stderr/stdout file, with its exit code where the provider
    wrote one (``.ec``)."""
    found: list[tuple[Path, str | None]] = []
    folder = dfk_run_dir / "submit_scripts"
    for path in sorted(folder.glob("*.err")) + sorted(folder.glob("*.out")):
        code_file = path.with_suffix(".ec")
        code = code_file.read_text().strip() if code_file.is_file() else None
        found.append((path, code))
    return found


def relative(path: Path, bases: Sequence[Path]) -> str:
    """``path`` relative to the first base that holds it."""
    for base in bases:
        try:
            return str(path.relative_to(base))
        except ValueError:
            continue
    return str(path)
