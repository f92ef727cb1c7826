"""Finding a run's log files and choosing the lines of each that explain a failure.

Files are scanned in large binary chunks, with patterns that begin with plain text
so the regex engine can skip between candidates: a 100 MB ``parsl.log`` costs a
fraction of a second, and memory stays bounded whatever a file holds: only candidate
lines are kept, each cut to ``MAX_LINE_BYTES``, and a carriage return ends a line as a
newline does (a progress bar that only returns to the start of its line is many lines).
"""

from __future__ import annotations

import bisect
import collections
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_parslflow.report.jsonlog import globs, readable

_CHUNK = 4 << 20
# plain words, the fastest search; the word boundaries are checked by hand
_LEVEL_PATTERNS = tuple(re.compile(word) for word in (b"WARNING", b"ERROR", b"CRITICAL"))
# a wanted task's line that tells what happened to it: a try launched, failed, retried,
# lost; such lines are chosen before its routine state changes
_KEY_EVENT = re.compile(rb"(?i)launched|fail|exception|retr|lost|cancel|timeout|killed")
_TAIL = 5
#: bytes of one excerpt line; the rest is cut, with a marker saying how much
MAX_LINE_BYTES = 2000
#: bytes read from a file's end for :func:`tail_of`
_TAIL_WINDOW = 256 << 10

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


def clip(text: str, limit: int, what: str = "bytes") -> str:
    """``text`` cut to ``limit`` bytes of UTF-8, with a visible marker of what was cut."""
    if len(text) <= limit // 4:  # no character takes more than 4 bytes
        return text
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    head = data[:limit].decode("utf-8", "ignore")
    return f"{head} [... {len(data) - limit:,} more {what} cut]"


def _clip_line(data: bytes, start: int, end: int, continues: bool = False) -> bytes:
    """The line ``data[start:end]``, cut to ``MAX_LINE_BYTES`` with a marker; ``continues``
    where the line goes on past ``end`` (a line longer than a chunk)."""
    if end - start <= MAX_LINE_BYTES and not continues:
        return data[start:end]
    shown = data[start : min(end, start + MAX_LINE_BYTES)]
    if continues:
        return shown + b" [... rest of an overlong line cut]"
    if end - start <= MAX_LINE_BYTES:
        return shown
    return shown + b" [... %s more bytes cut]" % f"{end - start - MAX_LINE_BYTES:,}".encode()


def _decode(line: bytes) -> str:
    text = line.rstrip(b" \r\n").decode("utf-8", "replace")
    # -- Parsl's JSON logs, shown as readable lines (report/jsonlog.py) --
    from_json = readable(text)
    if from_json is not None:
        return from_json
    # --
    parsl_line = _PARSL_LINE.match(text)
    if parsl_line:
        time, level, message = parsl_line.groups()
        text = f"{time} {level:<7} {message}"
    # invalid bytes decode to three-byte characters: the line is bounded again
    return clip(text, MAX_LINE_BYTES + 64)


def _word_byte(data: bytes, index: int) -> bool:
    """Whether ``data[index]`` is a letter, digit or underscore (False before the start)."""
    if index < 0:
        return False
    byte = data[index]
    return byte == 95 or 48 <= byte <= 57 or 65 <= byte <= 90 or 97 <= byte <= 122


def _last_lines(data: bytes, end: int, n: int, floor: int = 0) -> list[bytes]:
    """The last ``n`` lines of ``data[floor:end]`` (which ends with a newline), each cut
    to ``MAX_LINE_BYTES``; a line that began before ``floor`` is not one of them."""
    lines: list[bytes] = []
    stop = end - 1
    while len(lines) < n and stop >= floor:
        start = data.rfind(b"\n", 0, stop) + 1
        if start < floor:
            break
        lines.append(_clip_line(data, start, stop))
        stop = start - 1
    return lines[::-1]


def _line_starts(data: bytes, positions: Iterable[int]) -> Iterator[int]:
    """The start of the line holding each of ``positions`` (ascending), in one pass:
    thousands of matches on one long line look back over it once, not once each."""
    line_start, scanned = 0, 0
    for at in positions:
        found = data.rfind(b"\n", scanned, at)
        if found >= 0:
            line_start = found + 1
        scanned = at
        yield line_start


#: candidates taken of one pattern in one chunk, from its start and again from its end:
#: a chunk of nothing but matching lines costs a few thousand steps, not a million
_CHUNK_CANDIDATES = 500


def _bounded(
    pattern: re.Pattern[bytes], data: bytes, floor: int, end: int, accept: Callable[[int], bool]
) -> list[int]:
    """Where ``pattern`` matches in ``data[floor:end]`` (and ``accept`` agrees), in order:
    all of them, or where there are more, the first and the last ``_CHUNK_CANDIDATES``."""
    found: list[int] = []
    matches = pattern.finditer(data, floor, end)
    for match in matches:
        if accept(match.start()):
            found.append(match.start())
            if len(found) >= _CHUNK_CANDIDATES:
                break
    else:
        return found
    # the rest is run through at C speed, keeping the last few to check by hand
    last = collections.deque(matches, maxlen=2 * _CHUNK_CANDIDATES)
    tail = [m.start() for m in reversed(last) if accept(m.start())][:_CHUNK_CANDIDATES]
    return found + tail[::-1]


