"""Failure-report benchmark for pytest-parslflow: excerpt cost on big logs and report size.

Run from the repository root::

    cd /work/main && .venv/bin/python benchmarks/bench_report.py

These machines are shared and noisy: nothing here asserts on time. The script prints one
table of figures, each with its target and whether it was met.

Part 1, excerpt cost on big logs. A synthetic run directory is written (deterministically,
in large blocks) to a temporary directory::

    runinfo/000/parsl.log                                 ~100 MB, Parsl's own line format
    runinfo/000/htex_local/interchange.log                small
    runinfo/000/htex_local/block-0/abc123/manager.log     small
    runinfo/000/htex_local/block-0/abc123/worker_0.log    ~10 MB, never ran the failed task
    runinfo/000/htex_local/block-0/abc123/worker_1.log    ~10 MB, ran executor tasks 4 and 6

``parsl.log`` holds the life of many tasks (submitted, state changes, launch with an executor
id, stdout/stderr redirection) in ``parsl.log_utils.DEFAULT_FORMAT``, with a sprinkling of
WARNING lines; the lines of the failed task (Parsl task 3, executor ids 4 and 6, two tries)
are planted at its beginning, middle and end. The excerpts are then chosen exactly as the
failure report does it: ``report.excerpts(run, tasks, 40, [])`` with a real
``ParslTestRun`` whose ``dfks`` holds a stub with the run directory, and real ``ParslTask``
records (task 3 failed plus 999 ``exec_done`` tasks).

Figures: wall time (best and median of 5), extra peak memory (``tracemalloc`` peak of one
call; and in a fresh subprocess, so writing the files does not count, the ``ru_maxrss``
growth across one call and, on Linux, the peak RSS over the RSS before the call with the
peak reset through ``/proc/self/clear_refs`` first: ``ru_maxrss`` is a high-water mark that
start-up, or the parent's size at fork, may already have set above what the call needs),
and the time to merely read every file once in 4 MB chunks as a floor (the files are in
the page cache for both). The script also checks what was chosen: the ``parsl.log``
excerpt holds the planted lines from the beginning, middle and end, ``worker_0.log`` is not
excerpted, and no excerpt is longer than the bound, counting the chosen log lines and,
separately, every line shown (the ``[... N lines ...]`` gap markers included).

With realistic line lengths (about 180 bytes in Parsl's format, six lines per task) 100 MB
holds about 93,000 tasks' lines, not a million; the table prints the actual counts.

Part 2, report size of a real failing test: a temporary suite with one
``@pytest.mark.parsl`` test submitting 1,000 trivial ``python_app`` calls on the thread
executor, 3 of which raise, run with ``python -m pytest -p parslflow`` in a subprocess
(own process group, killed if it overruns). The lines of its ``Captured stdout parsl``
section are counted and compared with the bound

    task summary <= 3 + runs + min(failed, 10) * (1 + tries + 2 + 2 * 3)
    each excerpt <= --parslflow-log-lines + 1 heading line

once with the default ``--parslflow-log-lines`` (40) and once with 10.

Part 3, hostile logs (``--hostile-only`` runs just this part): the report of a failed
bash app whose stdout is one 500 MB line without a newline and whose stderr is a progress
bar of 200,000 carriage-return states, of a test whose ``parsl.log`` holds one 500 MB
line, of one whose ``parsl.log`` holds 60 WARNING lines of 1 MB each, and of one whose
``parsl.log`` is 100 MB of ERROR lines that all name the failed task: build time
(best of 3), extra peak memory of one build (tracemalloc; target <= 50 MB) and the
report's size in bytes (target <= the whole-report cap).
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from _common import pytest_command, run_session

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pytest_parslflow.lifecycle import ParslTestRun  # noqa: E402
from pytest_parslflow.options import DEFAULT_LOG_LINES  # noqa: E402
from pytest_parslflow.report import failure as report  # noqa: E402
from pytest_parslflow.settings import ParslSettings  # noqa: E402
from pytest_parslflow.tasks import ParslTask  # noqa: E402

MB = 1 << 20
PARSL_LOG_BYTES = 100 * MB
WORKER_LOG_BYTES = 10 * MB
READ_CHUNK = 4 * MB
REPEATS = 5
TARGET_EXCERPT_S = 0.3
TARGET_EXTRA_MB = 50.0
PYTEST_TIMEOUT_S = 600.0
REPORT_TASKS = 1000
REPORT_FAILING = (17, 503, 988)

FAILED_ID = 3
FAILED_EXECUTOR_IDS = (4, 6)
#: filler ids start above every id the failed task uses, so only planted lines match
FIRST_FILLER_ID = 10
#: one WARNING line per this many filler tasks
WARNING_EVERY = 500
EPOCH = 1718040000.0
LABEL = "htex_local"
POOL = "abc123"
#: the line an excerpt shows where it skipped lines
GAP = re.compile(r"\[\.\.\. \d+ lines \.\.\.\]")


# --------------------------------------------------------------------------- log writing


def _parsl_prefix(
    t: float, func: str, where: str, level: str = "INFO", thread: str = "MainThread"
) -> str:
    """The start of a line in Parsl's DEFAULT_FORMAT, up to and including ``LEVEL: ``."""
    clock = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))
    return (
        f"{t:.6f} {clock} MainProcess-41235 {thread}-140245213472576 parsl.{where} {func} {level}: "
    )


