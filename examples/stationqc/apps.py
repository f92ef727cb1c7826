"""The apps of the station QC workflow, and a helper that writes an upload."""

from __future__ import annotations

import gzip
import shlex
from collections.abc import Sequence
from pathlib import Path

from parsl import bash_app, python_app
from parsl.data_provider.files import File


class MalformedRecord(ValueError):
    """A reading that is not ``timestamp,temperature`` with a plausible temperature."""


def write_upload(path: Path, temperatures: Sequence[str]) -> Path:
    """Write one day's upload as a station would: gzipped CSV, one reading per hour."""
    rows = [f"2024-06-01T{hour:02d}:00,{value}\n" for hour, value in enumerate(temperatures)]
    with gzip.open(path, "wt") as upload:
        upload.write("timestamp,temperature_C\n" + "".join(rows))
    return path


@bash_app
def verify_archive(archive: str, stderr: str | None = None) -> str:
    """``gzip -t`` exits 1 for a corrupt or truncated archive; Parsl raises
    ``BashExitFailure`` for any non-zero exit."""
    return f"gzip -t {shlex.quote(archive)}"


@bash_app
def unpack(
    inputs: Sequence[File] = (), outputs: Sequence[File] = (), stderr: str | None = None
) -> str:
    """Decompress ``inputs[0]`` into ``outputs[0]``."""
    return f"gzip -dc {shlex.quote(str(inputs[0]))} > {shlex.quote(str(outputs[0]))}"


@bash_app
def to_netcdf(
    inputs: Sequence[File] = (),
    outputs: Sequence[File] = (),
    converter: str = "stationqc-csv2nc",
    stderr: str | None = None,
) -> str:
    """Convert for the archive with the site's converter; on a node where it is not
    installed the shell exits 127 ("command not found")."""
    return f"{shlex.quote(converter)} {shlex.quote(str(inputs[0]))} {shlex.quote(str(outputs[0]))}"


@python_app
def parse_readings(inputs: Sequence[File] = ()) -> list[float]:
    """The temperatures of an unpacked upload; a bad record raises MalformedRecord."""
    readings = []
    name = Path(inputs[0]).name
    with open(inputs[0]) as csv:
        next(csv)  # header
        for number, line in enumerate(csv, start=2):
            _, _, value = line.strip().partition(",")
            try:
                temperature = float(value)
            except ValueError:
                raise MalformedRecord(f"{name}, line {number}: {value!r}") from None
            if not -90.0 <= temperature <= 60.0:  # outside Earth's records: a sensor fault
                raise MalformedRecord(f"{name}, line {number}: {temperature} °C")
            readings.append(temperature)
    return readings


@python_app
def daily_mean(readings: list[float]) -> float:
    return round(sum(readings) / len(readings), 2)
