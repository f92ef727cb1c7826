"""Building the ``parsl.config.Config`` that a test loads.

Parsl is imported here only inside functions: loading the plugin must not
import it.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_parslflow.settings import ParslSettings

if TYPE_CHECKING:
    from parsl.config import Config

THREAD_LABEL = "threads"


class ConfigFileError(Exception):
    """A ``--parslflow-config`` file that cannot be used; the message says why and the fix."""


class ConfigFile:
    """A user's site config file (``--parslflow-config``): Parsl's ``fresh_config()`` convention."""

    def __init__(self, path: Path, option: str) -> None:
        self.path = path
        self.option = option
        self._fresh: Callable[[], Config] | None = None
        self._config: Config | None = None
        self._lone_config_used = False
        self._load()

    def _load(self) -> None:
        where = f"{self.option}={self.path}"
        if not self.path.is_file():
            raise ConfigFileError(
                f"{where}: no such file; pass the path of a Python file that defines "
                f"fresh_config() returning a parsl.config.Config"
            )
        name = f"_parslflow_site_config_{abs(hash(str(self.path.resolve())))}"
        spec = importlib.util.spec_from_file_location(name, self.path)
        if spec is None or spec.loader is None:
            raise ConfigFileError(f"{where}: not a Python file; pass a .py file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException as exc:
            sys.modules.pop(name, None)
            message = (
                f"{where}: importing the file raised {type(exc).__name__}: {exc}; "
                f"fix the file so that it imports cleanly"
            )
        else:
            message = ""
        if message:
            raise ConfigFileError(message)
        fresh = getattr(module, "fresh_config", None)
        lone = getattr(module, "config", None)
        if callable(fresh):
            self._fresh = fresh
        elif lone is not None:
            from parsl.config import Config

            if not isinstance(lone, Config):
                raise ConfigFileError(
                    f"{where}: `config` is a {type(lone).__name__}, not a parsl.config.Config; "
                    f"define fresh_config() returning a new Config"
                )
            self._config = lone
        else:
            raise ConfigFileError(
                f"{where}: the file defines neither fresh_config() nor config; "
                f"add `def fresh_config(): return parsl.config.Config(...)`"
            )

    def make(self) -> Config:
        """A Config from the file: a new one per call where ``fresh_config()`` exists."""
        from parsl.config import Config

        if self._fresh is not None:
            config = self._fresh()
            if not isinstance(config, Config):
                raise ConfigFileError(
                    f"{self.option}={self.path}: fresh_config() returned a "
                    f"{type(config).__name__}, not a parsl.config.Config"
                )
            return config
        assert self._config is not None
        if self._lone_config_used:
            raise ConfigFileError(
                f"{self.option}={self.path}: the file defines only `config`, which Parsl can "
                f"load once per session; define fresh_config() returning a new Config so "
                f"that every test can load its own"
            )
        self._lone_config_used = True
        return self._config


def builtin_config(settings: ParslSettings, rootdir: Path | None = None) -> Config:
    """The plugin's local config for ``settings.executor`` on this machine; ``rootdir``
    is pytest's, from which ``--import-mode=importlib`` names test modules."""
    from parsl.config import Config

    executor: Any
    if settings.executor == "htex":
        from pytest_parslflow.htex import STRATEGY_PERIOD, make_htex_executor

        executor = make_htex_executor(settings, [rootdir] if rootdir else [])
        strategy_period: float = STRATEGY_PERIOD
    else:
        from parsl.executors import ThreadPoolExecutor

        executor = ThreadPoolExecutor(label=THREAD_LABEL, max_threads=settings.workers)
        strategy_period = 5
    kwargs: dict[str, Any] = {}
    if settings.executor == "thread":
        kwargs["strategy"] = "none"
    return Config(
        executors=[executor],
        retries=settings.retries,
        retry_handler=settings.retry_handler,
        strategy_period=strategy_period,
        usage_tracking=0,
        **kwargs,
    )


