"""Coverage inside the plugin's HTEX workers.

When coverage.py measures the test session (``coverage run -m pytest``,
pytest-cov's ``--cov``, or a coverage that a conftest started), the workers of
the plugin's HTEX, which run the apps, are measured too, with no set-up:

- in the test session, :func:`worker_environment` finds the running
  ``Coverage`` and describes it (its configuration, its data file and a
  suffix for the workers' data files) in an environment variable that the
  block's ``worker_init`` exports;
- in the worker pool (``_htex_pool``), :func:`covered_fork_context` gives
  Parsl a fork context whose worker processes start their own ``Coverage``
  from that description and save their data when they end: when their task
  loop returns, and on SIGTERM, with which the pool and the plugin end them;
- the workers' data files sit beside the session's data file, named as
  coverage's parallel files are (``.coverage.parslflow.<...>``), so
  ``coverage combine`` and pytest-cov (which combines at the end of the
  session) pick them up. Where the session's coverage writes one plain data
  file (``coverage run`` without ``parallel``), they are combined into it when
  the session's process exits, after coverage saved it: ``coverage report``
  then shows the workers' lines with no ``coverage combine``.

A worker pool that inherited a running coverage (coverage's own subprocess
measurement, ``patch = subprocess``) gets the same treatment: its workers do
not save the pool's data as theirs but start afresh with its configuration.

This module imports only the standard library at import time, so the worker
pool can load it by file path without importing pytest.
"""

from __future__ import annotations

import atexit
import base64
import glob
import json
import os
import random
import signal
import socket
import sys
from multiprocessing.context import ForkContext, ForkProcess
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from coverage import Coverage

#: the environment variable carrying the session's coverage to the worker pool
COVERAGE_ENV = "PARSLFLOW_COVERAGE"
#: the first part of the workers' data file suffix
SUFFIX_PREFIX = "parslflow"
#: coverage's marker for a serialized configuration in place of a config file name
_CONFIG_DATA_PREFIX = ":data:"

#: options copied one by one from the session's coverage where it cannot serialize
#: its whole configuration (coverage before 7.10)
_COPIED_OPTIONS = (
    "run:branch",
    "run:concurrency",
    "run:context",
    "run:cover_pylib",
    "run:dynamic_context",
    "run:include",
    "run:omit",
    "run:plugins",
    "run:relative_files",
    "run:source",
    "run:source_pkgs",
    "run:timid",
)

_session_token = ""
_merging: list[tuple[Coverage, str]] = []


# --- in the test session ---------------------------------------------------------------


def session_coverage() -> Coverage | None:
    """The coverage measuring this process, if any; coverage is not imported for it."""
    module = sys.modules.get("coverage")
    if module is None:
        return None
    current = getattr(module.Coverage, "current", None)
    cov: Coverage | None = current() if current is not None else None
    return cov


def _data_base(cov: Coverage) -> str:
    """The absolute path of ``cov``'s data file, without a parallel suffix."""
    data = getattr(cov, "_data", None)  # made when it started, from the cwd it had then
    base = getattr(data, "base_filename", None)
    if callable(base):
        return str(base())
    return os.path.abspath(str(cov.get_option("run:data_file")))


def _describe(cov: Coverage, data_base: str, suffix: str) -> str:
    spec: dict[str, Any] = {"data_file": data_base, "suffix": suffix}
    serialize = getattr(cov.config, "serialize", None)
    if callable(serialize):
        spec["config"] = serialize()
    else:
        options: dict[str, Any] = {}
        for name in _COPIED_OPTIONS:
            try:
                options[name] = cov.get_option(name)
            except Exception:
                continue
        spec["config_file"] = cov.config.config_file
        spec["options"] = options
    return base64.b64encode(json.dumps(spec).encode()).decode("ascii")


def _process_config(cov: Coverage, data_file: str) -> str | None:
    """``cov``'s configuration for coverage's own subprocess measurement
    (``COVERAGE_PROCESS_CONFIG``, coverage 7.10 and newer), writing parallel data files
    that start with ``data_file`` and saving them on SIGTERM too."""
    serialize = getattr(cov.config, "serialize", None)
    if not callable(serialize):
        return None
    config = json.loads(base64.b64decode(serialize()))
    config.update(data_file=data_file, parallel=True, sigterm=True)
    return base64.b64encode(json.dumps(config).encode()).decode("ascii")


