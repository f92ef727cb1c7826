"""The adapter screen as one Parsl workflow: apps chained by their futures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from parsl.app.futures import DataFuture
from parsl.data_provider.files import File
from parsl.dataflow.futures import AppFuture

from kmerscreen.apps import (
    clean_reads,
    count_kmers,
    fetch_adapter_panel,
    merge_counts,
    simulate_reads,
    summarise,
    top_kmers,
    write_table,
)
from kmerscreen.model import SampleSpec


@dataclass(frozen=True)
class ScreenFutures:
    """The futures of one screen, so that callers (and tests) can wait on any stage."""

    per_sample: dict[str, AppFuture]
    merged: AppFuture
    table: DataFuture
    top: AppFuture
    report: AppFuture


def screen_samples(
    samples: Sequence[SampleSpec],
    workdir: Path,
    k: int = 6,
    top: int = 5,
    mirror_failures: int = 0,
) -> ScreenFutures:
    """Submit the whole screen and return its futures at once.

    Nothing here waits: each app receives the futures of the apps it depends
    on, and Parsl starts it when they are done. Independent samples run in
    parallel, and the panel fetch runs alongside the counting. Files go to
    ``workdir``; ``mirror_failures`` makes the panel fetch fail that many times
    before it succeeds (see :func:`fetch_adapter_panel`).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    per_sample: dict[str, AppFuture] = {}
    for spec in samples:
        raw = simulate_reads(spec, outputs=[File(str(workdir / f"{spec.name}.fasta"))])
        clean = clean_reads(
            inputs=[raw.outputs[0]],
            outputs=[File(str(workdir / f"{spec.name}.seq"))],
            # The shell's own complaints land next to the data, not in the void.
            stderr=str(workdir / f"{spec.name}.clean.err"),
        )
        per_sample[spec.name] = count_kmers(k, inputs=[clean.outputs[0]])

    merged = merge_counts(*per_sample.values())
    table = write_table(merged, outputs=[File(str(workdir / "kmer_counts.tsv"))]).outputs[0]
    top_future = top_kmers(top, inputs=[table], stdout=str(workdir / "top_kmers.txt"))
    panel = fetch_adapter_panel(str(workdir), k, failures_before_success=mirror_failures)
    report = summarise(merged, panel, len(per_sample))
    return ScreenFutures(per_sample, merged, table, top_future, report)
