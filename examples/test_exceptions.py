"""Exceptions: what a test asserts when an app raises, exits non-zero or depends on a failure.

Tutorial section: "Exceptions". Parsl hands an app's failure to whoever asks for
its result: ``future.result()`` re-raises a python app's own exception, a bash
app's non-zero exit becomes ``parsl.app.errors.BashExitFailure`` (with its
``exitcode``), and a task whose input failed never runs: it ends in
``dep_fail`` and raises ``parsl.dataflow.errors.DependencyError``, whose
``dependent_exceptions_tids`` name the failed inputs and whose ``__cause__`` is
the root exception, however far upstream.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from parsl.app.errors import BashExitFailure
from parsl.data_provider.files import File
from parsl.dataflow.errors import DependencyError
from pytest_parslflow import ParslTasks

from stationqc import (
    MalformedRecord,
    daily_mean,
    parse_readings,
    to_netcdf,
    unpack,
    verify_archive,
    write_upload,
)

pytestmark = pytest.mark.parsl


def test_a_clean_upload_passes_qc(tmp_path: Path) -> None:
    upload = write_upload(tmp_path / "station_17.csv.gz", ["14.5", "15.0", "16.5", "18.0"])
    assert verify_archive(str(upload)).result() == 0  # a bash app's result is its exit code

    csv = unpack(inputs=[File(str(upload))], outputs=[File(str(tmp_path / "station_17.csv"))])
    assert daily_mean(parse_readings(inputs=[csv.outputs[0]])).result() == 16.0


def test_truncated_upload_is_a_bash_exit_failure(tmp_path: Path) -> None:
    upload = write_upload(tmp_path / "station_17.csv.gz", ["14.5"] * 24)
    upload.write_bytes(upload.read_bytes()[:20])  # the transfer broke off
    stderr = tmp_path / "verify.err"

    with pytest.raises(BashExitFailure) as failure:
        verify_archive(str(upload), stderr=str(stderr)).result()

    assert failure.value.exitcode == 1  # gzip's "corrupt input"
    # Parsl writes the command into the stderr file, then the tool's own complaint.
    assert "unexpected end of file" in stderr.read_text()


def test_missing_tool_exits_127(tmp_path: Path) -> None:
    csv = tmp_path / "station_17.csv"
    csv.write_text("timestamp,temperature_C\n")
    future = to_netcdf(inputs=[File(str(csv))], outputs=[File(str(tmp_path / "station_17.nc"))])

    with pytest.raises(BashExitFailure) as failure:
        future.result()
    assert failure.value.exitcode == 127  # the shell's "command not found"


def test_python_app_raises_its_own_exception(tmp_path: Path) -> None:
    csv = tmp_path / "station_17.csv"
    csv.write_text("timestamp,temperature_C\n2024-06-01T00:00,14.5\n2024-06-01T01:00,-999\n")

    # .result() re-raises the app's exception, with its own type and message.
    with pytest.raises(MalformedRecord, match=r"station_17.csv, line 3: -999.0 °C"):
        parse_readings(inputs=[File(str(csv))]).result()


def test_dependency_error_names_its_root_cause(tmp_path: Path, parsl_tasks: ParslTasks) -> None:
    upload = write_upload(tmp_path / "station_17.csv.gz", ["14.5", "n/a", "16.5"])
    csv = unpack(inputs=[File(str(upload))], outputs=[File(str(tmp_path / "station_17.csv"))])
    readings = parse_readings(inputs=[csv.outputs[0]])
    mean = daily_mean(readings)

    with pytest.raises(DependencyError) as failure:
        mean.result()

    # One (exception, description) pair per failed input of the task.
    [(cause, described)] = failure.value.dependent_exceptions_tids
    assert isinstance(cause, MalformedRecord) and described == f"task {readings.tid}"
    assert failure.value.__cause__ is cause  # the root cause, however far upstream
    # The plugin's records say the same: the mean never ran, and why.
    record = parsl_tasks[mean.tid]
    assert (record.state, record.tries, record.root) == ("dep_fail", 0, readings.tid)
