"""Where people look when CI fails: GitHub annotations and job summary, the artifacts
folder, pytest-html's entry, JSON logs, monitoring errors and a stuck thread's stack."""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

import pytest

from pytest_parslflow.report.artifacts import artifact_name

FAILING = """
import pytest
from parsl import python_app

@python_app
def fine(i):
    return i

@python_app
def boom(i):
    raise ValueError(f"boom {i}: 100% broken")

@python_app
def after(x):
    return x

@pytest.mark.parsl(retries=1)
@pytest.mark.parametrize("n", [3], ids=["a:b,c"])
def test_pipeline(n):
    ok = [fine(i) for i in range(3)]
    failed = after(boom(n))
    assert [f.result() for f in ok] == [0, 1, 2]
    failed.result()

@pytest.mark.parsl
def test_assertion():
    assert fine(1).result() == 2

@pytest.mark.parsl
def test_passes():
    assert fine(1).result() == 1

def test_plain_failure():
    assert False
"""


@pytest.fixture
def github(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A GitHub Actions environment: annotations on, a step summary file to append to."""
    summary = tmp_path / "step_summary.md"
    summary.write_text("# earlier step\n")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.delenv("GITHUB_WORKSPACE", raising=False)
    return summary


def _annotations(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if line.startswith("::error ")]


def test_annotations_at_the_apps_line_and_the_job_summary(
    pytester: pytest.Pytester, run_parslflow, github: Path
) -> None:
    name = pytester.makepyfile(FAILING).name
    result = run_parslflow("-p", "no:pytest_github_actions_annotate_failures")
    result.assert_outcomes(passed=1, failed=3)
    test = f"{name}%3A%3Atest_pipeline[a%3Ab%2Cc]"
    # the line of `raise` in the app, escaped as GitHub's runner unescapes it: % \r \n in
    # the message, and : , too in properties; the dep_fail points at its root's line
    assert _annotations(result) == [
        f"::error file={name},line=10,title={test}%3A task 3 boom::"
        "ValueError: boom 3: 100%25 broken%0Atask 3 boom failed after 2 tries on executor threads",
        f"::error file={name},line=10,title={test}%3A task 4 after (dep_fail%2C root task 3)::"
        "ValueError: boom 3: 100%25 broken%0Atask 4 after dep_fail: caused by task 3, which "
        "failed here",
    ]
    assert github.read_text() == (
        "# earlier step\n"
        "## Parsl\n"
        "\n"
        "3 tests used Parsl: 7 tasks run, 1 retried, 0 from memo or checkpoint, 2 failed\n"
        "\n"
        "| test | root task | app | exception | tries | executor | artifacts |\n"
        "| --- | --- | --- | --- | --- | --- | --- |\n"
        f"| `{name}::test_pipeline[a:b,c]` | 3 | `boom` | ValueError: boom 3: 100% broken "
        "| 2 | threads | - |\n"
        f"| `{name}::test_assertion` | - | - | assert 1 == 2 | - | - | - |\n"
        "\n"
    )
    # under xdist the controller writes them, once, from what the workers' reports carry
    github.write_text("")
    result = run_parslflow("-n", "2", "-p", "no:pytest_github_actions_annotate_failures")
    result.assert_outcomes(passed=1, failed=3)
    assert len(_annotations(result)) == 2
    assert github.read_text().count("| `boom` |") == 1


def test_annotations_are_bounded_per_test_and_per_session(
    pytester: pytest.Pytester, run_parslflow, github: Path
) -> None:
    pytester.makepyfile(
        """
import pytest
from parsl import python_app

@python_app
def boom(i):
    raise ValueError(f"boom {i}")

@pytest.mark.parsl
@pytest.mark.parametrize("n", range(3))
def test_many(n):
    futures = [boom(i) for i in range(8)]
    for f in futures:
        f.exception()
    assert False
"""
    )
    result = run_parslflow("-p", "no:pytest_github_actions_annotate_failures")
    result.assert_outcomes(failed=3)
    lines = _annotations(result)
    assert len(lines) == 10  # 5, 5, then the session's bound
    assert [re.search(r"task (\d+) boom::", line)[1] for line in lines[:6]] == [
        "0",
        "1",
        "2",
        "3",
        "4",
        "0",
    ]
    result.stdout.fnmatch_lines(
        ["parsl: 14 more failed tasks not annotated (at most 5 per test and 10 per session)*"]
    )
    assert github.read_text().count("| `test_annotations_are_bounded") == 3 * 4  # 3 roots + "more"


def test_annotations_off_by_ini_and_outside_github(
    pytester: pytest.Pytester, run_parslflow, github: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(FAILING)
    pytester.makeini("[pytest]\nparslflow_github_annotations = off\n")
    result = run_parslflow("-p", "no:pytest_github_actions_annotate_failures")
    result.assert_outcomes(passed=1, failed=3)
    assert _annotations(result) == []
    assert "| 3 | `boom` |" in github.read_text()  # the summary stays
    monkeypatch.delenv("GITHUB_ACTIONS")
    pytester.makeini("[pytest]\n")
    result = run_parslflow("-p", "no:pytest_github_actions_annotate_failures")
    assert _annotations(result) == []


def test_a_bad_annotations_switch_is_a_usage_error(
    pytester: pytest.Pytester, run_parslflow
) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = run_parslflow("--parslflow-github-annotations", "maybe")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--parslflow-github-annotations='maybe' is not allowed: use on or off*"]
    )


def test_no_duplicate_of_pytest_github_actions_annotate_failures(
    pytester: pytest.Pytester, run_parslflow, github: Path
) -> None:
    """Where that plugin annotates the test at the same line as the app raised (an app
    defined and called on the test's own line), only its annotation is left."""
    pytest.importorskip("pytest_github_actions_annotate_failures")
    name = pytester.makepyfile(
        """
import pytest
from parsl import python_app

@python_app
def boom():
    raise ValueError("boom")

@pytest.mark.parsl
def test_elsewhere():
    boom().result()

@pytest.mark.parsl
def test_same_line():
    python_app(lambda: 1 / 0)().result()
"""
    ).name
    result = run_parslflow()
    result.assert_outcomes(failed=2)
    ours = [line for line in result.outlines if line.startswith("::error ")]
    theirs = [line for line in result.errlines if line.startswith("::error ")]
    assert [line.split("::")[1] for line in theirs] == [
        f"error file={name},line=10",
        f"error file={name},line=14",
    ]
    assert [line.split(",title=")[0] for line in ours] == [f"::error file={name},line=6"]


def test_artifacts_under_xdist_and_reruns(pytester: pytest.Pytester, run_parslflow) -> None:
    pytester.makepyfile(
        """
import pathlib
import pytest
from parsl import python_app

@python_app
def boom(i):
    raise ValueError(f"boom {i}")

@python_app
def fine(i):
    return i

@pytest.mark.parsl
@pytest.mark.parametrize("where", ["x/y", "x y"])
def test_fails(where):
    boom(where).result()

@pytest.mark.parsl
def test_flaky(request):
    counter = pathlib.Path(request.config.rootpath, "flaky-count")
    tries = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(tries + 1))
    assert fine(tries).result() == 1

@pytest.mark.parsl
def test_passes():
    assert fine(1).result() == 1
"""
    )
    result = run_parslflow("-n", "2", "--reruns", "1", "--parslflow-artifacts", "ci-artifacts")
    result.assert_outcomes(passed=2, failed=2)
    assert result.parseoutcomes()["rerun"] == 3
    folder = pytester.path / "ci-artifacts"
    stem = "test_artifacts_under_xdist_and_reruns.py__"
    # "/" cannot be in a folder's name: replaced, the name gets a hash of the node id
    slash = artifact_name("test_artifacts_under_xdist_and_reruns.py::test_fails[x/y]")
    assert re.fullmatch(re.escape(f"{stem}test_fails[x_y]-") + "[0-9a-f]{8}", slash)
    assert sorted(p.name for p in folder.iterdir()) == [
        f"{stem}test_fails[x y]",
        f"{stem}test_fails[x y]_attempt2",
        slash,
        f"{slash}_attempt2",
        f"{stem}test_flaky",  # its first attempt failed; the second passed and was removed
    ]
    for test in folder.iterdir():
        assert (test / "runinfo" / "000" / "parsl.log").is_file()
        assert (test / "parsl-run.svg").is_file()
        report = (test / "report.txt").read_text()
        assert report.startswith("test_artifacts_under_xdist_and_reruns.py::test_f")
        assert "- parsl: tasks -" in report and "picture: " in report
    report = (folder / slash / "report.txt").read_text()
    assert "ValueError: boom x/y" in report


def test_artifacts_follow_keep_all_and_a_bad_folder_is_a_usage_error(
    pytester: pytest.Pytester, run_parslflow
) -> None:
    pytester.makepyfile(
        """
import pytest
from parsl import python_app

@python_app
def fine(i):
    return i

@pytest.mark.parsl
def test_passes():
    assert fine(1).result() == 1

def test_plain():
    pass
"""
    )
    result = run_parslflow("--parslflow-keep", "all", "--parslflow-artifacts", "out")
    result.assert_outcomes(passed=2)
    (test,) = (pytester.path / "out").iterdir()
    assert test.name.endswith("__test_passes")
    assert (test / "runinfo" / "000" / "parsl.log").is_file()
    assert not (test / "report.txt").exists()  # it passed: nothing to report
    pytester.path.joinpath("a-file").write_text("")
    result = run_parslflow("--parslflow-artifacts", "a-file")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--parslflow-artifacts='a-file' is not allowed*not a folder*"])


def test_pytest_html_entry_has_the_summary_excerpts_and_picture(
    pytester: pytest.Pytester, run_parslflow
) -> None:
    pytest.importorskip("pytest_html")
    pytester.makepyfile(FAILING)
    result = run_parslflow("--html", "report.html", "--self-contained-html")
    result.assert_outcomes(passed=1, failed=3)
    page = (pytester.path / "report.html").read_text()
    blob = re.search(r'data-jsonblob="([^"]*)"', page)
    assert blob is not None
    tests = json.loads(html.unescape(blob[1]))["tests"]
    (entry,) = [e for k, v in tests.items() if "test_pipeline" in k for e in v]
    extras = [e["content"] for e in entry["extras"] if e["format_type"] == "html"]
    tasks = [e for e in extras if 'class="parslflow-tasks"' in e]
    assert len(tasks) == 1 and "task 3  boom  failed  tries=2" in tasks[0]
    blocks = [e for e in extras if e.startswith('<details class="parslflow-excerpt">')]
    assert [re.search(r"<summary>(.*?)</summary>", b)[1] for b in blocks] == [
        "parsl: 000/parsl.log (task 3, 4)"
    ]
    (picture,) = [e for e in extras if 'class="parslflow-picture"' in e]
    svg = base64.b64decode(re.search(r"base64,([^\"]+)", picture)[1]).decode()
    assert svg.startswith("<svg ") and 'data-task="3"' in svg
    # a plain test's entry gets nothing
    (plain,) = [e for k, v in tests.items() if "test_plain_failure" in k for e in v]
    assert not plain["extras"]


def test_json_logs_are_excerpted_as_readable_lines(
    pytester: pytest.Pytester, run_parslflow
) -> None:
    pytest.importorskip("parsl.logconfigs.json")  # Parsl 2025.6 and newer
    pytester.makeconftest(
        """
import pytest
from parsl.logconfigs.json import JSONLogging

@pytest.fixture
def parsl_config(parsl_config):
    parsl_config.initialize_logging = JSONLogging()
    return parsl_config
"""
    )
    pytester.makepyfile(
        """
import pytest
from parsl import python_app

@python_app
def boom(i):
    raise ValueError(f"boom {i}")

@pytest.mark.parsl(retries=1)
def test_json_logs():
    boom(1).result()
"""
    )
    result = run_parslflow("--parslflow-log-lines", "20")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- parsl: 000/parsl.jsonlog (task 0) -*",
            "??:??:?? INFO    Parsl task 0 try 0 launched on executor threads",
            "??:??:?? INFO    Task 0 try 0 failed with exception of type ValueError",
            "??:??:?? INFO    Parsl task 0 try 1 launched on executor threads",
            "??:??:?? ERROR   Task 0 failed after 1 retry attempts  [[]+* lines, ending: "
            "ValueError: boom 1]",
        ]
    )
    assert '"levelname"' not in result.stdout.str()


