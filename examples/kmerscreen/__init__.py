"""kmerscreen: screen sequencing reads for adapter contamination with Parsl.

The research scenario: a sequencing run produced reads for several samples,
and before assembly we want to know how much of the data is adapter
sequence left over from library preparation. The workflow

1. simulates each sample's reads (a stand-in for the sequencer's FASTA),
2. cleans them with a shell pipeline (drop headers, normalise soft-masked bases),
3. counts k-mers per sample and merges the counts (the reduce step),
4. fetches the adapter k-mer panel from a mirror that fails transiently,
5. reports the fraction of all k-mers that match the adapter panel.

Its retry policy (:func:`retry_transient`) retries only failures of the
mirror, the network or the node, never a bug.

Every app takes its working directory as an argument, so tests can point it
at pytest's temporary directories.
"""

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
from kmerscreen.model import ADAPTER, MirrorUnavailable, SampleSpec, ScreenReport
from kmerscreen.pipeline import ScreenFutures, screen_samples
from kmerscreen.policy import retry_transient

__all__ = [
    "ADAPTER",
    "MirrorUnavailable",
    "SampleSpec",
    "ScreenFutures",
    "ScreenReport",
    "clean_reads",
    "count_kmers",
    "fetch_adapter_panel",
    "merge_counts",
    "retry_transient",
    "screen_samples",
    "simulate_reads",
    "summarise",
    "top_kmers",
    "write_table",
]
