"""A test's Parsl lifecycle: its run directory, loading its DataFlowKernel and cleaning up.

Parsl is imported here only inside functions.
"""

from __future__ import annotations

import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_parslflow.options import options_of
from pytest_parslflow.settings import (
    EXECUTOR_PARAM,
    MARKER,
    ParslSettings,
    SettingsError,
    build_settings,
)

if TYPE_CHECKING:
    from parsl.config import Config
    from parsl.dataflow.dflow import DataFlowKernel


@dataclass
class ParslTestRun:
    """What the plugin knows of one test's Parsl use."""

    settings: ParslSettings
    base: Path
    dfks: list[DataFlowKernel] = field(default_factory=list)

    @property
    def run_dir(self) -> Path:
        """The test's ``parsl_run_dir``: the base that holds ``000/``, ``001/``, ..."""
        return self.base / "runinfo"

    def load(self, config: Config) -> DataFlowKernel:
        import parsl

        dfk = parsl.load(config)
        self.dfks.append(dfk)
        return dfk

    def close(self) -> None:
        """Clean up every DFK this run loaded; the first error is raised after all are done."""
        errors = [error for dfk in self.dfks if (error := cleanup_dfk(dfk)) is not None]
        if errors:
            raise errors[0]


#: per-test record of what Parsl did, in ``item.stash``
TEST_RUN = pytest.StashKey[ParslTestRun]()
#: whether any phase of the test failed, for the keep policy
PHASE_FAILED = pytest.StashKey[bool]()


def run_base_name(item: pytest.Item) -> str:
    """A folder name for a test, as pytest's ``tmp_path`` makes one, naming a rerun's attempt."""
    name = re.sub(r"[\W]", "_", item.name)[:30]
    attempt: int = getattr(item, "execution_count", 1)  # set by pytest-rerunfailures
    return f"{name}_attempt{attempt}_" if attempt > 1 else name


def cleanup_dfk(dfk: DataFlowKernel) -> BaseException | None:
    """Clean up ``dfk`` (once) and make sure it is no longer the loaded DFK."""
    from parsl.dataflow.dflow import DataFlowKernelLoader

    error: BaseException | None = None
    if not dfk.cleanup_called:
        try:
            dfk.cleanup()
        except Exception as exc:
            error = exc
    if DataFlowKernelLoader._dfk is dfk:
        DataFlowKernelLoader.clear()
    return error


def loaded_dfk() -> DataFlowKernel | None:
    """The currently loaded DFK, without importing Parsl where nothing imported it."""
    dflow = sys.modules.get("parsl.dataflow.dflow")
    if dflow is None:
        return None
    dfk: DataFlowKernel | None = dflow.DataFlowKernelLoader._dfk
    return dfk


def keep_run_dir(keep: str, failed: bool) -> bool:
    return keep == "all" or (keep == "failed" and failed)


def remove_run_base(base: Path) -> None:
    shutil.rmtree(base, ignore_errors=True)


#: the validated settings of a Parsl test, in ``item.stash``
SETTINGS = pytest.StashKey[ParslSettings]()

_PARSL_FIXTURES = frozenset({"parsl_dfk", "parsl_config", "parsl_run_dir"})


def uses_parsl(item: pytest.Item) -> bool:
    """Whether the test is marked ``parsl`` or asks for one of the plugin's Parsl fixtures."""
    if item.get_closest_marker(MARKER) is not None:
        return True
    return not _PARSL_FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))


def item_settings(item: pytest.Item) -> ParslSettings:
    """The test's settings, validated once; raises ``SettingsError`` naming the test."""
    settings = item.stash.get(SETTINGS, None)
    if settings is not None:
        return settings
    callspec = getattr(item, "callspec", None)
    chosen = callspec.params.get(EXECUTOR_PARAM) if callspec is not None else None
    try:
        settings = build_settings(
            item.iter_markers(MARKER), options_of(item.config).executors, chosen
        )
    except SettingsError as exc:
        message = f"{item.nodeid}: {exc}"
    else:
        item.stash[SETTINGS] = settings
        return settings
    raise SettingsError(message)


class QuietParslRecords:
    """A logging filter: Parsl's DEBUG/INFO chatter stays out of pytest's captured logs.

    Parsl's own ``parsl.log`` in the run directory still has every line; what a
    failure needs from it reaches the report through the excerpts.
    """

    def filter(self, record: object) -> bool:
        name: str = getattr(record, "name", "")
        if name != "parsl" and not name.startswith("parsl."):
            return True
        return bool(getattr(record, "levelno", 0) >= 30)


def quiet_parsl_in_captured_logs(config: pytest.Config) -> None:
    logging_plugin = config.pluginmanager.get_plugin("logging-plugin")
    if logging_plugin is None:
        return
    for name in ("caplog_handler", "report_handler"):
        handler = getattr(logging_plugin, name, None)
        if handler is not None:
            handler.addFilter(QuietParslRecords())