def worker_environment(own_pool: bool = True) -> dict[str, str]:
    """The environment the plugin's HTEX workers need to be measured by the coverage
    that measures this process: ``{}`` where none does.

    ``own_pool``: the plugin's worker pool (``_htex_pool``) runs the workers; else
    Parsl's own pool (a Parsl older than 2025.4) does, whose spawned workers coverage's
    subprocess measurement starts in (``COVERAGE_PROCESS_CONFIG``, coverage 7.10+)."""
    global _session_token
    cov = session_coverage()
    if cov is None:
        return {}
    if not _session_token:
        _session_token = f"{os.getpid()}-{random.randint(0, 999999):06d}"
    base = _data_base(cov)
    suffix = f"{SUFFIX_PREFIX}.{_session_token}"
    if not any(known is cov for known, _ in _merging):
        if not _merging:
            atexit.register(_combine_into_plain_data_files)
        _merging.append((cov, f"{base}.{suffix}.*"))
    if own_pool:
        return {COVERAGE_ENV: _describe(cov, base, suffix)}
    config = _process_config(cov, f"{base}.{suffix}")
    return {} if config is None else {"COVERAGE_PROCESS_CONFIG": config}


def _combine_into_plain_data_files() -> None:
    """At exit, after ``coverage run`` saved its data: fold the workers' data files into
    a coverage's plain (not parallel) data file. Parallel data is left for
    ``coverage combine`` or pytest-cov, which read the workers' files with the rest."""
    for cov, pattern in _merging:
        files = sorted(glob.glob(pattern))
        if not files:
            continue
        try:
            data = cov.get_data()
            if data.data_filename() != data.base_filename():
                continue
            cov.combine(data_paths=files, keep=False)
            cov.save()
        except Exception as exc:  # never fail the exit of a test session over this
            print(f"pytest-parslflow: could not combine the HTEX workers' coverage data: {exc}")


# --- in the worker pool and its workers ----------------------------------------------


def _coverage_from(spec_text: str) -> Coverage:
    from coverage import Coverage

    spec = json.loads(base64.b64decode(spec_text))
    suffix = (
        f"{spec['suffix']}.{socket.gethostname()}.{os.getpid()}.X{random.randint(0, 999999):06d}"
    )
    if "config" in spec:
        cov = Coverage(config_file=_CONFIG_DATA_PREFIX + spec["config"], data_suffix=suffix)
    else:
        cov = Coverage(config_file=spec["config_file"] or False, data_suffix=suffix)
        for name, value in spec["options"].items():
            try:
                cov.set_option(name, value)
            except Exception:
                continue
    cov.set_option("run:data_file", spec["data_file"])
    return cov


def _restarted(inherited: Coverage) -> Coverage | None:
    """A fresh coverage with the configuration of one this process inherited by fork."""
    from coverage import Coverage

    serialize = getattr(inherited.config, "serialize", None)
    if not callable(serialize):
        return None
    return Coverage(config_file=_CONFIG_DATA_PREFIX + serialize(), data_suffix=True)


def start_worker_coverage(spec_text: str | None) -> Coverage | None:
    """In a forked worker: stop a coverage inherited from the pool without saving the
    pool's data as this worker's, and start this worker's own; it saves on SIGTERM."""
    inherited = _disarm_inherited()
    if spec_text:
        cov = _coverage_from(spec_text)
    elif inherited is not None:
        restarted = _restarted(inherited)
        if restarted is None:
            return None
        cov = restarted
    else:
        return None
    cov.set_option("run:sigterm", True)
    # As coverage's own subprocess measurement does: these warnings would land in the
    # block's submit_scripts/*.err, read in failure reports, for every idle worker.
    cov._warn_no_data = False
    cov._warn_unimported_source = False
    cov._warn_preimported_source = False
    cov.start()
    return cov


def save_worker_coverage(cov: Coverage) -> None:
    """The worker's task loop returned: save its data, unbothered by a SIGTERM."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    cov.stop()
    cov.save()


class CoveredForkProcess(ForkProcess):
    """A forked process of the worker pool that measures itself (Parsl's workers), or,
    for the pool's multiprocessing manager, at least leaves the pool's coverage alone."""

    spec: str | None = None

    def run(self) -> None:
        target = getattr(self, "_target", None)
        if getattr(target, "__name__", "") == "_run_server":  # the multiprocessing manager
            _disarm_inherited()
            super().run()
            return
        cov = start_worker_coverage(self.spec)
        try:
            super().run()
        finally:
            if cov is not None:
                save_worker_coverage(cov)


def _disarm_inherited() -> Coverage | None:
    """Stop a coverage this process inherited by fork, so that it neither measures this
    process nor saves the parent's data as this process's (at exit or on SIGTERM)."""
    from coverage import Coverage

    inherited = Coverage.current()
    if inherited is not None:
        inherited._auto_save = False
        inherited.stop()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return inherited


def covered_fork_context(spec_text: str | None) -> ForkContext:
    """Parsl's process context for the worker pool: fork, with measured workers."""

    measured = type("CoveredForkProcess", (CoveredForkProcess,), {"spec": spec_text})
    context = type("CoveredForkContext", (ForkContext,), {"Process": measured})
    made: ForkContext = context()
    return made


def pool_needs_coverage() -> bool:
    """Whether the worker pool's workers are to be measured: the session asked for it, or
    the pool itself runs under coverage's subprocess measurement."""
    return bool(os.environ.get(COVERAGE_ENV)) or session_coverage() is not None
