"""Reports of a runs directory: one self-contained HTML page (plots inline), Markdown, CSV.

The package itself is callable: ``edgequant.report(runs_dir, output)`` is :func:`make_report`,
while ``edgequant.report.tables`` and the other modules still import as usual.

Example:
    >>> import edgequant
    >>> edgequant.report("runs/", "runs/report.html")            # doctest: +SKIP
    PosixPath('runs/report.html')
    >>> edgequant.report.make_report is make_report and callable(edgequant.report)
    True
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

from edgequant.report.build import FORMATS, ReportData, build_report, collect
from edgequant.report.export import export_rows


def make_report(
    runs_dir: Path | str,
    output: Path | str | None = None,
    format: str | None = None,
    *,
    max_drop: float = 1.0,
) -> Path:
    """Write the report of ``runs_dir`` (HTML, Markdown or CSV) and return its path.

    ``format`` defaults to ``output``'s suffix, else ``html``; ``output`` defaults to
    ``RUNS_DIR/report.<format>``. ``max_drop`` is the recommendation's accuracy budget in top-1
    points. The report reads the stored records only; it runs no runtime.

    Example:
        >>> import tempfile
        >>> from edgequant.results import ResultRecord, ResultStore
        >>> runs = Path(tempfile.mkdtemp())
        >>> rec = ResultRecord(model="m", backend="b", scheme="fp32", scenario="Offline",
        ...                    dataset="synthetic", threads=1, batch_size=1, throughput_ips=9.0)
        >>> with ResultStore(runs) as store:
        ...     store.add("m__b__fp32__Offline", rec)
        >>> make_report(runs, runs / "r.md").name
        'r.md'
    """
    return build_report(runs_dir, output, fmt=format, max_drop=max_drop)


class _CallableModule(types.ModuleType):
    """This package's module type: calling it calls :func:`make_report`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Path:
        return make_report(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["FORMATS", "ReportData", "build_report", "collect", "export_rows", "make_report"]
