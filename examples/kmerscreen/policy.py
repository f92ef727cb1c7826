"""The screen's retry policy: which failures are worth another try.

Parsl calls a ``retry_handler(exception, task_record)`` after every failed try
and adds the float it returns to the task's failure cost; the task is retried
while that cost stays within ``Config.retries``. Without a handler every
failure costs 1, so a typo is retried as patiently as a network hiccup.
"""

from __future__ import annotations

import math
from typing import Any

from parsl.executors.high_throughput.errors import WorkerLost

#: failures that say nothing about the task itself: the mirror, the network, the node
TRANSIENT = (ConnectionError, TimeoutError, WorkerLost)


def retry_transient(exception: BaseException, task_record: Any) -> float:
    """Spend one retry on a transient failure; never retry anything else (a bug or
    bad input fails the same way every time, so retrying only delays the report)."""
    return 1.0 if isinstance(exception, TRANSIENT) else math.inf