def _task_lines(n: int, t: float) -> str:
    """The parsl.log lines of one ordinary task (``n`` is its id, ``n + 7`` its executor id)."""
    launch = "Task-Launch_0"
    return (
        _parsl_prefix(t, "submit", "dataflow.dflow:1053")
        + f"Task {n} submitted for App work, not waiting on any dependency\n"
        + _parsl_prefix(t, "_update_task_state", "dataflow.dflow:565")
        + f"Task {n} changing state from unsched to pending\n"
        + _parsl_prefix(t, "_update_task_state", "dataflow.dflow:565", thread=launch)
        + f"Task {n} changing state from pending to launched\n"
        + _parsl_prefix(t, "launch_task", "dataflow.dflow:739", thread=launch)
        + f"Parsl task {n} try 0 launched on executor {LABEL} with executor id {n + 7}\n"
        + _parsl_prefix(t, "_log_std_stream", "dataflow.dflow:1243", thread=launch)
        + f"Standard out for task {n} will not be redirected.\n"
        + _parsl_prefix(t + 0.01, "_update_task_state", "dataflow.dflow:565", thread="Thread-3")
        + f"Task {n} changing state from launched to exec_done\n"
    )


def _warning_line(n: int, t: float) -> str:
    return (
        _parsl_prefix(t, "poll", "executors.status_handling:212", "WARNING", "FlowControl")
        + f"Executor {LABEL} has {n % 97} outstanding tasks and 0 connected managers\n"
    )


def _planted(part: str, t: float) -> str:
    """The failed task's own parsl.log lines: ``begin``, ``middle`` or ``end``."""
    a, b = FAILED_EXECUTOR_IDS
    launch = "Task-Launch_0"
    if part == "begin":
        return (
            _parsl_prefix(t, "submit", "dataflow.dflow:1053")
            + f"Task {FAILED_ID} submitted for App f, not waiting on any dependency\n"
            + _parsl_prefix(t, "launch_task", "dataflow.dflow:739", thread=launch)
            + f"Parsl task {FAILED_ID} try 0 launched on executor {LABEL} with executor id {a}\n"
        )
    if part == "middle":
        return (
            _parsl_prefix(t, "handle_exec_update", "dataflow.dflow:351", thread="Thread-3")
            + f"Task {FAILED_ID} try 0 failed with exception of type ValueError\n"
            + _parsl_prefix(t, "launch_task", "dataflow.dflow:739", thread=launch)
            + f"Parsl task {FAILED_ID} try 1 launched on executor {LABEL} with executor id {b}\n"
        )
    return (
        _parsl_prefix(t, "handle_exec_update", "dataflow.dflow:351", thread="Thread-3")
        + f"Task {FAILED_ID} try 1 failed with exception of type ValueError\n"
        + _parsl_prefix(t, "handle_exec_update", "dataflow.dflow:404", "ERROR", "Thread-3")
        + f"Task {FAILED_ID} failed after 1 retry attempts\n"
    )