def test_monitoring_errors_in_the_report_and_as_a_warning(
    pytester: pytest.Pytester, run_parslflow
) -> None:
    pytest.importorskip("sqlalchemy")
    pytester.makepyfile(
        """
import parsl
import pytest
from parsl import python_app

@python_app
def fine(i):
    return i

def lose_a_message():
    # a message Parsl's database manager cannot file: it logs an ERROR and drops it
    dfk = parsl.dfk()
    radio = getattr(dfk, "monitoring_radio", None) or dfk.monitoring.radio  # older Parsl
    radio.send(("not-a-message-type", {}))

@pytest.mark.parsl(monitoring=True)
def test_passes_but_monitoring_lost_data():
    assert fine(1).result() == 1
    lose_a_message()

@pytest.mark.parsl(monitoring=True)
def test_fails():
    lose_a_message()
    assert fine(1).result() == 2

@pytest.mark.parsl(monitoring=True)
def test_passes():
    assert fine(1).result() == 1
"""
    )
    result = run_parslflow("-W", "always::pytest.PytestWarning")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- parsl: 000/database_manager.log (monitoring errors) -*",
            "??:??:?? ERROR   Discarding message of unknown type not-a-message-type",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*PytestWarning: test_monitoring_errors_in_the_report_and_as_a_warning.py::"
            "test_passes_but_monitoring_lost_data passed, but Parsl's monitoring logged errors "
            "(its database may miss data) in 000/database_manager.log: ??:??:?? ERROR   "
            "Discarding message of unknown type not-a-message-type",
        ]
    )
    assert result.stdout.str().count("monitoring logged errors") == 1