def _hit_starts(
    data: bytes, end: int, wanted: re.Pattern[bytes] | None, floor: int = 0
) -> dict[int, str]:
    """The start of each candidate line in ``data[floor:end]``: "task" or "level"."""
    starts: dict[int, str] = {}
    if wanted is not None:

        def named(at: int) -> bool:
            return at > 0 and data[at - 1] in b"tT" and not _word_byte(data, at - 2)

        for start in _line_starts(data, _bounded(wanted, data, floor, end, named)):
            starts.setdefault(start, "task")
    for level in _LEVEL_PATTERNS:
        size = len(level.pattern)

        def word(at: int, size: int = size) -> bool:
            return not _word_byte(data, at - 1) and not _word_byte(data, at + size)

        for start in _line_starts(data, _bounded(level, data, floor, end, word)):
            starts.setdefault(start, "level")
    if floor:  # the rest of a line that began in an earlier chunk was judged by its head
        starts = {start: kind for start, kind in starts.items() if start >= floor}
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
    # the previous chunk ended inside a line longer than a chunk: this chunk's text up to
    # its first newline is the rest of that line
    continuing = False
    with path.open("rb") as handle:
        handle.seek(start)
        while True:
            data = handle.read(_CHUNK)
            if not data:
                break
            if b"\r" in data:
                # same length, so offsets in the file stay offsets in the chunk; the space
                # a CRLF leaves at a line's end is stripped when the line is shown
                data = data.replace(b"\r\n", b" \n").replace(b"\r", b"\n")
            cut = data.rfind(b"\n") + 1
            long_piece = False
            if len(data) < _CHUNK:  # the end of the file
                if not data.endswith(b"\n"):
                    data += b"\n"
                cut = len(data)
            elif cut == 0:  # a line longer than a chunk: take it in pieces
                cut = len(data)
                long_piece = True
            else:
                # read the unfinished last line again with the next chunk, rather than
                # gluing chunks together (a copy of every chunk)
                handle.seek(cut - len(data), 1)
            floor = 0
            if continuing:
                floor = data.find(b"\n", 0, cut) + 1 if not long_piece else cut
            cursor, number = floor, total
            if continuing and not long_piece:
                number += 1  # the newline that ends the overlong line
            for start, kind in sorted(_hit_starts(data, cut, task_re, floor).items()):
                number += data.count(b"\n", cursor, start)
                cursor = start
                end = data.find(b"\n", start, cut)
                text = _clip_line(data, start, cut if end < 0 else end, continues=end < 0)
                if kind == "task":
                    task_lines += 1
                    if _KEY_EVENT.search(text):
                        kind = "key"
                    elif b" DEBUG" in text[:160] or b'"levelname": "DEBUG"' in text:
                        kind = "debug"
                first, latest = kinds[kind]
                (first if len(first) < half else latest).append((number, text))
            # the newlines after the last hit: each newline of the chunk is counted once
            number += data.count(b"\n", cursor, cut)
            if long_piece:
                if not continuing:  # the head of the overlong line stands for all of it
                    last.append((number, _clip_line(data, 0, cut, continues=True)))
            else:
                ending = _last_lines(data, cut, tail, floor)
                for offset, text in enumerate(ending, start=number - len(ending)):
                    last.append((offset, text))
            continuing = long_piece
            total = number
            del data
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
    """The last ``lines`` lines of ``path``, reading at most its last 256 KiB; a carriage
    return ends a line as a newline does, and each line is cut to ``MAX_LINE_BYTES``."""
    with path.open("rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        start = max(0, size - _TAIL_WINDOW)
        handle.seek(start)
        data = handle.read(size - start)
    pieces = re.split(rb"\r\n|\r|\n", data)
    if pieces and not pieces[-1]:
        pieces.pop()
    kept = pieces[-lines:] if lines > 0 else []
    whole = start == 0 or len(pieces) > len(kept)  # the first kept line began in the window
    shown = [_decode(_clip_line(line, 0, len(line))) for line in kept]
    if kept and not whole:
        cut = len(kept[0])
        shown[0] = "[... start of an overlong line cut] " + _decode(
            kept[0][max(0, cut - MAX_LINE_BYTES) :]
        )
    elif len(pieces) > len(kept) or start > 0:
        shown.insert(0, "[... earlier lines ...]")
    return tuple(shown)


def executor_logs(dfk_run_dir: Path) -> dict[str, list[Path]]:
    """Executor logs under one DFK run directory (``runinfo/000``), by kind."""
    found: dict[str, list[Path]] = {"interchange": [], "manager": [], "worker": []}
    # each pattern with its JSON twin (report/jsonlog.py): interchange.jsonlog, ...
    for kind, pattern in (
        ("interchange", "*/interchange.log"),
        ("manager", "*/block-*/*/manager.log"),
        ("worker", "*/block-*/*/worker_*.log"),
    ):
        for each in globs(pattern):
            found[kind] += sorted(dfk_run_dir.glob(each))
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
