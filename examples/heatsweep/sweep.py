"""The sweep: one independent branch (simulate, then peak_decay) per time step."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterable, Mapping
from pathlib import Path

from parsl.dataflow.futures import AppFuture

from heatsweep.apps import peak_decay, simulate


def sweep(time_steps: Iterable[float], ledger: Path | None = None) -> dict[float, AppFuture]:
    """Submit one branch per time step and return the future of each branch's row.

    Nothing waits here. A branch whose simulation fails ends in ``dep_fail``;
    Parsl's lazy failure lets every other branch run to completion.
    """
    return {
        dt: peak_decay(dt, simulate(dt, ledger=str(ledger) if ledger else None))
        for dt in time_steps
    }


def completed(rows: Mapping[float, AppFuture]) -> dict[float, str]:
    """Wait for every branch and keep the rows of those that succeeded."""
    concurrent.futures.wait(list(rows.values()))
    return {dt: row.result() for dt, row in rows.items() if row.exception() is None}
