"""An SVG picture of a failed test's Parsl run, drawn by hand (no browser, no binary).

Left: the task graph, laid out in layers by dependency depth, each task coloured by its
final state, with its tries; the edges from every ``dep_fail`` back to the task whose own
failure caused it are drawn thick and red, and that root task is outlined. Beyond
:data:`MAX_TASK_NODES` tasks the graph is drawn one node per app (counts per state, the
app's root failures listed). Right: a timeline of tries, one lane per executor, or per
worker on HTEX (read from the workers' own logs), each try a bar; a lane with more tries
running at once than :data:`MAX_SUB_ROWS` is drawn as a count of running tries over time,
its failed tries as red ticks.

Every element a program may look for carries ``data-*`` attributes (``data-task``,
``data-state``, ``data-tries``, ``data-root``), and a ``<title>`` a person sees on hover.
"""

from __future__ import annotations

import collections
import datetime
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from pytest_parslflow.tasks import ParslTask, state_counts

#: tasks drawn one node each; beyond this, one node per app
MAX_TASK_NODES = 60
#: sub-rows of one timeline lane before it is drawn as a count over time
MAX_SUB_ROWS = 8
#: timeline lanes drawn; the rest are counted
MAX_LANES = 40
#: root failures listed in an app's node (aggregated graph)
MAX_ROOTS_PER_APP = 3
#: failed tries marked as ticks in an aggregated lane
MAX_TICKS = 300

PICTURE_NAME = "parsl-run.svg"

STATE_COLOURS: Mapping[str, str] = {
    "exec_done": "#43a047",
    "memo_done": "#26a69a",
    "failed": "#e53935",
    "dep_fail": "#fb8c00",
    "launched": "#1e88e5",
    "running": "#1e88e5",
    "running_ended": "#1e88e5",
    "exec_failed": "#e53935",
    "fail_retryable": "#ef9a9a",
    "joining": "#8e24aa",
    "pending": "#9e9e9e",
    "unsched": "#bdbdbd",
}
_OTHER = "#bdbdbd"
_FAIL_PATH = "#b71c1c"
_FAILED_TRY = "#e53935"

_NODE_W, _NODE_H, _LAYER_GAP, _ROW_GAP = 150, 38, 46, 12
_APP_W = 230
_TIMELINE_W = 560
_LANE_LABEL_W = 230
_SUB_ROW_H = 12
_MARGIN = 16
_HEADER_H = 54


def _colour(state: str) -> str:
    return STATE_COLOURS.get(state, _OTHER)


def _attr(value: object) -> str:
    return quoteattr(str(value))


