"""Reports of a runs directory: one self-contained HTML page (plots inline), Markdown, CSV.

Example:
    >>> from edgequant.report import build_report
    >>> build_report("runs/", "runs/report.html", max_drop=1.0)   # doctest: +SKIP
    PosixPath('runs/report.html')
"""

from edgequant.report.build import FORMATS, ReportData, build_report, collect

__all__ = ["FORMATS", "ReportData", "build_report", "collect"]
