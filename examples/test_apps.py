"""Single apps of the adapter screen, each in its own Parsl run.

Tutorial sections: the apps come from the previous chapter ("Intro to
Workflows"); the flaky mirror tests are the simplest form of "Retries" (see
``test_retries.py`` for retry handlers and fault injection).

The ``parsl`` marker gives every test here a loaded DataFlowKernel with its
own run directory, so app calls just work and no two tests share ``runinfo/``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from parsl.data_provider.files import File

from kmerscreen import ADAPTER, MirrorUnavailable, clean_reads, fetch_adapter_panel


@pytest.mark.parsl
def test_clean_reads_strips_headers_and_soft_masking(tmp_path: Path) -> None:
    fasta = tmp_path / "sample.fasta"
    fasta.write_text(">read_0 lane=1\nacgtAC\n>read_1 lane=1\nGGCCTA\n>read_2\nnnACGT\n")
    cleaned = tmp_path / "sample.seq"

    future = clean_reads(inputs=[File(str(fasta))], outputs=[File(str(cleaned))])

    # A bash app's result is its exit code; the data is in the file it wrote.
    assert future.result() == 0
    assert cleaned.read_text() == "ACGTAC\nGGCCTA\nNNACGT\n"


@pytest.mark.parsl(retries=2)
def test_flaky_mirror_is_survived_with_retries(tmp_path: Path, parsl_run_dir: Path) -> None:
    panel = fetch_adapter_panel(str(tmp_path), k=6, failures_before_success=2).result()

    assert panel[0] in ADAPTER and len(panel) == len(set(panel))
    # Two failed tries and the successful third, all counted in the same state file.
    assert (tmp_path / "fetch_adapter_panel.attempts").read_text() == "3"
    # The failed tries are invisible in the result; parsl.log of this test's own
    # run (000/ under parsl_run_dir) is where they are recorded.
    log = (parsl_run_dir / "000" / "parsl.log").read_text()
    assert log.count("failed with exception of type MirrorUnavailable") == 2


@pytest.mark.parsl(retries=0)
def test_flaky_mirror_fails_without_retries(tmp_path: Path) -> None:
    future = fetch_adapter_panel(str(tmp_path), k=6, failures_before_success=2)

    # Parsl re-raises the app's own exception type from .result().
    with pytest.raises(MirrorUnavailable, match="attempt 1"):
        future.result()
    assert (tmp_path / "fetch_adapter_panel.attempts").read_text() == "1"