def test_a_timeout_shows_the_stack_of_the_thread_running_the_stuck_app(
    pytester: pytest.Pytester, run_parslflow
) -> None:
    pytester.makepyfile(
        """
import time
import pytest
from parsl import python_app

@python_app
def stuck():
    for _ in range(60):
        time.sleep(0.05)
    return 1

@pytest.mark.parsl(timeout=1.5)
def test_hangs():
    stuck().result()
"""
    )
    result = run_parslflow("--parslflow-leaks", "warn")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- parsl: stacks of threads running tasks -*",
            "thread ThreadPoolExecutor-* (*) running task 0 stuck, innermost last:",
            '  File "*test_a_timeout_shows_the_stack_of_the_thread_running_the_stuck_app.py", '
            "line 8, in stuck",
            "    time.sleep(0.05)",
        ]
    )


def test_artifacts_of_a_shared_dfk_go_to_the_test_that_failed(
    pytester: pytest.Pytester, run_parslflow
) -> None:
    pytester.makepyfile(
        """
import pytest
from parsl import python_app

pytestmark = pytest.mark.parsl(scope="module")

@python_app
def boom(i):
    raise ValueError(f"boom {i}")

@python_app
def fine(i):
    return i

def test_first_passes():
    assert fine(1).result() == 1

def test_fails():
    boom(2).result()

def test_then_passes():
    assert fine(3).result() == 3
"""
    )
    result = run_parslflow("--parslflow-artifacts", "out")
    result.assert_outcomes(passed=2, failed=1)
    (test,) = (pytester.path / "out").iterdir()
    name = "test_artifacts_of_a_shared_dfk_go_to_the_test_that_failed.py__test_fails"
    assert test.name == name
    # the shared run directory holds every test's logs; the picture is named for the test
    assert (test / f"parsl-run-{name}.svg").is_file()
    assert (test / "runinfo" / f"parsl-run-{name}.svg").is_file()
    assert "ValueError: boom 2" in (test / "report.txt").read_text()


