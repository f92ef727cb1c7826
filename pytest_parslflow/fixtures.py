"""The fixtures a Parsl test uses: ``parsl_run_dir``, ``parsl_config``, ``parsl_dfk``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_parslflow.config import ConfigFileError, apply_settings, make_config
from pytest_parslflow.lifecycle import (
    TEST_RUN,
    ParslTestRun,
    item_settings,
    loaded_dfk,
    run_base_name,
)
from pytest_parslflow.settings import MARKER, ParslSettings, SettingsError

if TYPE_CHECKING:
    from parsl.config import Config
    from parsl.dataflow.dflow import DataFlowKernel

_BUILTIN_CONFIG = pytest.StashKey[object]()


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
        factory: pytest.TempPathFactory = request.getfixturevalue("tmp_path_factory")
        run = ParslTestRun(settings, factory.mktemp(run_base_name(item), numbered=True))
        run.run_dir.mkdir()
        item.stash[TEST_RUN] = run
        return run
    pytest.fail(message, pytrace=False)


def _not_available(settings: ParslSettings) -> str:
    if settings.monitoring:
        return "parsl marker argument monitoring=True: monitoring is not available in this version"
    if settings.scope != "function":
        return (
            f"parsl marker argument scope={settings.scope!r}: only scope='function' (a DFK per "
            f"test) is available in this version"
        )
    return ""


@pytest.fixture
def parsl_run_dir(request: pytest.FixtureRequest) -> Path:
    """This test's own Parsl run directory (the base holding ``000/``, ``001/``, ...)."""
    return _test_run(request).run_dir


@pytest.fixture
def parsl_config(request: pytest.FixtureRequest) -> Config:
    """The ``parsl.config.Config`` this test will load; override it in a conftest to supply
    your own (the plugin still sets its ``run_dir`` and the marker's explicit settings)."""
    run = _test_run(request)
    try:
        config, builtin = make_config(request, run.settings)
    except ConfigFileError as exc:
        message = f"{request.node.nodeid}: {exc}"
    else:
        if builtin:
            request.node.stash[_BUILTIN_CONFIG] = config
        return config
    pytest.fail(message, pytrace=False)


def _load_problem(run: ParslTestRun, config: Config, builtin: bool) -> str:
    """Why this test's DFK cannot be loaded, or ``""``; applies the settings to ``config``."""
    problem = _not_available(run.settings)
    if problem:
        return problem
    try:
        apply_settings(config, run.settings, run.run_dir, builtin)
    except ConfigFileError as exc:
        return str(exc)
    other = loaded_dfk()
    if other is not None:
        return (
            f"another DataFlowKernel is already loaded (run dir {other.run_dir}), so this test "
            f"cannot load its own; a fixture of wider scope or a conftest called parsl.load(): "
            f"use the parsl marker instead, or call parsl.dfk().cleanup() there"
        )
    return ""


@pytest.fixture
def parsl_dfk(request: pytest.FixtureRequest, parsl_config: Config) -> Iterator[DataFlowKernel]:
    """The loaded DataFlowKernel of this test; cleaned up and cleared after it."""
    run = _test_run(request)
    builtin = request.node.stash.get(_BUILTIN_CONFIG, None) is parsl_config
    problem = _load_problem(run, parsl_config, builtin)
    if problem:
        pytest.fail(f"{request.node.nodeid}: {problem}", pytrace=False)
    dfk = run.load(parsl_config)
    try:
        yield dfk
    finally:
        run.close()


@pytest.fixture(autouse=True)
def _parsl_marked(request: pytest.FixtureRequest) -> None:
    """A test marked ``parsl`` gets its DFK without asking for a fixture."""
    if request.node.get_closest_marker(MARKER) is not None:
        request.getfixturevalue("parsl_dfk")
