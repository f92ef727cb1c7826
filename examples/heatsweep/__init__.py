"""heatsweep: a time-step sweep of an explicit 1-D heat-equation solver.

The research scenario: before a long production run, sweep the time step of
an explicit finite-difference solver to find the largest one that is still
stable. The scheme is stable only while ``r = alpha * dt / dx**2 <= 1/2``;
beyond that the solution oscillates and grows without bound. The solver
checks the maximum principle (no temperature may exceed the initial peak) and
raises :class:`NumericalInstability` instead of returning garbage.

The sweep fans out one simulation (plus a small post-processing step) per
time step. Simulations are expensive, so the solver app is declared with
``cache=True``: Parsl can reuse a result within a run (app caching) and across
runs (checkpoints). Every time its body runs it appends a line to a *ledger*
file, which is how the tests prove what ran and what was reused.
"""

from heatsweep.apps import NumericalInstability, peak_decay, simulate
from heatsweep.sweep import completed, sweep

__all__ = ["NumericalInstability", "completed", "peak_decay", "simulate", "sweep"]
