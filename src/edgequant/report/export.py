"""Rows of the results store exported as CSV, Markdown or JSON: the one place results are rendered.

The store (:mod:`edgequant.results.store`) only stores and queries; ``edgequant results`` and the
Python API render its rows here.

Example:
    >>> rows = [{"run_id": "r", "model": "m", "throughput_ips": 12.5}]
    >>> print(export_rows(rows, "csv").splitlines()[1][:10])
    r,m,,,,,,,
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from edgequant.errors import ValidationError
from edgequant.results.store import EXPORT_COLUMNS

#: formats :func:`export_rows` writes
EXPORT_FORMATS = ("csv", "md", "json")


def export_rows(rows: Sequence[dict[str, Any]], fmt: str) -> str:
    """Rows as ``csv``, ``md`` (a Markdown table) or ``json`` (full records included).

    Example:
        >>> print(export_rows([{"model": "m", "throughput_ips": 12.5}], "md").splitlines()[0][:23])
        | run_id | model | back
    """
    if fmt == "json":
        docs = []
        for r in rows:
            flat = {c: r.get(c) for c in EXPORT_COLUMNS}
            if r.get("record_json"):
                flat["record"] = json.loads(r["record_json"])
            docs.append(flat)
        return json.dumps(docs, indent=2, default=str)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(EXPORT_COLUMNS)
        for r in rows:
            writer.writerow(["" if r.get(c) is None else r.get(c) for c in EXPORT_COLUMNS])
        return buf.getvalue()
    if fmt == "md":
        lines = ["| " + " | ".join(EXPORT_COLUMNS) + " |", "|" + "---|" * len(EXPORT_COLUMNS)]
        for r in rows:
            lines.append("| " + " | ".join(_md_cell(r.get(c)) for c in EXPORT_COLUMNS) + " |")
        return "\n".join(lines) + "\n"
    raise ValidationError(f"unknown export format {fmt!r}; use csv, md or json")


def _md_cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v).replace("|", "\\|").replace("\n", " ")


__all__ = ["EXPORT_FORMATS", "export_rows"]
