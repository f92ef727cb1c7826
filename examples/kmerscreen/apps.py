"""The Parsl apps of the adapter screen.

The apps are module-level functions of an importable package, so Parsl
pickles them by reference and an HTEX worker imports this module to run them:
module-level imports and constants work inside the apps. (Apps defined in a
notebook or in ``__main__`` cannot rely on that and import inside their body.)
"""

from __future__ import annotations

import random
import shlex
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from parsl import bash_app, python_app
from parsl.data_provider.files import File

from kmerscreen.model import ADAPTER, MirrorUnavailable, SampleSpec, ScreenReport


@python_app
def simulate_reads(spec: SampleSpec, outputs: Sequence[File] = ()) -> int:
    """Write ``spec.n_reads`` simulated reads as FASTA to ``outputs[0]``; return the count.

    Every third read is soft-masked (lower case), as aligners and some
    base callers emit it, so that the cleaning step has something to do.
    """
    # A seeded generator makes every sample reproducible across runs and executors.
    rng = random.Random(spec.seed)
    with open(outputs[0], "w") as fasta:
        for i in range(spec.n_reads):
            if rng.random() < spec.adapter_rate:
                insert = rng.randint(spec.read_length // 3, spec.read_length - 8)
                tail = ADAPTER[: spec.read_length - insert]
            else:
                insert, tail = spec.read_length, ""
            seq = "".join(rng.choice("ACGT") for _ in range(insert)) + tail
            fasta.write(f">{spec.name}_{i}\n{seq.lower() if i % 3 == 0 else seq}\n")
    return spec.n_reads


@bash_app
def clean_reads(
    inputs: Sequence[File] = (),
    outputs: Sequence[File] = (),
    stdout: str | None = None,
    stderr: str | None = None,
) -> str:
    """Turn FASTA ``inputs[0]`` into one upper-case sequence per line in ``outputs[0]``."""
    source, target = shlex.quote(str(inputs[0])), shlex.quote(str(outputs[0]))
    return f"grep -v '^>' {source} | tr 'acgtn' 'ACGTN' > {target}"


@python_app
def count_kmers(k: int, inputs: Sequence[File] = ()) -> dict[str, int]:
    """Count every k-mer of every sequence line in ``inputs[0]``."""
    counts: Counter[str] = Counter()
    with open(inputs[0]) as sequences:
        for line in sequences:
            seq = line.strip()
            counts.update(seq[i : i + k] for i in range(len(seq) - k + 1))
    return dict(counts)


@python_app
def merge_counts(*per_sample: dict[str, int]) -> dict[str, int]:
    """The reduce step: sum the k-mer counts of all samples."""
    total: Counter[str] = Counter()
    for counts in per_sample:
        total.update(counts)
    return dict(total)


@python_app
def write_table(counts: dict[str, int], outputs: Sequence[File] = ()) -> int:
    """Write ``counts`` as a two-column TSV (k-mer, count) for shell tools; return its rows."""
    with open(outputs[0], "w") as table:
        for kmer, n in sorted(counts.items()):
            table.write(f"{kmer}\t{n}\n")
    return len(counts)


@bash_app
def top_kmers(n: int, inputs: Sequence[File] = (), stdout: str | None = None) -> str:
    """Print the ``n`` most frequent k-mers of TSV ``inputs[0]``, most frequent first.

    Ties are broken alphabetically; ``LC_ALL=C`` makes that order the same on
    every machine, whatever its locale.
    """
    return f"LC_ALL=C sort -k2,2nr -k1,1 {shlex.quote(str(inputs[0]))} | head -n {int(n)}"


@python_app
def fetch_adapter_panel(state_dir: str, k: int, failures_before_success: int = 0) -> list[str]:
    """Fetch the adapter k-mer panel from a flaky mirror.

    The mirror is simulated: the first ``failures_before_success`` attempts
    raise :class:`MirrorUnavailable`. Attempts are counted in a file in
    ``state_dir`` rather than in memory, because each Parsl retry may run in a
    different thread or worker process; a file is shared by all of them.
    """
    attempts_file = Path(state_dir) / "fetch_adapter_panel.attempts"
    attempt = int(attempts_file.read_text()) + 1 if attempts_file.exists() else 1
    attempts_file.write_text(str(attempt))
    if attempt <= failures_before_success:
        raise MirrorUnavailable(f"mirror did not answer (attempt {attempt})")
    return sorted({ADAPTER[i : i + k] for i in range(len(ADAPTER) - k + 1)})


@python_app
def summarise(counts: dict[str, int], panel: list[str], samples: int) -> ScreenReport:
    """Compare the merged counts with the adapter panel."""
    panel_set = set(panel)
    return ScreenReport(
        samples=samples,
        total_kmers=sum(counts.values()),
        distinct_kmers=len(counts),
        adapter_kmers=sum(n for kmer, n in counts.items() if kmer in panel_set),
    )
