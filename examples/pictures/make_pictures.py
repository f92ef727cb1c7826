"""Regenerate the example pictures, annotations and job summary in this folder from real
Parsl runs, so that what the README shows stays true.

Run from the repository root::

    .venv/bin/python examples/pictures/make_pictures.py

Two failing tests run with ``pytest -p parslflow`` in a temporary folder, as GitHub
Actions would run them (``GITHUB_ACTIONS=true``, a ``GITHUB_STEP_SUMMARY`` file,
``--parslflow-artifacts``):

- ``five_tasks.svg``: five tasks on HTEX, one app failing both of its tries, the task
  depending on it a ``dep_fail``; the timeline has one lane per HTEX worker;
- ``thousand_tasks.svg``: 1,000 tasks (250 four-step chains) on HTEX, two of them
  failing: the graph is drawn by app;
- ``annotations.txt``: the ``::error`` lines the session printed;
- ``job_summary.md``: what it appended to the job summary.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

WORKFLOW = """
import pytest
from parsl import python_app


@python_app
def fetch(station):
    return f"{station}.csv"


@python_app
def calibrate(path):
    if path in ("S4.csv", "S140.csv"):
        raise ValueError(f"calibration table missing for {path}")
    return path


@python_app
def report(path):
    return f"report of {path}"


@pytest.mark.parsl(executor="htex", retries=1)
def test_five_tasks():
    fetched = [fetch(s) for s in ("S1", "S2", "S3")]
    failed = report(calibrate("S4.csv"))
    assert [f.result() for f in fetched] == ["S1.csv", "S2.csv", "S3.csv"]
    failed.result()


@python_app
def merge(path):
    return path


@pytest.mark.parsl(executor="htex", workers=2)
def test_thousand_tasks():
    merged = [merge(report(calibrate(fetch(f"S{i}")))) for i in range(250)]
    errors = [m.exception() for m in merged]  # every chain ends before the test fails
    assert errors == [None] * len(merged)
"""


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="parslflow-pictures-") as folder:
        work = Path(folder)
        (work / "test_stations.py").write_text(WORKFLOW)
        summary = work / "summary.md"
        env = {
            **os.environ,
            "GITHUB_ACTIONS": "true",
            "GITHUB_STEP_SUMMARY": str(summary),
            "GITHUB_WORKSPACE": str(work),
        }
        env.pop("PYTEST_ADDOPTS", None)
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "parslflow",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:pytest_github_actions_annotate_failures",
            "--parslflow-artifacts",
            "parsl-artifacts",
            "-q",
            "test_stations.py",
        ]
        done = subprocess.run(
            command, cwd=work, env=env, capture_output=True, text=True, timeout=600
        )
        if "2 failed" not in done.stdout:
            print(done.stdout[-4000:], done.stderr[-2000:], sep="\n")
            print("expected both tests to fail", file=sys.stderr)
            return 1
        artifacts = work / "parsl-artifacts"
        for test in ("five_tasks", "thousand_tasks"):
            source = artifacts / f"test_stations.py__test_{test}" / "parsl-run.svg"
            shutil.copy(source, HERE / f"{test}.svg")
        annotations = [line for line in done.stdout.splitlines() if line.startswith("::error ")]
        (HERE / "annotations.txt").write_text("\n".join(annotations) + "\n")
        # the temporary folder's name changes with every run
        (HERE / "job_summary.md").write_text(re.sub(r"/tmp/\S+/", "", summary.read_text()))
        for path in sorted(HERE.iterdir()):
            if path.suffix in (".svg", ".txt", ".md"):
                print(f"{path.relative_to(HERE.parent.parent)}: {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
