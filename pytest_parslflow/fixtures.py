"""The fixtures a Parsl test uses: ``parsl_run_dir``, ``parsl_config``, ``parsl_dfk``,
``parsl_tasks``, ``parsl_restart``, ``parsl_faults`` and ``parsl_monitoring``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_parslflow.lifecycle import (
    TEST_RUN,
    ParslRestart,
    ParslTestRun,
    item_settings,
    load_problem,
    run_base_name,
)
from pytest_parslflow.settings import SettingsError

if TYPE_CHECKING:
    from parsl.config import Config
    from parsl.dataflow.dflow import DataFlowKernel

    from pytest_parslflow.faults import ParslFaults
    from pytest_parslflow.monitoring import ParslMonitoring
    from pytest_parslflow.tasks import ParslTasks


def _test_run(request: pytest.FixtureRequest) -> ParslTestRun:
    item = request.node
    known: ParslTestRun | None = item.stash.get(TEST_RUN, None)
    if known is not None:
        return known
    try:
        settings = item_settings(item)
    except SettingsError as exc:
        message = str(exc)
    else:
        if settings.scope != "function":
            from pytest_parslflow.shared import shared_runs

            shared = shared_runs(request.config).run_for(item, settings)
            run = ParslTestRun(settings, shared.base, shared=shared, name=item.nodeid)
        else:
            factory: pytest.TempPathFactory = request.getfixturevalue("tmp_path_factory")
            base = factory.mktemp(run_base_name(item), numbered=True)
            run = ParslTestRun(settings, base, name=item.nodeid)
            run.run_dir.mkdir()
        item.stash[TEST_RUN] = run
        return run
    pytest.fail(message, pytrace=False)


@pytest.fixture
def parsl_run_dir(request: pytest.FixtureRequest) -> Path:
    """This test's own Parsl run directory (the base holding ``000/``, ``001/``, ...)."""
    return _test_run(request).run_dir


def _config_in_use(config: Config) -> str:
    """Why ``config`` cannot be loaded for the test, if a running DFK already loaded it
    (a suite's session-scoped ``parsl_config`` fixture, shared with its own DFK)."""
    from pytest_parslflow.ownership import loaded_dfk, owner_of

    other = loaded_dfk()
    if other is None or other.config is not config or other.cleanup_called:
        return ""
    owner = owner_of(other)
    by = f" by {owner.describe()}" if owner else ""
    return (
        f"the parsl_config fixture gives the Config that the DataFlowKernel loaded{by} "
        f"already runs (run dir {other.run_dir}), and Parsl cannot load a Config twice, so "
        f"the test runs on the plugin's own Config; to give it yours, make parsl_config "
        f"return a new Config per call (function scope) or implement "
        f"pytest_parslflow_make_config"
    )


@pytest.fixture
def parsl_config(request: pytest.FixtureRequest) -> Config:
    """The ``parsl.config.Config`` this test will load; override it in a conftest to supply
    your own (the plugin still sets its ``run_dir`` and the marker's explicit settings);
    an override that returns ``None`` leaves the choice to the plugin."""
    return request.getfixturevalue("_parslflow_config")  # type: ignore[no-any-return]


@pytest.fixture
def _parslflow_config(request: pytest.FixtureRequest) -> Config:
    """The plugin's own Config for the test, whether or not a conftest overrides
    ``parsl_config``."""
    from pytest_parslflow.config import ConfigFileError, make_config

    run = _test_run(request)

    def fresh_config() -> tuple[Config, bool]:
        return make_config(request, run.settings)

    run.fresh_config = fresh_config
    if run.shared is not None and run.shared.dfk is not None:
        # already loaded: no new Config to build unless it has to be replaced
        run.made = run.shared.dfk.config
        return run.made
    try:
        config, run.builtin = fresh_config()
    except ConfigFileError as exc:
        message = f"{request.node.nodeid}: {exc}"
    else:
        run.made = config
        return config
    pytest.fail(message, pytrace=False)


