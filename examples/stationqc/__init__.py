"""stationqc: quality control of weather-station uploads with Parsl.

The research scenario: automatic weather stations upload a gzipped CSV of
``timestamp,temperature_C`` readings every day. Before the readings enter the
climate record, a workflow

1. checks that the archive is intact (``gzip -t``, a bash app),
2. unpacks it (a bash app),
3. parses the readings, rejecting malformed records (a python app),
4. computes the day's mean temperature (a python app).

Uploads go wrong in every way a field station can manage: truncated
transfers, a tool missing on the node, a sensor writing garbage. Each shows
up in Parsl as a different exception; ``examples/test_exceptions.py`` shows
what a test asserts about each.
"""

from stationqc.apps import (
    MalformedRecord,
    daily_mean,
    parse_readings,
    to_netcdf,
    unpack,
    verify_archive,
    write_upload,
)

__all__ = [
    "MalformedRecord",
    "daily_mean",
    "parse_readings",
    "to_netcdf",
    "unpack",
    "verify_archive",
    "write_upload",
]
