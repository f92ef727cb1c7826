"""``parsl_tasks`` lookup benchmark: 10,000 ``parsl_tasks[future.tid]`` lookups (the
README's own pattern) against 10,000 lookups in a plain dict of the same records.

Run from the repository root::

    .venv/bin/python benchmarks/bench_lookups.py [--tasks 10000]

A thread-executor DataFlowKernel is loaded with the plugin's own task recorder, as a
``@pytest.mark.parsl`` test gets it, and ``--tasks`` trivial apps run to completion
(a tenth of them fail, a tenth more are ``dep_fail`` on those). Then, side by side, the
best of 5 rounds of:

- ``parsl_tasks[f.tid]`` for every future ``f``;
- ``parsl_tasks[f]`` (lookup by the future itself);
- ``records[f.tid]`` in ``records = {t.id: t for t in parsl_tasks}``;
- one ``parsl_tasks.failed`` filter, and one ``list(parsl_tasks)``, for scale.

Target: lookups by id within 3x of the plain dict. Nothing here asserts on time: the
machine is shared and noisy; the script prints the figures and whether the target was met.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path


def best_of(fn: Callable[[], object], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    args = parser.parse_args(argv)

    import parsl
    from parsl import python_app
    from parsl.config import Config
    from parsl.executors.threads import ThreadPoolExecutor

    from pytest_parslflow.tasks import ParslTasks, TaskRecorder, TaskWindow

    @python_app
    def work(i: int) -> int:
        if i % 10 == 0:
            raise ValueError(f"boom {i}")
        return i

    @python_app
    def after(x: int) -> int:
        return x

    with tempfile.TemporaryDirectory() as tmp:
        config = Config(
            executors=[ThreadPoolExecutor(label="threads", max_threads=4)],
            run_dir=str(Path(tmp) / "runinfo"),
            initialize_logging=False,
        )
        dfk = parsl.load(config)
        try:
            tasks = ParslTasks([TaskWindow(TaskRecorder(dfk, run=0))])
            futures = []
            for i in range(args.tasks):
                future = work(i)
                futures.append(future)
                if i % 10 == 0:
                    futures.append(after(future))
            tasks.wait()
            futures = futures[: args.tasks]
            records = {t.id: t for t in tasks}
            assert all(tasks[f.tid] is records[f.tid] for f in futures[:100])

            by_id = best_of(lambda: [tasks[f.tid] for f in futures])
            by_future = best_of(lambda: [tasks[f] for f in futures])
            plain = best_of(lambda: [records[f.tid] for f in futures])
            failed = best_of(lambda: tasks.failed, repeats=3)
            listed = best_of(lambda: list(tasks), repeats=3)
        finally:
            dfk.cleanup()
            parsl.clear()

    n = len(futures)
    ratio = by_id / plain
    print(f"{n:,} lookups ({len(records):,} task records)")
    print(f"{'what':<40}{'total s':>12}{'per lookup us':>16}")
    for name, total in (
        ("parsl_tasks[future.tid]", by_id),
        ("parsl_tasks[future]", by_future),
        ("plain dict records[future.tid]", plain),
    ):
        print(f"{name:<40}{total:>12.4f}{total / n * 1e6:>16.2f}")
    print(f"{'parsl_tasks.failed (one filter)':<40}{failed:>12.4f}")
    print(f"{'list(parsl_tasks) (one pass)':<40}{listed:>12.4f}")
    met = "met" if ratio <= 3 else "NOT met"
    print(f"parsl_tasks[future.tid] / plain dict: {ratio:.2f}x (target <= 3x: {met})")


if __name__ == "__main__":
    main()
