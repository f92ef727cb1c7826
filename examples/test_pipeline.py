"""The adapter screen end to end: simulate, clean, count, merge, fetch, summarise.

Tutorial sections: the workflow is built as in the previous chapter ("Intro to
Workflows"); ``test_failed_fetch_spares_independent_branches`` is "Lazy Failure"
in a real pipeline; ``test_screen_on_each_executor`` runs the same pipeline on
both executors, the thread pool inside the test process and an HTEX whose
interchange, manager and workers each write the logs that "Local Logs"
describes, in the test's own run directory.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from parsl.dataflow.dflow import DataFlowKernel
from parsl.dataflow.errors import DependencyError

from kmerscreen import ADAPTER, MirrorUnavailable, SampleSpec, ScreenReport, screen_samples

# Every test in this module gets a DataFlowKernel with four workers; a mark on
# a test adds to it (the closest mark wins per argument).
pytestmark = pytest.mark.parsl(workers=4)

K = 6


def kmers_per_sample(spec: SampleSpec) -> int:
    """Every read of length L holds L - k + 1 k-mers."""
    return spec.n_reads * (spec.read_length - K + 1)


@pytest.mark.parsl(retries=2)
def test_screen_end_to_end(samples: list[SampleSpec], tmp_path: Path) -> None:
    screen = screen_samples(samples, tmp_path, k=K, top=5, mirror_failures=1)

    report: ScreenReport = screen.report.result()
    assert report.samples == 3
    assert report.total_kmers == sum(kmers_per_sample(s) for s in samples)
    # The merged counts are exactly the sum of the per-sample counts (the reduce step).
    expected: Counter[str] = Counter()
    for future in screen.per_sample.values():
        expected.update(future.result())
    assert screen.merged.result() == dict(expected)

    # The bash app's stdout file holds the same top five that Python computes.
    assert screen.top.result() == 0
    top_lines = (tmp_path / "top_kmers.txt").read_text().splitlines()
    by_rank = sorted(expected.items(), key=lambda item: (-item[1], item[0]))[:5]
    assert top_lines == [f"{kmer}\t{n}" for kmer, n in by_rank]

    # The finding: the degraded library's read-through makes adapter k-mers the
    # most frequent of the run, several percent of all k-mers (random reads: ~0.5%).
    assert all(line.split("\t")[0] in ADAPTER for line in top_lines)
    assert report.adapter_fraction > 0.05


@pytest.mark.parsl(retries=0)
def test_failed_fetch_spares_independent_branches(
    samples: list[SampleSpec], tmp_path: Path
) -> None:
    """Lazy failure: only the apps downstream of the failed fetch fail."""
    screen = screen_samples(samples, tmp_path, k=K, mirror_failures=1)

    with pytest.raises(DependencyError) as failure:
        screen.report.result()
    root_cause = failure.value.dependent_exceptions_tids[0][0]
    assert isinstance(root_cause, MirrorUnavailable)
    # Counting never needed the panel, so its results are all there.
    assert sum(screen.merged.result().values()) == sum(kmers_per_sample(s) for s in samples)
    assert screen.top.result() == 0


@pytest.mark.htex
@pytest.mark.parsl(executor=["thread", "htex"], retries=1)
def test_screen_on_each_executor(
    tmp_path: Path, parsl_dfk: DataFlowKernel, parsl_run_dir: Path
) -> None:
    """The same workflow on threads and on HTEX worker processes.

    On HTEX the apps run in other processes, so this checks that everything
    crossing to them pickles, and that the retry's file-based state is shared.
    """
    spec = SampleSpec("liver", seed=1)
    report = screen_samples([spec], tmp_path, k=K, mirror_failures=1).report.result()

    assert report.total_kmers == kmers_per_sample(spec)
    assert (tmp_path / "fetch_adapter_panel.attempts").read_text() == "2"
    # Each run of the test has its own logs: parsl.log, and on HTEX the executor's.
    logs = parsl_run_dir / "000"
    assert (logs / "parsl.log").is_file()
    if "htex_local" in parsl_dfk.executors:
        assert (logs / "htex_local" / "interchange.log").is_file()
        assert list(logs.glob("htex_local/block-0/*/manager.log"))
