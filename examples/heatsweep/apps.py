"""The solver and its post-processing step, as Parsl apps."""

from __future__ import annotations

from parsl import python_app

CELLS = 21  # grid points on [0, 1], so dx = 1/20


class NumericalInstability(ArithmeticError):
    """The explicit scheme blew up: the time step is too large for the grid."""


@python_app(cache=True)
def simulate(dt: float, steps: int = 200, ledger: str | None = None) -> float:
    """Diffuse a unit heat spike (alpha = 1, zero boundaries) for ``steps`` steps of
    ``dt``; return the peak temperature at the end.

    ``cache=True``: Parsl may reuse the result of an earlier call with the same
    arguments instead of running this body again.
    """
    if ledger is not None:
        with open(ledger, "a") as runs:  # one line per body run: the tests' evidence
            runs.write(f"{dt}\n")
    r = dt * (CELLS - 1) ** 2  # alpha * dt / dx**2
    u = [0.0] * CELLS
    u[CELLS // 2] = 1.0
    for step in range(1, steps + 1):
        u = [0.0, *(u[i] + r * (u[i - 1] - 2 * u[i] + u[i + 1]) for i in range(1, CELLS - 1)), 0.0]
        if max(abs(value) for value in u) > 1.0:
            raise NumericalInstability(f"dt={dt} (r={r:.2f} > 0.5) blew up at step {step}")
    return max(u)


@python_app
def peak_decay(dt: float, peak: float) -> str:
    """One CSV row of the sweep's table: the time step and how much the peak decayed."""
    return f"{dt},{1.0 - peak:.4f}"