def _text(value: object, limit: int = 60) -> str:
    text = str(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return escape(text)


def _describe(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _tries_text(count: int) -> str:
    return f"{count} tr{'y' if count == 1 else 'ies'}"


Key = tuple[int, int]  # (run, task id)


@dataclass(frozen=True)
class WorkerRun:
    """Where and when an HTEX worker ran one executor task, from the worker's own log."""

    lane: str
    start: datetime.datetime | None = None
    end: datetime.datetime | None = None


#: (run, executor label, executor task id) -> the worker that ran it
Workers = Mapping[tuple[int, str, str], WorkerRun]


def _key(task: ParslTask) -> Key:
    return (task.run, task.id)


def _depths(tasks: Sequence[ParslTask]) -> dict[Key, int]:
    """Each task's layer: one more than the deepest task it waited on (0 for none)."""
    by_key = {_key(t): t for t in tasks}
    depth: dict[Key, int] = {}
    for task in tasks:  # submission order: a dependency was submitted before its dependant
        parents = [(task.run, d) for d in task.depends_on if (task.run, d) in by_key]
        depth[_key(task)] = 1 + max((depth.get(p, 0) for p in parents), default=-1)
    return depth


def fail_path_edges(tasks: Sequence[ParslTask]) -> set[tuple[Key, Key]]:
    """The (dependency, dependant) edges on the way from every ``dep_fail`` to its root."""
    by_key = {_key(t): t for t in tasks}
    edges: set[tuple[Key, Key]] = set()
    for task in tasks:
        if task.state != "dep_fail" or task.root is None:
            continue
        current, seen = task, set()
        while current.id != task.root and _key(current) not in seen:
            seen.add(_key(current))
            step = None
            for dep in current.depends_on:
                parent = by_key.get((current.run, dep))
                if parent is None or not parent.failed:
                    continue
                if parent.id == task.root or parent.root == task.root:
                    step = parent
                    break
                step = step or parent
            if step is None:
                break
            edges.add((_key(step), _key(current)))
            current = step
    return edges


def root_keys(tasks: Iterable[ParslTask]) -> set[Key]:
    """The tasks whose own failure caused a failure: failed in their body, or named as
    another's root."""
    roots = set()
    for task in tasks:
        if task.state == "failed" and task.root in (None, task.id):
            roots.add(_key(task))
        if task.root is not None:
            roots.add((task.run, task.root))
    return roots


# ------------------------------------------------------------------------- the graph


@dataclass
class _Drawing:
    parts: list[str]
    width: float
    height: float


def _task_graph(tasks: Sequence[ParslTask], x0: float, y0: float) -> _Drawing:
    depth = _depths(tasks)
    layers: dict[int, list[ParslTask]] = collections.defaultdict(list)
    for task in tasks:
        layers[depth[_key(task)]].append(task)
    position: dict[Key, tuple[float, float]] = {}
    order: dict[Key, float] = {}
    for layer in sorted(layers):
        members = layers[layer]

        # one barycentre pass: a task sits near the tasks it waited on
        def weight(t: ParslTask) -> tuple[float, int]:
            parents = [order[(t.run, d)] for d in t.depends_on if (t.run, d) in order]
            return (sum(parents) / len(parents) if parents else math.inf, t.id)

        members.sort(key=weight)
        lowest = y0
        for index, task in enumerate(members):
            order[_key(task)] = index
            # level with the tasks it waited on where there is room, else below the last
            parents = [position[p][1] for d in task.depends_on if (p := (task.run, d)) in position]
            wanted = sum(parents) / len(parents) if parents else lowest
            y = max(wanted, lowest)
            position[_key(task)] = (x0 + layer * (_NODE_W + _LAYER_GAP), y)
            lowest = y + _NODE_H + _ROW_GAP
    fail_edges = fail_path_edges(tasks)
    roots = root_keys(tasks)
    parts = ['<g class="graph">']
    edge_parts, fail_parts = [], []
    for task in tasks:
        for dep in task.depends_on:
            parent = (task.run, dep)
            if parent not in position:
                continue
            (px, py), (cx, cy) = position[parent], position[_key(task)]
            x1, y1, x2, y2 = px + _NODE_W, py + _NODE_H / 2, cx, cy + _NODE_H / 2
            mid = (x1 + x2) / 2
            path = f"M{x1:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
            if (parent, _key(task)) in fail_edges:
                fail_parts.append(
                    f'<path class="edge fail-path" d="{path}" data-from="{dep}" '
                    f'data-to="{task.id}" stroke="{_FAIL_PATH}" stroke-width="3" fill="none" '
                    f'marker-end="url(#arrow-fail)"/>'
                )
            else:
                edge_parts.append(
                    f'<path class="edge" d="{path}" data-from="{dep}" data-to="{task.id}" '
                    f'stroke="#90a4ae" stroke-width="1.2" fill="none" marker-end="url(#arrow)"/>'
                )
    parts += edge_parts + fail_parts  # failure paths on top
    multi_run = len({t.run for t in tasks}) > 1
    for task in tasks:
        x, y = position[_key(task)]
        is_root = _key(task) in roots
        label = f"task {task.id}" + (f" (run {task.run})" if multi_run else "")
        tries = _tries_text(task.tries)
        if task.state == "dep_fail":
            second = f"dep_fail ← task {task.root}" if task.root is not None else "dep_fail"
        else:
            second = f"{task.state} · {tries}"
        hover = [f"task {task.id} {task.app}: {task.state}, {tries}, executor {task.executor}"]
        hover += [f"try {n}: {_describe(e)}" for n, e in enumerate(task.exceptions)]
        if task.root is not None and task.root != task.id:
            hover.append(f"root: task {task.root}")
        stroke = f'stroke="{_FAIL_PATH}" stroke-width="3"' if is_root else 'stroke="#455a64"'
        parts.append(
            f'<g class="task {task.state}{" root" if is_root else ""}" id="task-{task.run}-'
            f'{task.id}" data-task="{task.id}" data-run="{task.run}" data-app={_attr(task.app)} '
            f'data-state="{task.state}" data-tries="{task.tries}"'
            + (f' data-root="{task.root}"' if task.root is not None else "")
            + ">"
            f"<title>{escape(chr(10).join(hover))}</title>"
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{_NODE_W}" height="{_NODE_H}" rx="5" '
            f'fill="{_colour(task.state)}" fill-opacity="0.25" {stroke}/>'
            f'<rect x="{x:.1f}" y="{y:.1f}" width="6" height="{_NODE_H}" rx="2" '
            f'fill="{_colour(task.state)}"/>'
            f'<text x="{x + 12:.1f}" y="{y + 15:.1f}" font-weight="bold">{_text(label)} '
            f'<tspan font-weight="normal">{_text(task.app, 16)}</tspan></text>'
            f'<text x="{x + 12:.1f}" y="{y + 30:.1f}">{_text(second, 24)}</text></g>'
        )
    parts.append("</g>")
    width = (max(depth.values(), default=0) + 1) * (_NODE_W + _LAYER_GAP) - _LAYER_GAP
    height = max((y + _NODE_H for _, y in position.values()), default=y0) - y0
    return _Drawing(parts, width, height)


def _app_graph(tasks: Sequence[ParslTask], x0: float, y0: float) -> _Drawing:
    """One node per app: its tasks' states as a bar, tries, and its root failures."""
    by_key = {_key(t): t for t in tasks}
    depth = _depths(tasks)
    apps: dict[str, list[ParslTask]] = {}
    for task in tasks:
        apps.setdefault(task.app, []).append(task)
    app_layer = {app: min(depth[_key(t)] for t in members) for app, members in apps.items()}
    edges: dict[tuple[str, str], list[int]] = {}  # (from app, to app): [count, failing]
    for task in tasks:
        for dep in task.depends_on:
            parent = by_key.get((task.run, dep))
            if parent is None:
                continue
            tally = edges.setdefault((parent.app, task.app), [0, 0])
            tally[0] += 1
            if task.state == "dep_fail" and parent.failed:
                tally[1] += 1
    roots = root_keys(tasks)
    layers: dict[int, list[str]] = collections.defaultdict(list)
    for app in apps:
        layers[app_layer[app]].append(app)
    position: dict[str, tuple[float, float, float]] = {}
    max_bottom = 0.0
    ranked = sorted(layers)
    for column, layer in enumerate(ranked):
        y = y0
        for app in layers[layer]:
            app_roots = [t for t in apps[app] if _key(t) in roots]
            shown = min(len(app_roots), MAX_ROOTS_PER_APP)
            height = 66 + 14 * shown + (14 if len(app_roots) > shown else 0)
            position[app] = (x0 + column * (_APP_W + _LAYER_GAP), y, height)
            y += height + _ROW_GAP
        max_bottom = max(max_bottom, y - _ROW_GAP)
    parts = ['<g class="graph aggregated">']
    edge_parts, fail_parts = [], []
    for (source, target), (count, failing) in edges.items():
        sx, sy, sh = position[source]
        tx, ty, th = position[target]
        x1, y1, x2, y2 = sx + _APP_W, sy + sh / 2, tx, ty + th / 2
        if source == target or x2 <= x1:  # within one layer: loop around the right side
            x2 = tx + _APP_W
            bend = max(x1, x2) + 30
            path = f"M{x1:.1f},{y1:.1f} C{bend:.1f},{y1:.1f} {bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
        else:
            mid = (x1 + x2) / 2
            path = f"M{x1:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
        title = f"<title>{escape(f'{count} dependencies {source} → {target}')}"
        if failing:
            fail_parts.append(
                f'<path class="edge fail-path" d="{path}" data-from={_attr(source)} '
                f'data-to={_attr(target)} stroke="{_FAIL_PATH}" stroke-width="3" '
                f'fill="none" marker-end="url(#arrow-fail)">'
                f"{title}, {failing} failed by it</title></path>"
            )
        else:
            stroke = 1.2 + min(3.0, math.log10(count + 1))
            edge_parts.append(
                f'<path class="edge" d="{path}" data-from={_attr(source)} '
                f'data-to={_attr(target)} stroke="#90a4ae" stroke-width="{stroke:.1f}" '
                f'fill="none" marker-end="url(#arrow)">{title}</title></path>'
            )
    parts += edge_parts + fail_parts
    for app, members in apps.items():
        x, y, box_h = position[app]
        counts = collections.Counter(t.state for t in members)
        tries = sum(t.tries for t in members)
        failed = counts["failed"] + counts["dep_fail"]
        parts.append(
            f'<g class="app{" failed" if failed else ""}" data-app={_attr(app)} '
            f'data-tasks="{len(members)}" data-tries="{tries}">'
            f"<title>{escape(f'{app}: {len(members)} tasks: {state_counts(members)}')}</title>"
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{_APP_W}" height="{box_h:.0f}" rx="5" '
            f'fill="#fafafa" stroke="{_FAIL_PATH if failed else "#455a64"}" '
            f'stroke-width="{2 if failed else 1}"/>'
            f'<text x="{x + 8:.1f}" y="{y + 16:.1f}" font-weight="bold">{_text(app, 28)}</text>'
            f'<text x="{x + 8:.1f}" y="{y + 30:.1f}">{len(members)} tasks · {tries} tries'
            f"</text>"
        )
        bar_x, bar_w = x + 8, _APP_W - 16
        for state, n in sorted(counts.items(), key=lambda kv: kv[0]):
            w = bar_w * n / len(members)
            parts.append(
                f'<rect class="count" data-state="{state}" data-count="{n}" x="{bar_x:.1f}" '
                f'y="{y + 36:.1f}" width="{w:.1f}" height="9" fill="{_colour(state)}">'
                f"<title>{n} {state}</title></rect>"
            )
            bar_x += w
        parts.append(
            f'<text x="{x + 8:.1f}" y="{y + 58:.1f}" fill="#37474f">'
            f"{_text(state_counts(members), 40)}</text>"
        )
        app_roots = [t for t in members if _key(t) in roots]
        for index, task in enumerate(app_roots[:MAX_ROOTS_PER_APP]):
            exc = _describe(task.exceptions[-1]) if task.exceptions else task.state
            parts.append(
                f'<g class="task {task.state} root" id="task-{task.run}-{task.id}" '
                f'data-task="{task.id}" data-run="{task.run}" data-app={_attr(task.app)} '
                f'data-state="{task.state}" data-tries="{task.tries}">'
                f"<title>{escape(f'task {task.id}: {task.tries} tries: {exc}')}</title>"
                f'<text x="{x + 8:.1f}" y="{y + 74 + 14 * index:.1f}" fill="{_FAIL_PATH}">'
                f"✗ task {task.id}, {_tries_text(task.tries)}: {_text(exc, 22)}</text></g>"
            )
        if len(app_roots) > MAX_ROOTS_PER_APP:
            more = len(app_roots) - MAX_ROOTS_PER_APP
            parts.append(
                f'<text x="{x + 8:.1f}" y="{y + 74 + 14 * MAX_ROOTS_PER_APP:.1f}" '
                f'fill="{_FAIL_PATH}">… {more} more root failures</text>'
            )
        parts.append("</g>")
    parts.append("</g>")
    width = len(ranked) * (_APP_W + _LAYER_GAP) - _LAYER_GAP
    return _Drawing(parts, width + 40, max_bottom - y0)


# ---------------------------------------------------------------------- the timeline


@dataclass(frozen=True)
class _Try:
    task: ParslTask
    number: int
    lane: str
    start: datetime.datetime
    end: datetime.datetime
    failed: bool


def _tries(tasks: Sequence[ParslTask], workers: Workers, now: datetime.datetime) -> list[_Try]:
    """Each try from its launch to the next try's launch (or the task's end), or, where
    the worker's log tells, from when the worker received it to when it completed it."""
    tries = []
    for task in tasks:
        for number, start in enumerate(task.try_launched):
            last = number == len(task.try_launched) - 1
            if not last:
                end = task.try_launched[number + 1]
            else:
                end = task.returned or now
            executor_id = task.executor_ids[number] if number < len(task.executor_ids) else None
            worker = workers.get((task.run, task.executor, str(executor_id)))
            lane = task.executor
            if worker is not None:
                lane = worker.lane
                start = worker.start or start
                end = worker.end or (end if worker.start is None else now)
            failed = not last or task.state in ("failed", "fail_retryable", "exec_failed")
            tries.append(_Try(task, number, lane, start, max(end, start), failed))
    return tries


def _pack(tries: list[_Try]) -> list[int]:
    """Each try's sub-row within its lane: the first row free at its start."""
    ends: list[datetime.datetime] = []
    rows = []
    for one in tries:
        for row, end in enumerate(ends):
            if end <= one.start:
                ends[row] = one.end
                rows.append(row)
                break
        else:
            ends.append(one.end)
            rows.append(len(ends) - 1)
    return rows


def _nice_step(span: float) -> float:
    raw = span / 6 or 1.0
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _timeline(
    tasks: Sequence[ParslTask],
    workers: Workers,
    x0: float,
    y0: float,
    now: datetime.datetime,
) -> _Drawing:
    tries = sorted(_tries(tasks, workers, now), key=lambda t: (t.start, t.task.id))
    parts = ['<g class="timeline">']
    parts.append(
        f'<text x="{x0:.1f}" y="{y0 + 12:.1f}" font-weight="bold">tries over time, per '
        f"{'worker' if workers else 'executor'}</text>"
    )
    if not tries:
        parts.append(f'<text x="{x0:.1f}" y="{y0 + 32:.1f}">no try was launched</text></g>')
        return _Drawing(parts, _LANE_LABEL_W + _TIMELINE_W, 40)
    t0 = min(t.start for t in tries)
    t1 = max(t.end for t in tries)
    span = max((t1 - t0).total_seconds(), 1e-3)
    scale = _TIMELINE_W / span
    bar_x0 = x0 + _LANE_LABEL_W

    def at(moment: datetime.datetime) -> float:
        return bar_x0 + (moment - t0).total_seconds() * scale

    lanes: dict[str, list[_Try]] = {}
    for one in tries:
        lanes.setdefault(one.lane, []).append(one)
    y = y0 + 24
    axis_top = y
    for lane_number, (lane, members) in enumerate(sorted(lanes.items())):
        if lane_number == MAX_LANES:
            parts.append(
                f'<text x="{x0:.1f}" y="{y + 10:.1f}">… {len(lanes) - MAX_LANES} more lanes</text>'
            )
            y += 16
            break
        rows = _pack(members)
        height_rows = max(rows) + 1
        failed_tries = sum(1 for t in members if t.failed)
        counts = f"{len(members)} tries" + (f", {failed_tries} failed" if failed_tries else "")
        parts.append(
            f'<g class="lane" data-lane={_attr(lane)} data-tries="{len(members)}">'
            f'<text x="{x0:.1f}" y="{y + 10:.1f}">{_text(lane, 40)}'
            f"<title>{escape(lane)}: {counts}</title></text>"
            f'<text x="{x0:.1f}" y="{y + 23:.1f}" fill="#546e7a">{counts}</text>'
        )
        if height_rows <= MAX_SUB_ROWS:
            for one, row in zip(members, rows, strict=True):
                colour = _FAILED_TRY if one.failed else _colour(one.task.state)
                x = at(one.start)
                w = max(at(one.end) - x, 3.0 if one.failed else 1.5)
                exc = ""
                if one.failed and one.number < len(one.task.exceptions):
                    exc = ": " + _describe(one.task.exceptions[one.number])
                hover = f"task {one.task.id} {one.task.app} try {one.number}{exc}"
                parts.append(
                    f'<rect class="try{" failed" if one.failed else ""}" '
                    f'data-task="{one.task.id}" data-try="{one.number}" x="{x:.1f}" '
                    f'y="{y + row * _SUB_ROW_H:.1f}" width="{w:.1f}" '
                    f'height="{_SUB_ROW_H - 2}" fill="{colour}">'
                    f"<title>{escape(hover)}</title></rect>"
                )
                if w > 44:  # room to name the task on its bar
                    parts.append(
                        f'<text x="{x + 3:.1f}" y="{y + row * _SUB_ROW_H + 8:.1f}" '
                        f'font-size="8" fill="white">{one.task.id}·try {one.number}</text>'
                    )
            y += max(height_rows * _SUB_ROW_H, 26) + 6
        else:
            # too many at once to draw one by one: how many ran, over time
            bins = 120
            width = _TIMELINE_W / bins
            running = [0] * bins
            for one in members:
                first = min(int((at(one.start) - bar_x0) / width), bins - 1)
                last = min(int((at(one.end) - bar_x0) / width), bins - 1)
                for b in range(first, last + 1):
                    running[b] += 1
            peak = max(running) or 1
            height = 40.0
            points = [f"{bar_x0:.1f},{y + height:.1f}"]
            for b, n in enumerate(running):
                top = y + height - height * n / peak
                points.append(f"{bar_x0 + b * width:.1f},{top:.1f}")
                points.append(f"{bar_x0 + (b + 1) * width:.1f},{top:.1f}")
            points.append(f"{bar_x0 + _TIMELINE_W:.1f},{y + height:.1f}")
            parts.append(
                f'<polygon class="running" points="{" ".join(points)}" fill="#90caf9" '
                f'stroke="#1e88e5"><title>up to {peak} tries running at once</title></polygon>'
                f'<text x="{x0:.1f}" y="{y + 36:.1f}" fill="#546e7a">up to {peak} at once'
                f"</text>"
            )
            for one in [t for t in members if t.failed][:MAX_TICKS]:
                x = at(one.end)
                parts.append(
                    f'<line class="try failed" data-task="{one.task.id}" '
                    f'data-try="{one.number}" x1="{x:.1f}" x2="{x:.1f}" y1="{y - 2:.1f}" '
                    f'y2="{y + height + 2:.1f}" stroke="{_FAILED_TRY}" stroke-width="2">'
                    f"<title>task {one.task.id} {escape(one.task.app)} try {one.number} "
                    f"failed</title></line>"
                )
            y += height + 8
        parts.append("</g>")
    step = _nice_step(span)
    tick = 0.0
    while tick <= span + 1e-9:
        x = bar_x0 + tick * scale
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{axis_top - 4:.1f}" y2="{y:.1f}" '
            f'stroke="#cfd8dc" stroke-dasharray="2,3"/>'
            f'<text x="{x:.1f}" y="{y + 12:.1f}" text-anchor="middle" fill="#546e7a">'
            f"{tick:g} s</text>"
        )
        tick += step
    parts.append("</g>")
    return _Drawing(parts, _LANE_LABEL_W + _TIMELINE_W + 20, y + 16 - y0)


# ---------------------------------------------------------------------- the workers

# a worker's "Received executor task 4" and "Completed executor task 4", with the record's
# time: Parsl's text format starts with the epoch, its JSON format has "created"
_WORKER_EVENT = re.compile(
    rb"(?m)^(?:(\d+\.\d+) |\{\"created\": (\d+\.\d+)).*?(Received|Completed) executor task (\d+)"
)


def htex_workers(dfk_dirs: Sequence[Path]) -> dict[tuple[int, str, str], WorkerRun]:
    """Which HTEX worker ran each executor task, and when: ``(run, executor label,
    executor id)`` to a :class:`WorkerRun`, from the workers' own logs (text or JSON)."""
    found: dict[tuple[int, str, str], WorkerRun] = {}
    for run, dfk_dir in enumerate(dfk_dirs):
        paths = sorted(dfk_dir.glob("*/block-*/*/worker_*.*log"))
        managers = {path.parts[-2] for path in paths}
        for path in paths:
            label, block, manager = path.parts[-4], path.parts[-3], path.parts[-2]
            worker = path.name.split(".", 1)[0]
            lane = f"{label}/{block}/" + (f"{manager[:6]}/" if len(managers) > 1 else "")
            lane += worker
            try:
                data = path.read_bytes()
            except OSError:
                continue
            for match in _WORKER_EVENT.finditer(data):
                epoch, created, event, task = match.groups()
                moment = datetime.datetime.fromtimestamp(float(epoch or created or 0))
                key = (run, label, task.decode())
                known = found.get(key, WorkerRun(lane))
                if event == b"Received":
                    found[key] = WorkerRun(lane, moment, None)
                else:
                    found[key] = WorkerRun(lane, known.start, moment)
    return found


# ---------------------------------------------------------------------- the picture


def draw(
    tasks: Sequence[ParslTask],
    title: str,
    workers: Workers | None = None,
    now: datetime.datetime | None = None,
) -> str:
    """The SVG text of a test's run: task graph left, timeline of tries right."""
    now = now or datetime.datetime.now()
    workers = workers or {}
    top = _MARGIN + _HEADER_H
    detailed = len(tasks) <= MAX_TASK_NODES
    graph = (_task_graph if detailed else _app_graph)(tasks, _MARGIN, top + 18)
    timeline_x = _MARGIN + max(graph.width, 200) + 40
    timeline = _timeline(tasks, workers, timeline_x, top, now)
    width = timeline_x + timeline.width + _MARGIN
    height = top + max(graph.height + 18, timeline.height) + _MARGIN + 24
    failed = sum(1 for t in tasks if t.failed)
    summary = f"{len(tasks)} tasks: {state_counts(list(tasks)) or 'none submitted'}"
    legend_x = _MARGIN
    legend = []
    for state in ("exec_done", "memo_done", "failed", "dep_fail", "launched", "pending"):
        legend.append(
            f'<rect x="{legend_x}" y="{_MARGIN + 34}" width="10" height="10" '
            f'fill="{_colour(state)}"/><text x="{legend_x + 14}" y="{_MARGIN + 43}">'
            f"{state}</text>"
        )
        legend_x += 24 + 7 * len(state)
    legend.append(
        f'<line x1="{legend_x}" x2="{legend_x + 24}" y1="{_MARGIN + 39}" y2="{_MARGIN + 39}" '
        f'stroke="{_FAIL_PATH}" stroke-width="3"/><text x="{legend_x + 30}" '
        f'y="{_MARGIN + 43}">path to the root failure</text>'
    )
    graph_title = "task graph" if detailed else f"task graph by app ({len(tasks)} tasks)"
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" '
            f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
            f'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="11" '
            f'data-tasks="{len(tasks)}" data-failed="{failed}">',
            f"<title>{escape(title)}: {escape(summary)}</title>",
            "<defs>"
            '<marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="8" '
            'markerHeight="8" markerUnits="userSpaceOnUse" orient="auto">'
            '<path d="M0,0 L8,4 L0,8 z" fill="#90a4ae"/></marker>'
            '<marker id="arrow-fail" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="10" '
            'markerHeight="10" markerUnits="userSpaceOnUse" orient="auto">'
            f'<path d="M0,0 L8,4 L0,8 z" fill="{_FAIL_PATH}"/>'
            "</marker></defs>",
            '<rect width="100%" height="100%" fill="white"/>',
            f'<text x="{_MARGIN}" y="{_MARGIN + 12}" font-size="14" font-weight="bold">'
            f"{_text(title, 140)}</text>",
            f'<text x="{_MARGIN}" y="{_MARGIN + 28}">{_text(summary, 160)}</text>',
            *legend,
            f'<text x="{_MARGIN}" y="{top + 12}" font-weight="bold">{graph_title}</text>',
            *graph.parts,
            *timeline.parts,
            "</svg>",
            "",
        ]
    )


def write_picture(
    path: Path, tasks: Sequence[ParslTask], title: str, dfk_dirs: Sequence[Path]
) -> Path:
    """Draw the picture of ``tasks`` into ``path`` (HTEX workers read from ``dfk_dirs``)."""
    path.write_text(draw(tasks, title, htex_workers(dfk_dirs)), encoding="utf-8")
    return path
