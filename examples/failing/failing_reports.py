"""Deliberately failing tests that show the failure report for each kind of failure.

Not collected by the main job (the file name does not start with ``test_``); run it
on purpose:

    pytest -p parslflow examples/failing/failing_reports.py
"""

from __future__ import annotations

import pytest
from parsl import bash_app, python_app


@python_app
def normalise(sample: str) -> str:
    return sample.lower()


@python_app
def align(sample: str) -> str:
    raise ValueError(f"reference genome missing for {sample}")


@python_app
def call_variants(alignment: str) -> str:
    return f"variants of {alignment}"


@bash_app
def index_reference(stdout: str | None = None, stderr: str | None = None) -> str:
    return "echo 'indexing reference'; echo 'bwa: reference.fa: No such file' >&2; exit 2"


@pytest.mark.parsl(retries=1)
def test_app_fails_after_retries() -> None:
    """An app raises on every try; the task that depends on it is a dep_fail."""
    samples = [normalise(s) for s in ("S1", "S2", "S3")]
    variants = call_variants(align("S4"))
    assert [s.result() for s in samples] == ["s1", "s2", "s3"]
    variants.result()


@pytest.mark.parsl
def test_bash_app_exits_non_zero(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A bash app exits 2: the report shows the exit code and its stderr file."""
    index_reference(stdout=str(tmp_path / "index.out"), stderr=str(tmp_path / "index.err")).result()
