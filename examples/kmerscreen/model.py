"""Plain data shared by the apps and the pipeline.

These live in an importable module (not in a test file or ``__main__``) so
that HTEX workers can unpickle them: Parsl pickles classes by reference.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The start of the Illumina TruSeq adapter: reads that run past the end of a
#: short DNA fragment continue into this sequence.
ADAPTER = "AGATCGGAAGAGCACACGTCTGAACTCCAGTCAC"


class MirrorUnavailable(ConnectionError):
    """The reference mirror did not answer; transient, so worth a retry."""


@dataclass(frozen=True)
class SampleSpec:
    """How to simulate one sample's reads.

    ``adapter_rate`` is the fraction of reads whose fragment was shorter than
    the read, so that its tail is adapter sequence.
    """

    name: str
    seed: int
    n_reads: int = 40
    read_length: int = 36
    adapter_rate: float = 0.0


@dataclass(frozen=True)
class ScreenReport:
    """The outcome of a screen across all samples."""

    samples: int
    total_kmers: int
    distinct_kmers: int
    adapter_kmers: int

    @property
    def adapter_fraction(self) -> float:
        """Share of all k-mer occurrences that come from the adapter panel."""
        return self.adapter_kmers / self.total_kmers if self.total_kmers else 0.0