@pytest.fixture
def parsl_dfk(request: pytest.FixtureRequest, parsl_config: Config) -> Iterator[DataFlowKernel]:
    """The loaded DataFlowKernel of this test; cleaned up and cleared after it."""
    run = _test_run(request)
    in_use = _config_in_use(parsl_config) if parsl_config is not None else ""
    if in_use:
        from pytest_parslflow.ownership import warn

        warn(request.node, f"{request.node.nodeid}: {in_use}")
    if parsl_config is None or in_use:
        # a conftest's parsl_config fixture that gives no Config for this test (or one a
        # running DFK holds) leaves the choice to the plugin: the make-config hook,
        # --parslflow-config, the built-in config
        parsl_config = request.getfixturevalue("_parslflow_config")
    if run.shared is not None:
        from pytest_parslflow.shared import shared_runs

        registry = shared_runs(request.config)
        given = parsl_config
        ours = run.made is parsl_config and run.fresh_config is not None
        make = run.fresh_config if ours else (lambda: (given, False))
        assert make is not None
        dfk = registry.acquire(request.node, run, run.shared, make)
        try:
            yield dfk
        finally:
            registry.release(run, run.shared)
            run.restore_set_aside()
        return
    if run.made is not parsl_config:  # a conftest's own parsl_config fixture
        run.builtin, run.fresh_config = False, None
    problem = load_problem(run, parsl_config, run.builtin)
    if problem:
        pytest.fail(f"{request.node.nodeid}: {problem}", pytrace=False)
    try:
        dfk = run.load(parsl_config)
    except FileNotFoundError as exc:
        why = missing_command(exc)
        if not why:
            raise
        message = f"{request.node.nodeid}: {why}"
    else:
        try:
            yield dfk
        finally:
            run.close()
        return
    pytest.fail(message, pytrace=False)


def missing_command(exc: FileNotFoundError) -> str:
    """One line on an executor that cannot start because a command of Parsl's is not on
    PATH (a venv that is not activated), or ``""`` for any other missing file."""
    import os
    import sys

    command = os.path.basename(str(exc.filename or ""))
    if not command.endswith(".py") or os.path.isabs(str(exc.filename)):
        return ""
    return (
        f"the executor cannot start: {command!r} is not on PATH ({exc}); the session's "
        f"venv ({sys.prefix}) is probably not activated, so its bin/ is not on PATH. "
        f"Activate it, or give the executor the full path, e.g. "
        f"interchange_launch_cmd=[sys.executable, <parsl/executors/high_throughput/{command}>]"
    )


@pytest.fixture
def parsl_tasks(request: pytest.FixtureRequest, parsl_dfk: DataFlowKernel) -> ParslTasks:
    """Records of every task this test submitted, across every DFK it loaded."""
    from pytest_parslflow.tasks import ParslTasks

    return ParslTasks(_test_run(request).windows)


@pytest.fixture
def parsl_restart(request: pytest.FixtureRequest, parsl_dfk: DataFlowKernel) -> ParslRestart:
    """Clean up the current DFK and load a fresh one with the same settings and run
    directory, reusing its checkpoints; returns the new DFK."""
    return ParslRestart(_test_run(request), request.node.nodeid)


@pytest.fixture
def parsl_faults(request: pytest.FixtureRequest, parsl_dfk: DataFlowKernel) -> ParslFaults:
    """Copies of apps that fail, or lose their worker, on chosen tries."""
    from pytest_parslflow.faults import ParslFaults

    return ParslFaults(_test_run(request).run_dir)


@pytest.fixture
def parsl_monitoring(request: pytest.FixtureRequest, parsl_dfk: DataFlowKernel) -> ParslMonitoring:
    """Read access to this test's monitoring database (``monitoring=True`` only)."""
    from pytest_parslflow.monitoring import ParslMonitoring

    run = _test_run(request)
    if run.shared is not None:
        pytest.fail(
            f"{request.node.nodeid}: parsl_monitoring reads the database only once the "
            f"test's own DFK ends, and a DFK shared by scope={run.settings.scope!r} outlives "
            f"the test; use scope='function' for monitoring tests",
            pytrace=False,
        )
    if run.dfk is None or run.dfk.monitoring is None:
        pytest.fail(
            f"{request.node.nodeid}: parsl_monitoring needs @pytest.mark.parsl(monitoring=True)",
            pytrace=False,
        )
    return ParslMonitoring(run)
