"""Where the Config comes from: a conftest's parsl_config, --parslflow-config, the built-in one."""

from __future__ import annotations

import pytest
from conftest import FLAKY_APP


def test_conftest_overrides_parsl_config(pytester: pytest.Pytester, run_parslflow) -> None:
    pytester.makeconftest(
        """
import pytest
from parsl.config import Config
from parsl.executors import ThreadPoolExecutor

@pytest.fixture
def parsl_config():
    return Config(executors=[ThreadPoolExecutor(label="mine", max_threads=1)], retries=5)
"""
    )
    pytester.makepyfile(
        """
import parsl
import pytest

@pytest.mark.parsl
def test_uses_mine(parsl_run_dir):
    dfk = parsl.dfk()
    assert list(dfk.executors) == ["mine", "_parsl_internal"]
    assert dfk.config.retries == 5  # not set by a mark: the conftest's value stays
    assert dfk.run_dir.startswith(str(parsl_run_dir))

@pytest.mark.parsl(retries=1)
def test_explicit_mark_layers_on_top():
    assert parsl.dfk().config.retries == 1
"""
    )
    run_parslflow("-v").assert_outcomes(passed=2)


def test_parsl_config_file_fresh_config(pytester: pytest.Pytester, run_parslflow) -> None:
    pytester.makepyfile(
        site="""
from parsl.config import Config
from parsl.executors import ThreadPoolExecutor

def fresh_config():
    return Config(executors=[ThreadPoolExecutor(label="site", max_threads=2)])
"""
    )
    pytester.makepyfile(
        FLAKY_APP
        + """
import parsl
import pytest

@pytest.mark.parsl(retries=2)
@pytest.mark.parametrize("i", range(2))
def test_site(tmp_path, parsl_run_dir, i):
    assert "site" in parsl.dfk().executors
    assert parsl.dfk().run_dir == str(parsl_run_dir / "000")
    assert flaky(str(tmp_path / "n"), 2).result() == 3
"""
    )
    run_parslflow("--parslflow-config", "site.py").assert_outcomes(passed=2)


def test_parsl_config_file_with_a_lone_config_loads_once(
    pytester: pytest.Pytester, run_parslflow
) -> None:
    pytester.makepyfile(
        site="""
from parsl.config import Config
from parsl.executors import ThreadPoolExecutor

config = Config(executors=[ThreadPoolExecutor(label="site")])
"""
    )
    pytester.makepyfile(
        """
import pytest

@pytest.mark.parsl
def test_first():
    pass

@pytest.mark.parsl
def test_second():
    pass
"""
    )
    result = run_parslflow("--parslflow-config", "site.py")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*test_second: --parslflow-config=*site.py: the file defines only `config`*fresh_config()*"
        ]
    )
