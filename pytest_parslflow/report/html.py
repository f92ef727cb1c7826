"""pytest-html: a failed Parsl test's entry carries the task summary, each log excerpt as
its own collapsible block, and the picture. Used only where pytest-html is installed."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any

# failure.heading(): "------ parsl: 000/parsl.log (task 3) ------"
_HEADING = re.compile(r"^-{2,} (parsl: .*?) -{2,}$")


def sections(report: str) -> list[tuple[str, list[str]]]:
    """The report's sections: (heading title, lines)."""
    found: list[tuple[str, list[str]]] = []
    for line in report.splitlines():
        heading = _HEADING.match(line)
        if heading:
            found.append((heading.group(1), []))
        elif found:
            found[-1][1].append(line)
    return found


def _extra(content: str) -> dict[str, Any]:
    # pytest_html.extras.html(), without importing pytest-html where it is not installed
    return {
        "name": None,
        "format_type": "html",
        "content": content,
        "mime_type": None,
        "extension": None,
    }


def extras(report: str, picture: Path | None) -> list[dict[str, Any]]:
    """pytest-html extras for a failed test's report (``report.extras``)."""
    found: list[dict[str, Any]] = []
    for index, (title, lines) in enumerate(sections(report)):
        body = html.escape("\n".join(lines))
        if index == 0:  # the task summary, open
            found.append(
                _extra(
                    f'<div class="parslflow-tasks"><h4>{html.escape(title)}</h4>'
                    f"<pre>{body}</pre></div>"
                )
            )
        else:
            found.append(
                _extra(
                    f'<details class="parslflow-excerpt"><summary>{html.escape(title)}'
                    f"</summary><pre>{body}</pre></details>"
                )
            )
    if picture is not None and picture.is_file():
        data = base64.b64encode(picture.read_bytes()).decode("ascii")
        found.append(
            _extra(
                f'<div class="parslflow-picture"><h4>parsl: {html.escape(picture.name)}</h4>'
                f'<img alt="Parsl run of this test" style="max-width: 100%" '
                f'src="data:image/svg+xml;base64,{data}"/></div>'
            )
        )
    return found