#: where the planted lines go, as a fraction of the file, and a marker text found in each
PLANTED = (
    (0.0005, "begin", f"Parsl task {FAILED_ID} try 0 launched"),
    (0.5, "middle", f"Parsl task {FAILED_ID} try 1 launched"),
    (0.995, "end", f"Task {FAILED_ID} failed after 1 retry attempts"),
)


@dataclass
class Written:
    path: Path
    size: int
    lines: int
    tasks: int


def write_parsl_log(path: Path, target: int) -> Written:
    """About ``target`` bytes of task lines with the planted ones at their fractions."""
    size = lines = 0
    task = FIRST_FILLER_ID
    pending = list(PLANTED)
    with path.open("w", encoding="ascii", newline="\n") as out:
        while size < target or pending:
            parts: list[str] = []
            for _ in range(500):
                t = EPOCH + task * 0.002
                parts.append(_task_lines(task, t))
                if task % WARNING_EVERY == 0:
                    parts.append(_warning_line(task, t))
                task += 1
            if pending and size >= pending[0][0] * target:
                parts.insert(len(parts) // 2, _planted(pending.pop(0)[1], EPOCH + task * 0.002))
            text = "".join(parts)
            out.write(text)
            size += len(text)
            lines += text.count("\n")
    return Written(path, size, lines, task - FIRST_FILLER_ID + 1)


def write_worker_log(path: Path, target: int, first: int, with_failed: bool) -> Written:
    """``Received``/``Completed``/``All processing finished`` lines of executor tasks
    ``first``, ``first + 2``, ...; the failed executor ids near the start and the middle
    when ``with_failed``."""
    size = lines = 0
    tid = first
    planted = list(FAILED_EXECUTOR_IDS) if with_failed else []
    where = "executors.high_throughput.process_worker_pool"
    thread = "MainThread"
    with path.open("w", encoding="ascii", newline="\n") as out:
        while size < target:
            ids: list[int] = []
            for _ in range(2000):
                ids.append(tid)
                tid += 2
            if planted and (size == 0 or size >= target // 2):
                ids.insert(len(ids) // 2, planted.pop(0))
            parts = []
            for i in ids:
                t = EPOCH + i * 0.002
                parts.append(
                    _parsl_prefix(t, "worker", f"{where}:775", thread=thread)
                    + f"Received executor task {i}\n"
                    + _parsl_prefix(t, "execute_task", f"{where}:718", "DEBUG", thread)
                    + "executing task\n"
                    + _parsl_prefix(t, "worker", f"{where}:809", thread=thread)
                    + f"Completed executor task {i}\n"
                    + _parsl_prefix(t, "worker", f"{where}:821", thread=thread)
                    + f"All processing finished for executor task {i}\n"
                )
            text = "".join(parts)
            out.write(text)
            size += len(text)
            lines += text.count("\n")
    return Written(path, size, lines, 0)


def write_small_logs(pool: Path, interchange: Path) -> None:
    where = "executors.high_throughput"
    a, b = FAILED_EXECUTOR_IDS
    lines = []
    for i in range(1, 400):
        t = EPOCH + i
        tasks = [i * 3 + 100, i * 3 + 101] + ([a] if i == 3 else [b] if i == 200 else [])
        lines.append(
            _parsl_prefix(
                t, "pull_tasks", f"{where}.process_worker_pool:393", "DEBUG", "Task-Puller"
            )
            + f"Got executor tasks: {tasks}, cumulative count of tasks: {i * 3}\n"
        )
    (pool / "manager.log").write_text("".join(lines))
    lines = []
    for i in range(1, 400):
        t = EPOCH + i
        lines.append(
            _parsl_prefix(t, "process_tasks_to_send", f"{where}.interchange:362", "DEBUG")
            + f"Sent tasks: {[i * 3 + 100, i * 3 + 101]} to manager b'{POOL}'\n"
        )
        if i == 150:
            lines.append(
                _parsl_prefix(t, "expire_bad_managers", f"{where}.interchange:588", "WARNING")
                + f"Too many heartbeats missed for manager b'{POOL}' - removing manager\n"
            )
    interchange.write_text("".join(lines))


@dataclass
class Layout:
    base: Path
    dfk_dir: Path
    parsl_log: Written
    workers: tuple[Written, Written]

    def files(self) -> list[Path]:
        return sorted(p for p in self.dfk_dir.rglob("*") if p.is_file())


def make_run(base: Path, parsl_bytes: int, worker_bytes: int) -> Layout:
    dfk_dir = base / "runinfo" / "000"
    pool = dfk_dir / LABEL / "block-0" / POOL
    pool.mkdir(parents=True)
    parsl_log = write_parsl_log(dfk_dir / "parsl.log", parsl_bytes)
    worker_0 = write_worker_log(pool / "worker_0.log", worker_bytes, 11, with_failed=False)
    worker_1 = write_worker_log(pool / "worker_1.log", worker_bytes, 12, with_failed=True)
    write_small_logs(pool, dfk_dir / LABEL / "interchange.log")
    return Layout(base, dfk_dir, parsl_log, (worker_0, worker_1))


# --------------------------------------------------------------------------- report inputs


def fake_run(base: Path) -> tuple[ParslTestRun, list[ParslTask]]:
    """A real ``ParslTestRun`` whose one DFK is a stub naming its run directory, and real
    task records: task 3 failed twice on executor ids 4 and 6, the rest ``exec_done``."""
    run = ParslTestRun(settings=ParslSettings(executor="htex"), base=base)
    run.dfks.append(cast(Any, SimpleNamespace(run_dir=str(base / "runinfo" / "000"))))
    frame = traceback.FrameSummary("workflow.py", 12, "f", line="raise ValueError(f'boom {x}')")
    tasks = [
        ParslTask(
            id=FAILED_ID,
            run=0,
            app="f",
            state="failed",
            tries=2,
            exceptions=(ValueError("boom 3"), ValueError("boom 3")),
            from_memo=False,
            executor=LABEL,
            executor_ids=FAILED_EXECUTOR_IDS,
            depends_on=(),
            root=None,
            submitted=None,
            returned=None,
            try_launched=(),
            frames=((frame,), (frame,)),
        )
    ]
    tasks += [
        ParslTask(
            id=n,
            run=0,
            app="work",
            state="exec_done",
            tries=1,
            exceptions=(),
            from_memo=False,
            executor=LABEL,
            executor_ids=(n + 7,),
            depends_on=(),
            root=None,
            submitted=None,
            returned=None,
            try_launched=(),
        )
        for n in range(FIRST_FILLER_ID, FIRST_FILLER_ID + 999)
    ]
    return run, tasks


def run_excerpts(base: Path, max_lines: int = DEFAULT_LOG_LINES) -> list[str]:
    run, tasks = fake_run(base)
    return report.excerpts(run, tasks, max_lines, [])


def split_sections(lines: Sequence[str]) -> dict[str, list[str]]:
    """Report lines by heading (``---- parsl: <path> (...) ----``), headings excluded."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines:
        heading = re.fullmatch(r"-+ parsl: (.*?) -+", line)
        if heading:
            current = sections.setdefault(heading.group(1), [])
        elif current is not None:
            current.append(line)
    return sections


def _proc_status_mb(*keys: str) -> dict[str, float]:
    found: dict[str, float] = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in keys:
                found[key] = int(value.split()[0]) / 1024
    return found


def rss_child(base: Path) -> None:
    """In a fresh interpreter, the memory one ``excerpts`` call adds, in MB: the growth of
    ``ru_maxrss``, and (Linux) the peak RSS over the RSS before the call, with the peak
    reset first (``/proc/self/clear_refs``), since ``ru_maxrss`` may already hold a peak
    from start-up that the call stays under."""
    run, tasks = fake_run(base)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_before: float | None = None
    hwm: float | None = None
    try:
        rss_before = _proc_status_mb("VmRSS")["VmRSS"]
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
    except OSError:
        rss_before = None
    report.excerpts(run, tasks, DEFAULT_LOG_LINES, [])
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if rss_before is not None:
        hwm = _proc_status_mb("VmHWM")["VmHWM"] - rss_before
    result = {
        "before_mb": before / 1024,
        "delta_mb": (after - before) / 1024,
        "rss_before_mb": rss_before,
        "hwm_mb": hwm,
    }
    print(json.dumps(result))


# --------------------------------------------------------------------------- measuring


def timed(fn: Callable[[], object], repeats: int = REPEATS) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def read_all(paths: Sequence[Path]) -> int:
    total = 0
    for path in paths:
        with path.open("rb") as handle:
            while chunk := handle.read(READ_CHUNK):
                total += len(chunk)
    return total


@dataclass(frozen=True)
class Row:
    figure: str
    value: str
    target: str = ""
    met: str = ""


def yes(ok: bool) -> str:
    return "yes" if ok else "NO"


def bench_excerpts(tmp: Path) -> list[Row]:
    base = tmp / "bigrun"
    start = time.perf_counter()
    layout = make_run(base, PARSL_LOG_BYTES, WORKER_LOG_BYTES)
    written_s = time.perf_counter() - start
    files = layout.files()
    total = sum(p.stat().st_size for p in files)
    rows = [
        Row(
            "synthetic run dir: files / total size",
            f"{len(files)} files / {total / MB:.1f} MB (written in {written_s:.1f} s)",
        ),
        Row(
            "  parsl.log: size / lines / tasks",
            f"{layout.parsl_log.size / MB:.1f} MB / {layout.parsl_log.lines:,} lines / "
            f"{layout.parsl_log.tasks:,} tasks",
        ),
        Row(
            "  worker_0.log + worker_1.log",
            " + ".join(f"{w.size / MB:.1f} MB ({w.lines:,} lines)" for w in layout.workers),
        ),
    ]

    # First, while this process is still small: a child started by fork begins with its
    # parent's peak RSS in ru_maxrss (Linux carries it over exec).
    child = subprocess.run(
        [sys.executable, __file__, "--rss-child", str(base)],
        capture_output=True,
        text=True,
        timeout=PYTEST_TIMEOUT_S,
        check=True,
    )
    rss = json.loads(child.stdout)
    read_all(files)  # warm the page cache for both figures alike
    floor = timed(lambda: read_all(files))
    excerpt_times = timed(lambda: run_excerpts(base))
    best, median = min(excerpt_times), statistics.median(excerpt_times)
    floor_best, floor_median = min(floor), statistics.median(floor)
    rows += [
        Row(
            "read every file once, 4 MB chunks (floor)",
            f"best {floor_best:.3f} s, median {floor_median:.3f} s",
        ),
        Row(
            "report.excerpts(run, tasks, 40, [])",
            f"best {best:.3f} s, median {median:.3f} s",
            f"<= {TARGET_EXCERPT_S} s",
            yes(median <= TARGET_EXCERPT_S),
        ),
        Row("  ratio excerpt / read floor (medians)", f"{median / floor_median:.1f}x"),
    ]

    tracemalloc.start()
    lines = run_excerpts(base)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rows.append(
        Row(
            "extra peak memory, tracemalloc",
            f"{peak / MB:.1f} MB",
            f"<= {TARGET_EXTRA_MB:.0f} MB",
            yes(peak / MB <= TARGET_EXTRA_MB),
        )
    )
    rows.append(
        Row(
            "extra peak memory, ru_maxrss growth (fresh process)",
            f"{rss['delta_mb']:.1f} MB (ru_maxrss {rss['before_mb']:.0f} MB before the call)",
            f"<= {TARGET_EXTRA_MB:.0f} MB",
            yes(rss["delta_mb"] <= TARGET_EXTRA_MB),
        )
    )
    if rss["hwm_mb"] is not None:
        rows.append(
            Row(
                "extra peak memory, VmHWM (reset) - VmRSS (fresh process)",
                f"{rss['hwm_mb']:.1f} MB (VmRSS {rss['rss_before_mb']:.0f} MB before the call)",
                f"<= {TARGET_EXTRA_MB:.0f} MB",
                yes(rss["hwm_mb"] <= TARGET_EXTRA_MB),
            )
        )

    sections = split_sections(lines)
    parsl_text = next(
        (v for k, v in sections.items() if Path(k.split(" ")[0]).name == "parsl.log"), []
    )
    found = [part for _, part, marker in PLANTED if any(marker in line for line in parsl_text)]
    rows.append(
        Row(
            "parsl.log excerpt holds task 3's lines from",
            ", ".join(found) or "none",
            "begin, middle, end",
            yes(len(found) == len(PLANTED)),
        )
    )
    worker_names = [k.split(" ")[0].rsplit("/", 1)[-1] for k in sections if "worker_" in k]
    rows.append(
        Row(
            "worker logs excerpted",
            ", ".join(worker_names) or "none",
            "worker_1.log only",
            yes(worker_names == ["worker_1.log"]),
        )
    )
    for name, body in sections.items():
        chosen = [line for line in body if not GAP.fullmatch(line)]
        bound = DEFAULT_LOG_LINES
        rows.append(
            Row(
                f"  excerpt {name.split(' ')[0]}: shown lines",
                f"{len(body)} = {len(chosen)} log lines + {len(body) - len(chosen)} gap markers",
                f"log lines <= {bound}; shown <= {bound}",
                f"{yes(len(chosen) <= bound)}; {yes(len(body) <= bound)}",
            )
        )
    return rows


# --------------------------------------------------------------------------- part 2

REPORT_TEST = """\
import pytest
from parsl import python_app


@python_app
def work(i: int) -> int:
    if i in {failing}:
        raise ValueError(f"boom {{i}}")
    return i


@pytest.mark.parsl
def test_many_tasks() -> None:
    futures = [work(i) for i in range({n})]
    errors = [f.exception() for f in futures]
    assert not any(errors)
"""


def run_pytest(suite: Path, extra: Sequence[str]) -> str:
    command = pytest_command(
        "-p",
        "parslflow",
        "--rootdir",
        str(suite),
        "-c",
        str(suite / "pytest.ini"),
        "--basetemp",
        str(suite / "basetemp"),
        *extra,
        str(suite / "test_report_size.py"),
    )
    return run_session(command, suite, timeout=PYTEST_TIMEOUT_S).output


def parsl_section(output: str) -> list[str]:
    """The lines of the ``Captured stdout parsl`` section, its own title line excluded."""
    lines: list[str] = []
    inside = False
    for line in output.splitlines():
        if inside:
            if re.match(r"^[=_]{3,}|.*[=_]{3,}\s*$", line) or "parsl summary" in line:
                break
            lines.append(line)
        elif "Captured stdout parsl" in line:
            inside = True
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


@dataclass(frozen=True)
class SizeResult:
    log_lines: int
    total: int
    summary: int
    #: per excerpt: lines shown with its heading, and how many are ``[... N lines ...]``
    excerpts: dict[str, tuple[int, int]]
    bound: int
    summary_bound: int
    runs: int
    failed: int


def report_size(suite: Path, log_lines: int) -> SizeResult:
    extra = [] if log_lines == DEFAULT_LOG_LINES else ["--parslflow-log-lines", str(log_lines)]
    output = run_pytest(suite, extra)
    section = parsl_section(output)
    if not section:
        raise RuntimeError(f"no 'Captured stdout parsl' section in:\n{output[-3000:]}")
    summary: list[str] = []
    excerpts: dict[str, tuple[int, int]] = {}
    current: str | None = None
    for line in section:
        heading = re.fullmatch(r"-+ parsl: (.*?) -+", line)
        if heading and heading.group(1) != "tasks":
            current = heading.group(1)
            excerpts[current] = (1, 0)
        elif current is None:
            summary.append(line)
        else:
            shown, gaps = excerpts[current]
            excerpts[current] = (shown + 1, gaps + bool(GAP.fullmatch(line)))
    runs = sum(1 for line in summary if line.startswith("run dir:"))
    failed = len(REPORT_FAILING)
    tries = 1
    summary_bound = (
        3
        + runs
        + min(failed, report.MAX_FAILED_SHOWN) * (1 + tries + 2 + 2 * report.TRACEBACK_FRAMES)
    )
    bound = summary_bound + len(excerpts) * (log_lines + 1)
    return SizeResult(
        log_lines, len(section), len(summary), excerpts, bound, summary_bound, runs, failed
    )


def bench_report_size(tmp: Path) -> list[Row]:
    suite = tmp / "suite"
    suite.mkdir()
    (suite / "pytest.ini").write_text("[pytest]\n")
    (suite / "test_report_size.py").write_text(
        REPORT_TEST.format(failing=set(REPORT_FAILING), n=REPORT_TASKS)
    )
    rows: list[Row] = []
    results = [report_size(suite, DEFAULT_LOG_LINES), report_size(suite, 10)]
    for res in results:
        rows.append(
            Row(
                f"report lines, {REPORT_TASKS} tasks / {res.failed} failed, "
                f"--parslflow-log-lines {res.log_lines}",
                f"{res.total} (summary {res.summary}, "
                + ", ".join(f"{k.split(' ')[0]} {v}" for k, (v, _) in res.excerpts.items())
                + ")",
                f"<= {res.bound}",
                yes(res.total <= res.bound),
            )
        )
        rows.append(
            Row(
                "  task summary lines",
                str(res.summary),
                f"<= 3 + {res.runs} + {res.failed} x (1 + 1 + 2 + 2x3) = {res.summary_bound}",
                yes(res.summary <= res.summary_bound),
            )
        )
        for name, (count, gaps) in res.excerpts.items():
            rows.append(
                Row(
                    f"  excerpt {name.split(' ')[0]}: shown lines",
                    f"{count} = 1 heading + {count - 1 - gaps} log lines + {gaps} gap markers",
                    f"<= {res.log_lines} + 1",
                    yes(count <= res.log_lines + 1),
                )
            )
    default, small = results
    rows.append(
        Row(
            "report shrinks with --parslflow-log-lines 10",
            f"{default.total} -> {small.total}",
            "smaller",
            yes(small.total < default.total),
        )
    )
    return rows


# --------------------------------------------------------------------------- hostile logs

HOSTILE_LINE_BYTES = 500 * MB
HOSTILE_WARNINGS = 60
TARGET_HOSTILE_REPORT_BYTES = report.MAX_REPORT_BYTES


def write_hostile(base: Path, which: str) -> ParslTask:
    """A run directory for one hostile case, and the failed task whose report reads it:
    ``line``, a bash app whose stdout is 500 MB without a newline and whose stderr is a
    progress bar of carriage returns; ``logline``, a ``parsl.log`` with one 500 MB line
    naming the failed task all along; ``matching``, 100 MB of ERROR lines that all name the
    failed task; ``warnings``, a ``parsl.log`` of 60 WARNING lines
    of 1 MB each around the failed task's own lines."""
    dfk_dir = base / "runinfo" / "000"
    dfk_dir.mkdir(parents=True, exist_ok=True)
    stdout = stderr = None
    with (dfk_dir / "parsl.log").open("w") as log:
        log.write(_planted("start", EPOCH))
        if which == "warnings":
            for n in range(HOSTILE_WARNINGS):
                where = "dataflow.dflow:1 noisy"
                log.write(_parsl_prefix(EPOCH + n, "noisy", where, "WARNING") + "w" * MB + "\n")
        if which == "matching":
            line = _parsl_prefix(EPOCH + 2, "noisy", "dataflow.dflow:1 noisy", "ERROR")
            block = (line + "Task 3 is still failing\n") * 20_000
            for _ in range(100 * MB // len(block)):
                log.write(block)
        if which == "logline":
            log.write(_parsl_prefix(EPOCH + 1, "noisy", "dataflow.dflow:1 noisy", "WARNING"))
            chunk = "task 3 " + "y" * (4 * MB - 7)
            for _ in range(HOSTILE_LINE_BYTES // len(chunk)):
                log.write(chunk)
            log.write("\n")
        log.write(_planted("end", EPOCH + 100))
    if which == "line":
        stdout, stderr = base / "convert.out", base / "convert.err"
        block = b"x" * (4 * MB)
        with stdout.open("wb") as handle:
            for _ in range(HOSTILE_LINE_BYTES // len(block)):
                handle.write(block)
        with stderr.open("wb") as handle:
            handle.write(b"".join(b"progress %d%%\r" % i for i in range(200_000)))
    return ParslTask(
        id=FAILED_ID,
        run=0,
        app="convert",
        state="failed",
        tries=1,
        exceptions=(RuntimeError("bash_app convert failed with unix exit code 3"),),
        from_memo=False,
        executor=LABEL,
        executor_ids=FAILED_EXECUTOR_IDS,
        depends_on=(),
        root=None,
        submitted=None,
        returned=None,
        try_launched=(),
        stdout=str(stdout) if stdout else None,
        stderr=str(stderr) if stderr else None,
    )


def build_report(run: ParslTestRun, tasks: list[ParslTask]) -> str:
    """The report text as ``failure_report`` builds it (less the hooks, which need a test)."""
    lines = report.task_summary(run, tasks, "kept")
    lines += report.excerpts(run, tasks, DEFAULT_LOG_LINES, [])
    return report.bounded(lines, report.MAX_REPORT_BYTES)


def bench_hostile(tmp: Path) -> list[Row]:
    rows = []
    for which, title in (
        ("line", "bash app: 500 MB line + CR progress bar"),
        ("logline", "parsl.log: one 500 MB line"),
        ("warnings", "parsl.log: 60 x 1 MB lines"),
        ("matching", "parsl.log: 100 MB of ERROR lines naming the task"),
    ):
        base = tmp / f"hostile_{which}"
        task = write_hostile(base, which)
        run = ParslTestRun(settings=ParslSettings(), base=base)
        run.dfks.append(cast(Any, SimpleNamespace(run_dir=str(base / "runinfo" / "000"))))
        read_all([p for p in base.rglob("*") if p.is_file()])  # into the page cache
        times = timed(lambda run=run, task=task: build_report(run, [task]), repeats=3)
        tracemalloc.start()
        text = build_report(run, [task])
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        size = len(text.encode())
        rows += [
            Row(f"{title}: report build, best of 3", f"{min(times):.3f} s"),
            Row(
                f"{title}: extra peak memory (tracemalloc)",
                f"{peak / MB:.1f} MB",
                f"<= {TARGET_EXTRA_MB:.0f} MB",
                yes(peak / MB <= TARGET_EXTRA_MB),
            ),
            Row(
                f"{title}: report size",
                f"{size:,} bytes",
                f"<= {TARGET_HOSTILE_REPORT_BYTES:,} bytes",
                yes(size <= TARGET_HOSTILE_REPORT_BYTES),
            ),
        ]
        for path in [p for p in base.rglob("*") if p.is_file()]:
            path.unlink()  # half a gigabyte is not kept for the rest of the run
    return rows


# --------------------------------------------------------------------------- main


def print_table(rows: Sequence[Row]) -> None:
    headers = Row("figure", "value", "target", "met")
    widths = [max(len(getattr(r, f)) for r in [headers, *rows]) for f in Row.__annotations__]
    for i, row in enumerate([headers, *rows]):
        cells = [getattr(row, f).ljust(w) for f, w in zip(Row.__annotations__, widths, strict=True)]
        print("  ".join(cells).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rss-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--skip-pytest", action="store_true", help="no pytest session (part 2)")
    parser.add_argument("--hostile-only", action="store_true", help="part 3 only")
    args = parser.parse_args(argv)
    if args.rss_child:
        rss_child(args.rss_child)
        return
    with tempfile.TemporaryDirectory(prefix="bench_report_") as tmp:
        rows = [] if args.hostile_only else bench_excerpts(Path(tmp))
        if not args.skip_pytest and not args.hostile_only:
            rows += bench_report_size(Path(tmp))
        rows += bench_hostile(Path(tmp))
    print_table(rows)


if __name__ == "__main__":
    main()
