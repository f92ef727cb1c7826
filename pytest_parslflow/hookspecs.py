"""Hooks that pytest-parslflow calls, for conftests and other plugins to implement.

They are called per test through ``item.ihook``, so an implementation in a
conftest applies to the tests of its folder only. Implement them with
``@pytest.hookimpl(optionalhook=True)`` so the conftest still loads where the
plugin is disabled.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from parsl.config import Config

    from pytest_parslflow.settings import ParslSettings


@pytest.hookspec(firstresult=True)
def pytest_parslflow_make_config(
    request: pytest.FixtureRequest, settings: ParslSettings
) -> Config | None:
    """Return the ``parsl.config.Config`` to load for this test, or ``None``.

    ``None`` leaves the choice to ``--parslflow-config`` or the built-in local
    config. The first non-``None`` result wins. The plugin still sets the
    config's ``run_dir`` to the test's own and layers the marker's explicit
    ``retries``, ``retry_handler``, checkpoint and cache settings on top.

    :param request: the test's fixture request.
    :param settings: the test's merged marker settings, read by attribute.
    """


def pytest_parslflow_log_files(run_dir: Path) -> list[Path] | None:
    """Return extra log files to search for excerpts in a failure report.

    All results are used; paths that do not exist are ignored.

    :param run_dir: the test's ``parsl_run_dir``.
    """
