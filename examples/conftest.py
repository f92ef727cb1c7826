"""Shared setup for the kmerscreen example tests.

Run them from the repository root with ``pytest -p parslflow examples/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# Make ``import kmerscreen`` work under every pytest import mode (``importlib``
# mode does not touch sys.path). It must be on sys.path before a test loads its
# DataFlowKernel: the plugin hands the session's sys.path to HTEX workers, which
# import kmerscreen to run its apps.
EXAMPLES = str(Path(__file__).resolve().parent)
if EXAMPLES not in sys.path:
    sys.path.insert(0, EXAMPLES)

from kmerscreen import SampleSpec  # noqa: E402  (needs the path set above)


def pytest_configure(config: pytest.Config) -> None:
    # Registered here too, so that `--strict-markers` passes wherever these tests are copied.
    config.addinivalue_line("markers", "htex: starts a real HighThroughputExecutor (slower)")


@pytest.fixture
def samples() -> list[SampleSpec]:
    """A small sequencing run: two clean libraries and one with short inserts."""
    return [
        SampleSpec("liver", seed=1),
        SampleSpec("kidney", seed=2),
        SampleSpec("degraded", seed=3, adapter_rate=0.5),
    ]
