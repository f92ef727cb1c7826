"""The SVG picture of a failed test's run: task graph with the path to each root failure,
and a timeline of tries per executor (per worker on HTEX)."""

from __future__ import annotations

import datetime
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_parslflow.report.picture import MAX_TASK_NODES, draw
from pytest_parslflow.tasks import ParslTask

SVG = "{http://www.w3.org/2000/svg}"

FIVE_TASKS = """
import pytest
from parsl import python_app

@python_app
def fine(i):
    return i

@python_app
def boom(i):
    raise ValueError(f"boom {i}")

@python_app
def after(x):
    return x

@pytest.mark.parsl(retries=1)
def test_pipeline():
    ok = [fine(i) for i in range(3)]
    failed = after(boom(3))
    assert [f.result() for f in ok] == [0, 1, 2]
    failed.result()

@pytest.mark.parsl
def test_passes():
    assert fine(1).result() == 1
"""


def _picture(result: pytest.RunResult) -> Path:
    (line,) = [line for line in result.outlines if line.startswith("picture: ")]
    return Path(line.removeprefix("picture: "))


def _tasks(root: ET.Element) -> dict[str, ET.Element]:
    return {g.get("data-task", ""): g for g in root.iter(f"{SVG}g") if "task" in g.get("class", "")}


def test_a_failed_runs_picture_has_the_failed_task_its_root_and_tries(
    pytester: pytest.Pytester, run_parslflow
) -> None:
    pytester.makepyfile(FIVE_TASKS)
    result = run_parslflow("--parslflow-keep", "all")
    result.assert_outcomes(passed=1, failed=1)
    picture = _picture(result)
    assert picture.name == "parsl-run.svg" and picture.parent.name == "runinfo"
    root = ET.parse(picture).getroot()
    assert root.tag == f"{SVG}svg" and root.get("data-failed") == "2"
    tasks = _tasks(root)
    assert sorted(tasks) == ["0", "1", "2", "3", "4"]
    boom, after = tasks["3"], tasks["4"]
    assert (boom.get("data-state"), boom.get("data-tries"), boom.get("data-app")) == (
        "failed",
        "2",
        "boom",
    )
    assert "root" in boom.get("class", "").split()
    assert (after.get("data-state"), after.get("data-root"), after.get("data-tries")) == (
        "dep_fail",
        "3",
        "0",
    )
    assert "try 1: ValueError: boom 3" in "".join(boom.itertext())
    (fail_path,) = [p for p in root.iter(f"{SVG}path") if "fail-path" in p.get("class", "")]
    assert (fail_path.get("data-from"), fail_path.get("data-to")) == ("3", "4")
    tries = [
        (r.get("data-task"), r.get("data-try"), r.get("class"))
        for r in root.iter(f"{SVG}rect")
        if "try" in (r.get("class") or "").split()
    ]
    assert ("3", "0", "try failed") in tries and ("3", "1", "try failed") in tries
    assert sorted(t for t, _, c in tries if c == "try") == ["0", "1", "2"]
    (lane,) = [g for g in root.iter(f"{SVG}g") if g.get("class") == "lane"]
    assert lane.get("data-lane") == "threads" and lane.get("data-tries") == "5"
    # a test that passed gets no picture, even where its run directory is kept
    passed = picture.parents[1].with_name("test_passes0") / "runinfo"
    assert (passed / "000" / "parsl.log").is_file()
    assert not (passed / "parsl-run.svg").exists()


def test_a_large_run_is_drawn_by_app(pytester: pytest.Pytester, run_parslflow) -> None:
    pytester.makepyfile(
        """
import pytest
from parsl import python_app

@python_app
def load(i):
    return i

@python_app
def align(x):
    if x in (17, 41):
        raise ValueError(f"cannot align {x}")
    return x

@python_app
def call(x):
    return x

@pytest.mark.parsl(workers=4)
def test_many():
    results = [call(align(load(i))) for i in range(50)]
    errors = [r.exception() for r in results]  # every task ends before the test fails
    assert all(e is None for e in errors)
"""
    )
    result = run_parslflow()
    result.assert_outcomes(failed=1)
    root = ET.parse(_picture(result)).getroot()
    assert root.get("data-tasks") == "150" and 150 > MAX_TASK_NODES
    apps = {g.get("data-app"): g for g in root.iter(f"{SVG}g") if "app" in g.get("class", "")}
    assert sorted(apps) == ["align", "call", "load"]
    assert apps["align"].get("data-tasks") == "50"
    assert "failed" in apps["align"].get("class", "") and "failed" not in apps["load"].get("class")
    listed = [g for g in apps["align"].iter(f"{SVG}g") if g is not apps["align"]]
    assert [(g.get("data-state"), g.get("data-tries")) for g in listed] == [("failed", "1")] * 2
    assert ["cannot align" in "".join(g.itertext()) for g in listed] == [True, True]
    (fail_path,) = [p for p in root.iter(f"{SVG}path") if "fail-path" in p.get("class", "")]
    assert (fail_path.get("data-from"), fail_path.get("data-to")) == ("align", "call")