@functools.cache
def _config_takes_checkpoints() -> bool:
    """Older Parsl keeps checkpoint and cache settings on Config, newer on BasicMemoizer."""
    from parsl.config import Config

    return "checkpoint_mode" in inspect.signature(Config.__init__).parameters


def apply_settings(config: Config, settings: ParslSettings, run_dir: Path, builtin: bool) -> None:
    """Give ``config`` the test's run_dir and layer the settings onto it.

    A built-in config takes every setting; a user's config (fixture, hook or
    ``--parslflow-config``) only those that marks set explicitly.
    """
    config.run_dir = os.fspath(run_dir)

    def wanted(name: str) -> bool:
        return builtin or name in settings.explicit

    if wanted("retries"):
        config.retries = settings.retries
    if wanted("retry_handler"):
        config.retry_handler = settings.retry_handler
    if wanted("monitoring") and settings.monitoring and config.monitoring is None:
        from pytest_parslflow.monitoring import make_hub

        config.monitoring = make_hub()
    memo: dict[str, Any] = {}
    if wanted("checkpoint"):
        memo["checkpoint_mode"] = settings.checkpoint
    if wanted("checkpoint_period"):
        memo["checkpoint_period"] = settings.checkpoint_period
    if wanted("app_cache"):
        memo["app_cache"] = settings.app_cache
    if _config_takes_checkpoints():
        older: Any = config  # the attributes below exist in Parsl before 2025.4 only
        for name, value in memo.items():
            setattr(older, name, value)
        if older.checkpoint_mode is not None and older.checkpoint_files is None:
            # These releases look for earlier checkpoints in the new run's own folder
            # (runinfo/001) rather than in run_dir, so a restart would reuse none.
            from parsl.utils import get_all_checkpoints

            older.checkpoint_files = get_all_checkpoints(os.fspath(run_dir))
        return
    if not memo:
        return
    from parsl.dataflow.memoization import BasicMemoizer

    memoizer = config.memoizer
    if memoizer is None:
        memoizer = config.memoizer = BasicMemoizer()
    if not isinstance(memoizer, BasicMemoizer):
        raise ConfigFileError(
            f"the config's memoizer is a {type(memoizer).__name__}, so the parsl marker's "
            f"{', '.join(sorted(memo))} cannot be applied; drop them from the marker or use "
            f"parsl.dataflow.memoization.BasicMemoizer"
        )
    for name, value in memo.items():
        setattr(memoizer, "memoize" if name == "app_cache" else name, value)


def make_config(request: pytest.FixtureRequest, settings: ParslSettings) -> tuple[Config, bool]:
    """The Config for a test, first that applies: the make-config hook, ``--parslflow-config``,
    the built-in local config. Returns it and whether it is the built-in one."""
    from pytest_parslflow.options import options_of

    config = request.node.ihook.pytest_parslflow_make_config(request=request, settings=settings)
    if config is not None:
        return config, False
    site = options_of(request.config).config_file
    if site is not None:
        config = site.make()
        share_session_path(config, request.config.rootpath)
        return config, False
    return builtin_config(settings, request.config.rootpath), True


def share_session_path(config: Config, rootdir: Path) -> None:
    """A site config's workers import as the session does: apps defined in test modules
    and the project's packages, on workers that share the filesystem. Their provider's
    ``worker_init`` gets the session's ``sys.path`` (and pytest's rootdir) in front of
    ``PYTHONPATH``, unless it already mentions ``PYTHONPATH``: a site that sets it (or
    opts out with ``export PYTHONPATH="$PYTHONPATH"``) is left as written."""
    import shlex

    from pytest_parslflow.htex import session_pythonpath

    path = shlex.quote(session_pythonpath([rootdir]))
    export = f'export PYTHONPATH={path}"${{PYTHONPATH:+:$PYTHONPATH}}"'
    for executor in config.executors:
        provider = getattr(executor, "provider", None)
        init = getattr(provider, "worker_init", None)
        if not isinstance(init, str) or "PYTHONPATH" in init:
            continue
        provider.worker_init = f"{export}\n{init}" if init.strip() else export  # type: ignore[union-attr]
