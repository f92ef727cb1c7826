"""pytest-parslflow: workflow-aware testing of Parsl workflows.

Importing this package must stay cheap: it does not import Parsl, and the fixture
classes below are imported only when first asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pytest_parslflow.settings import ParslSettings

if TYPE_CHECKING:  # for type checkers; at run time imported on first use, below
    from pytest_parslflow.faults import InjectedFault, ParslFaults
    from pytest_parslflow.lifecycle import ParslRestart, ParslRestartError
    from pytest_parslflow.monitoring import ParslMonitoring
    from pytest_parslflow.tasks import ParslTask, ParslTasks

__version__ = "0.1.0"

_LAZY = {
    "ParslTask": "pytest_parslflow.tasks",
    "ParslTasks": "pytest_parslflow.tasks",
    "ParslFaults": "pytest_parslflow.faults",
    "InjectedFault": "pytest_parslflow.faults",
    "ParslMonitoring": "pytest_parslflow.monitoring",
    "ParslRestart": "pytest_parslflow.lifecycle",
    "ParslRestartError": "pytest_parslflow.lifecycle",
}
__all__ = [
    "InjectedFault",
    "ParslFaults",
    "ParslMonitoring",
    "ParslRestart",
    "ParslRestartError",
    "ParslSettings",
    "ParslTask",
    "ParslTasks",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_parslflow' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
