"""Finding a run's log files and choosing the lines of each that explain a failure.

Files are scanned in large binary chunks, with patterns that begin with plain text
so the regex engine can skip between candidates: a 100 MB ``parsl.log`` costs a
fraction of a second, and memory stays bounded (only candidate lines are kept).
"""

from __future__ import annotations

import bisect
import collections
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 4 << 20
# plain words, the fastest search; the word boundaries are checked by hand
_LEVEL_PATTERNS = tuple(re.compile(word) for word in (b"WARNING", b"ERROR", b"CRITICAL"))
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
    and, in executor logs, id lists such as ``tasks: [4, 6]``.

    It begins at the ``ask`` of ``task``: :func:`excerpt` checks the ``t``/``T`` before it.
    """
    alternatives = "|".join(sorted({re.escape(str(i)) for i in ids}))
    if not alternatives:
        return None
    listed = r"\[?(?:[\w'-]+,[ \t])*" if executor else ""
    return rf"asks?:?[ \t]{listed}(?:{alternatives})\b".encode()


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


def _word_byte(data: bytes, index: int) -> bool:
    """Whether ``data[index]`` is a letter, digit or underscore (False before the start)."""
    if index < 0:
        return False
    byte = data[index]
    return byte == 95 or 48 <= byte <= 57 or 65 <= byte <= 90 or 97 <= byte <= 122


def _last_lines(data: bytes, end: int, n: int) -> list[bytes]:
    """The last ``n`` lines of ``data[:end]``, which ends with a newline."""
    lines: list[bytes] = []
    stop = end - 1
    while len(lines) < n and stop >= 0:
        start = data.rfind(b"\n", 0, stop) + 1
        lines.append(data[start:stop])
        stop = start - 1
    return lines[::-1]


def _hit_starts(data: bytes, end: int, wanted: re.Pattern[bytes] | None) -> dict[int, str]:
    """The start of each candidate line in ``data[:end]``: "task" or "level"."""
    starts: dict[int, str] = {}
    if wanted is not None:
        for match in wanted.finditer(data, 0, end):
            at = match.start()
            if at == 0 or data[at - 1] not in b"tT" or _word_byte(data, at - 2):
                continue
            starts.setdefault(data.rfind(b"\n", 0, at) + 1, "task")
    for level in _LEVEL_PATTERNS:
        for match in level.finditer(data, 0, end):
            if not _word_byte(data, match.start() - 1) and not _word_byte(data, match.end()):
                starts.setdefault(data.rfind(b"\n", 0, match.start()) + 1, "level")
    return starts


def _ranked(found: dict[str, list[_Hit]], max_lines: int) -> list[_Hit]:
    """Candidate lines, most wanted first. Of each kind the first and the last lines come
    before its middle; warnings/errors and the tail get a share ahead of routine lines."""

    def ends_first(hits: list[_Hit]) -> list[_Hit]:
        order = []
        low, high = 0, len(hits) - 1
        while low <= high:
            order.append(hits[low])
            if high != low:
                order.append(hits[high])
            low, high = low + 1, high - 1
        return order

    share = max(1, max_lines // 4)
    level, tail = ends_first(found["level"]), found["tail"][::-1]
    return [
        *ends_first(found["key"]),
        *level[:share],
        *tail[:share],
        *ends_first(found["task"]),
        *ends_first(found["debug"]),
        *level[share:],
        *tail[share:],
    ]


def _select(ranked: list[_Hit], total: int, max_lines: int) -> dict[int, bytes]:
    """Take lines in rank order while the excerpt, ``[... N lines ...]`` markers included,
    stays within ``max_lines``."""
    chosen: dict[int, bytes] = {}
    numbers: list[int] = []
    shown = 1 if total else 0  # one marker for the whole skipped file

    def gap(low: int, high: int) -> int:
        return 1 if high - low > 1 else 0

    for number, text in ranked:
        if number in chosen:
            continue
        at = bisect.bisect(numbers, number)
        before = numbers[at - 1] if at else -1
        after = numbers[at] if at < len(numbers) else total
        cost = 1 + gap(before, number) + gap(number, after) - gap(before, after)
        if shown + cost > max_lines:
            continue
        numbers.insert(at, number)
        chosen[number] = text
        shown += cost
    return chosen


def _skipped(count: int) -> str:
    return f"[... {count} line{'s' if count != 1 else ''} ...]"


def excerpt(
    path: Path, wanted: bytes | None, max_lines: int, tail: int = _TAIL, start: int = 0
) -> Excerpt:
    """At most ``max_lines`` lines of ``path`` (``[... N lines ...]`` markers included):
    the lines that match ``wanted`` (a :func:`task_pattern`), WARNING/ERROR/CRITICAL lines
    and the last ``tail`` lines; of the file from byte ``start`` on, where given.

    The wanted lines come first: those telling of tries and failures, then routine ones,
    DEBUG ones only with room to spare. Warnings/errors and the tail always get a share.
    Of a kind with too many lines the first and the last are kept.
    """
    task_re = re.compile(wanted) if wanted else None
    half = max(1, max_lines // 2)
    # per kind: the first `half` hits and the last `half` hits
    kinds: dict[str, tuple[list[_Hit], collections.deque[_Hit]]]
    kinds = {k: ([], collections.deque(maxlen=half)) for k in ("key", "task", "debug", "level")}
    task_lines = 0
    last: collections.deque[_Hit] = collections.deque(maxlen=tail)
    total = 0
    with path.open("rb") as handle:
        handle.seek(start)
        while True:
            data = handle.read(_CHUNK)
            if not data:
                break
            cut = data.rfind(b"\n") + 1
            if len(data) < _CHUNK:  # the end of the file
                if not data.endswith(b"\n"):
                    data += b"\n"
                cut = len(data)
            elif cut == 0:  # a line longer than a chunk: take it in pieces
                cut = len(data)
            else:
                # read the unfinished last line again with the next chunk, rather than
                # gluing chunks together (a copy of every chunk)
                handle.seek(cut - len(data), 1)
            cursor, number = 0, total
            for start, kind in sorted(_hit_starts(data, cut, task_re).items()):
                number += data.count(b"\n", cursor, start)
                cursor = start
                text = data[start : data.find(b"\n", start)]
                if kind == "task":
                    task_lines += 1
                    if _KEY_EVENT.search(text):
                        kind = "key"
                    elif b" DEBUG" in text[:160]:
                        kind = "debug"
                first, latest = kinds[kind]
                (first if len(first) < half else latest).append((number, text))
            # the newlines after the last hit: each newline of the chunk is counted once
            number += data.count(b"\n", cursor, cut)
            ending = _last_lines(data, cut, tail)
            for offset, text in enumerate(ending, start=number - len(ending)):
                last.append((offset, text))
            total = number
    found: dict[str, list[_Hit]] = {k: [*first, *latest] for k, (first, latest) in kinds.items()}
    found["tail"] = list(last)
    chosen = _select(_ranked(found, max_lines), total, max_lines)
    lines: list[str] = []
    previous = -1
    for number in sorted(chosen):
        if number - previous > 1:
            lines.append(_skipped(number - previous - 1))
        lines.append(_decode(chosen[number]))
        previous = number
    if total - 1 > previous:
        lines.append(_skipped(total - 1 - previous))
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
    wrote one (``.ec``). LocalProvider names them ``.err``/``.out``; the batch
    schedulers' providers (Slurm, PBS, ...) ``.stderr``/``.stdout``."""
    found: list[tuple[Path, str | None]] = []
    folder = dfk_run_dir / "submit_scripts"
    errors = sorted([*folder.glob("*.err"), *folder.glob("*.stderr")])
    outputs = sorted([*folder.glob("*.out"), *folder.glob("*.stdout")])
    for path in errors + outputs:
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