@pytest.mark.htex
def test_the_timeline_has_a_lane_per_htex_worker(pytester: pytest.Pytester, run_parslflow) -> None:
    pytester.makepyfile(
        """
import pytest
from parsl import python_app

@python_app
def boom(i):
    import time
    time.sleep(0.2)
    raise ValueError(f"boom {i}")

@pytest.mark.parsl(executor="htex", workers=2)
def test_on_workers():
    futures = [boom(i) for i in range(4)]
    assert all(f.exception() is None for f in futures)
"""
    )
    result = run_parslflow()
    result.assert_outcomes(failed=1)
    root = ET.parse(_picture(result)).getroot()
    lanes = sorted(g.get("data-lane", "") for g in root.iter(f"{SVG}g") if g.get("class") == "lane")
    assert len(lanes) == 2, lanes
    assert all(re.fullmatch(r"htex_local/block-0/worker_[01]", lane) for lane in lanes)


def _synthetic(count: int, failing: tuple[int, ...]) -> list[ParslTask]:
    """A chain of four apps, ``count`` tasks, some failing: as the recorder makes them."""
    start = datetime.datetime(2026, 1, 1, 12, 0, 0)
    tasks: list[ParslTask] = []
    roots: dict[int, int | None] = {}
    for i in range(count):
        step = i % 4
        deps = (i - 1,) if step else ()
        root = roots.get(i - 1) if step else None
        if root is not None:
            state, tries, exceptions = "dep_fail", 0, ()
        elif i in failing:
            state, tries, exceptions = "failed", 2, (ValueError(f"bad {i}"),) * 2
            root = i
        else:
            state, tries, exceptions = "exec_done", 1, ()
        roots[i] = root
        launched = tuple(start + datetime.timedelta(seconds=i * 0.01 + k) for k in range(tries))
        tasks.append(
            ParslTask(
                id=i,
                run=0,
                app=("load", "align", "call", "merge")[step],
                state=state,
                tries=tries,
                exceptions=exceptions,
                from_memo=False,
                executor="threads",
                executor_ids=(),
                depends_on=deps,
                root=root if state == "dep_fail" else None,
                submitted=start,
                returned=start + datetime.timedelta(seconds=i * 0.01 + max(tries, 1)),
                try_launched=launched,
            )
        )
    return tasks


def test_a_thousand_tasks_stay_small_and_readable() -> None:
    svg = draw(_synthetic(1000, (17, 502)), "test_x.py::test_thousand")
    assert len(svg.encode()) < 1 << 20
    root = ET.fromstring(svg)
    listed = {g.get("data-task") for g in root.iter(f"{SVG}g") if "root" in g.get("class", "")}
    assert listed == {"17", "502"}
    # the timeline's one lane holds 1,000 tries at once: drawn as a count over time, with
    # each failed try a tick
    (running,) = root.iter(f"{SVG}polygon")
    ticks = [line.get("data-task") for line in root.iter(f"{SVG}line") if line.get("data-task")]
    assert sorted(ticks) == ["17", "17", "502", "502"]
    assert "up to" in "".join(running.itertext())


def test_one_task_and_no_try() -> None:
    (task,) = _synthetic(1, ())
    pending = ParslTask(**{**task.__dict__, "state": "pending", "tries": 0, "try_launched": ()})
    root = ET.fromstring(draw([pending], "test_x.py::test_one"))
    assert _tasks(root)["0"].get("data-state") == "pending"
    assert "no try was launched" in "".join(root.itertext())
