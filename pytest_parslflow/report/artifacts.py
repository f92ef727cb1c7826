"""``--parslflow-artifacts DIR``: each kept run directory copied where CI can upload it,
one folder per test named after its node id, with the failure report and the picture.

pytest's basetemp lives outside the workspace (and ``actions/upload-artifact`` skips
hidden folders), so kept run directories are otherwise out of an artifact step's reach.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
from pathlib import Path

#: characters of a folder name taken from the node id, before its hash is added
MAX_NAME = 120
REPORT_NAME = "report.txt"

# upload-artifact refuses " : < > | * ? \r \n in paths; "/" and "\" would make folders
_UNSAFE = re.compile(r'[":<>|*?\\/\x00-\x1f\x7f]')


def artifact_name(nodeid: str, attempt: int = 1) -> str:
    """A readable folder name for a test: ``tests/test_x.py::test_a[htex-1]`` becomes
    ``tests_test_x.py__test_a[htex-1]``. Where the test's own name had to change (a
    parameter with ``/`` or ``:``), or a long id was cut, a hash of the node id keeps it
    unique; a rerun's attempt is named."""
    path, _, test = nodeid.partition("::")
    test = test.replace("::", "__")
    safe_test = _UNSAFE.sub("_", test)
    name = _UNSAFE.sub("_", path) + ("__" + safe_test if test else "")
    if name.startswith("."):  # upload-artifact leaves hidden files and folders out
        name = "_" + name[1:]
    if len(name) > MAX_NAME or safe_test != test:
        digest = hashlib.sha1(nodeid.encode()).hexdigest()[:8]
        name = f"{name[:MAX_NAME]}-{digest}"
    if attempt > 1:
        name += f"_attempt{attempt}"
    return name


def new_folder(root: Path, name: str) -> Path:
    """``root/name``, or ``root/name-2``, ... : a folder that no one else has (another xdist
    worker, an earlier session), made atomically."""
    root.mkdir(parents=True, exist_ok=True)
    number = 1
    while True:
        folder = root / (name if number == 1 else f"{name}-{number}")
        try:
            folder.mkdir()
        except FileExistsError:
            number += 1
            continue
        return folder


def _copy_regular(source: str, destination: str) -> str:
    """Copy files only: a run directory may hold sockets or FIFOs, which cannot be copied."""
    if stat.S_ISREG(os.lstat(source).st_mode):
        shutil.copy2(source, destination)
    return destination


def copy_run(base: Path, folder: Path, report: str, picture: Path | None) -> list[str]:
    """Copy the run base (``runinfo/`` and the rest) into ``folder``, with ``report`` as
    :data:`REPORT_NAME` and the picture beside it. Returns what could not be copied."""
    problems: list[str] = []
    if report:
        (folder / REPORT_NAME).write_text(report, encoding="utf-8")
    if picture is not None and picture.is_file():
        shutil.copy2(picture, folder / picture.name)
    try:
        shutil.copytree(
            base,
            folder,
            symlinks=True,
            copy_function=_copy_regular,
            dirs_exist_ok=True,
        )
    except shutil.Error as exc:
        problems += [f"{source}: {why}" for source, _, why in exc.args[0]]
    except OSError as exc:
        problems.append(str(exc))
    return problems