def test_a_task_that_failed_outside_the_workflows_code_is_annotated_at_the_test(
    pytester: pytest.Pytester, run_parslflow, github: Path
) -> None:
    name = pytester.makepyfile(
        """
import pytest
from parsl import bash_app

@bash_app
def convert():
    return "exit 3"

@pytest.mark.parsl
def test_bash():
    convert().result()
"""
    ).name
    result = run_parslflow("-p", "no:pytest_github_actions_annotate_failures")
    result.assert_outcomes(failed=1)
    assert _annotations(result) == [
        f"::error file={name},line=8,title={name}%3A%3Atest_bash%3A task 0 convert::"
        "BashExitFailure: bash_app convert failed with unix exit code 3%0A"
        "task 0 convert failed after 1 try on executor threads"
    ]


def test_artifact_names_are_readable_and_never_hidden() -> None:
    assert artifact_name("tests/test_x.py::TestA::test_b[htex-1]") == (
        "tests_test_x.py__TestA__test_b[htex-1]"
    )
    assert artifact_name("tests/test_x.py::test_b[x y]", attempt=2) == (
        "tests_test_x.py__test_b[x y]_attempt2"
    )
    # upload-artifact skips hidden folders (Parsl renamed a test folder for that reason)
    assert artifact_name(".ci/test_x.py::test_b") == "_ci_test_x.py__test_b"
    long = artifact_name("test_x.py::test_b[" + "a" * 300 + "]")
    assert len(long) == 120 + 9 and long != artifact_name("test_x.py::test_b[" + "a" * 301 + "]")
