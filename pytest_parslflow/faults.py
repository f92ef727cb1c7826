"""Deterministic fault injection for retry and fault-tolerance tests.

``parsl_faults.fail(app, tries=2)`` returns a copy of ``app`` whose first two tries
of each task raise; ``parsl_faults.lose_worker(app, on_try=1)`` one whose worker is
lost on a task's first try. Tries are counted in files under the test's run
directory, so the count is shared by threads and by HTEX worker processes alike:
no randomness, the same outcome on every executor.
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import os
import pickle
import signal
from pathlib import Path
from typing import Any

#: a fault's exception when none is given
DEFAULT_EXCEPTION = RuntimeError


class InjectedFault(RuntimeError):
    """The default exception of ``parsl_faults.fail``."""


def _next_try(folder: str, key: str) -> int:
    """Count one more try of the task ``key`` (1 for its first) across processes."""
    path = Path(folder) / f"{key}.tries"
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        tries = int(handle.read() or 0) + 1
        handle.seek(0)
        handle.truncate()
        handle.write(str(tries))
    return tries


def _lose_worker(label: str) -> None:
    """End the process that runs the try, as a crashed node would; in the test's own
    process (thread executor) raise the error Parsl gives for a lost worker instead."""
    if "PARSL_WORKER_RANK" in os.environ:  # an HTEX worker
        os.kill(os.getpid(), signal.SIGKILL)
    from parsl.executors.high_throughput.errors import WorkerLost

    raise WorkerLost(-1, f"{label} (worker lost by parsl_faults)")


class FaultyCall:
    """The body of an app with a fault injected; picklable, so it runs on HTEX workers."""

    def __init__(
        self,
        func: Any,
        folder: str,
        fail_tries: int = 0,
        exception: BaseException | None = None,
        lose_on_try: int | None = None,
    ) -> None:
        self.func = func
        self.folder = folder
        self.fail_tries = fail_tries
        self.exception = exception
        self.lose_on_try = lose_on_try
        self.__name__ = getattr(func, "__name__", "app")
        self.__doc__ = getattr(func, "__doc__", None)
        self.__wrapped__ = func  # inspect.signature sees the app's own parameters

    def _key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The task, by its arguments: pickled, since a repr may hold a memory address
        that differs in every worker process (a Parsl ``File``, for one)."""
        call = (self.__name__, args, sorted(kwargs.items()))
        try:
            data = pickle.dumps(call, protocol=4)
        except Exception:
            data = repr(call).encode()
        return hashlib.md5(data).hexdigest()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        tries = _next_try(self.folder, self._key(args, kwargs))
        if self.lose_on_try == tries:
            _lose_worker(self.__name__)
        if tries <= self.fail_tries:
            exception = copy.copy(self.exception) if self.exception is not None else None
            raise exception or InjectedFault(f"injected failure of try {tries} of {self.__name__}")
        return self.func(*args, **kwargs)


def _register_memo_id() -> None:
    """Memoization and checkpoints treat a faulty app as the app itself."""
    from parsl.dataflow.memoization import id_for_memo

    @id_for_memo.register(FaultyCall)
    def _(call: FaultyCall, output_ref: bool = False) -> bytes:
        result: bytes = id_for_memo(call.func, output_ref=output_ref)
        return result


class ParslFaults:
    """The ``parsl_faults`` fixture: copies of apps that fail or lose their worker on
    chosen tries. Tries are counted per task (per distinct arguments)."""

    def __init__(self, run_dir: Path) -> None:
        self._folder = run_dir / "faults"
        self._count = 0

    def _copy(self, app: Any, **fault: Any) -> Any:
        from parsl.app.bash import BashApp
        from parsl.app.python import PythonApp

        if not isinstance(app, (PythonApp, BashApp)):
            raise TypeError(
                f"parsl_faults takes an app made with @python_app or @bash_app, "
                f"got {type(app).__name__}"
            )
        _register_memo_id()
        self._count += 1
        folder = self._folder / f"{self._count}-{app.func.__name__}"
        folder.mkdir(parents=True, exist_ok=True)
        body = FaultyCall(app.func, os.fspath(folder), **fault)
        options: dict[str, Any] = {
            "data_flow_kernel": app.data_flow_kernel,
            "cache": app.cache,
            "executors": app.executors,
            "ignore_for_cache": app.ignore_for_cache,
        }
        if isinstance(app, PythonApp):
            options["join"] = app.join
        return type(app)(body, **options)

    def fail(self, app: Any, tries: int = 1, exception: BaseException | None = None) -> Any:
        """A copy of ``app`` whose first ``tries`` tries of each task raise ``exception``
        (``InjectedFault`` by default) before its body runs."""
        if tries < 0:
            raise ValueError(f"tries must be >= 0, got {tries}")
        return self._copy(app, fail_tries=tries, exception=exception)

    def lose_worker(self, app: Any, on_try: int = 1) -> Any:
        """A copy of ``app`` that loses its worker on try ``on_try`` (1 is the first) of
        each task: on HTEX the worker process is killed (Parsl reports ``WorkerLost``);
        on the thread executor the try raises ``WorkerLost``."""
        if on_try < 1:
            raise ValueError(f"on_try must be >= 1, got {on_try}")
        return self._copy(app, lose_on_try=on_try)
