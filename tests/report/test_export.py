"""Exports of the results store's rows (CSV, Markdown, JSON): rendered by the report package only."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from edgequant.errors import ValidationError
from edgequant.report.export import export_rows
from edgequant.results.record import ResultRecord
from edgequant.results.store import ResultStore


def _record(scheme: str = "fp32", **kw: object) -> ResultRecord:
    base: dict[str, object] = dict(
        model="tinynet",
        backend="rt",
        scheme=scheme,
        scenario="Offline",
        dataset="synthetic",
        threads=2,
        batch_size=8,
        throughput_ips=123.5,
    )
    base.update(kw)
    return ResultRecord(**base)  # type: ignore[arg-type]


def test_exports_csv_md_json(tmp_path: Path) -> None:
    with ResultStore(tmp_path) as store:
        store.add("a", _record("fp32"))
        store.add("b", _record("w8a8", status="failed", reason="runtime said | no"))
        rows = store.rows()
    table = list(csv.DictReader(io.StringIO(export_rows(rows, "csv"))))
    assert [t["scheme"] for t in table] == ["fp32", "w8a8"]
    assert table[0]["throughput_ips"] == "123.5" and table[1]["reason"] == "runtime said | no"
    md = export_rows(rows, "md").splitlines()
    assert md[0].startswith("| run_id | model |") and len(md) == 4
    assert "runtime said \\| no" in md[3]  # pipes escaped inside a cell
    docs = json.loads(export_rows(rows, "json"))
    assert docs[0]["record"]["schema"] == "edgequant.result/1"
    assert docs[1]["status"] == "failed"
    with pytest.raises(ValidationError, match="unknown export format"):
        export_rows(rows, "xlsx")


def test_results_store_renders_nothing() -> None:
    import edgequant.results.store as store

    assert not hasattr(store, "export_rows")
    assert "import csv" not in Path(store.__file__).read_text()
