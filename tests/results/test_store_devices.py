"""The store's device column: schema 2, and schema-1 databases migrated when opened."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from edgequant.report.build import collect
from edgequant.results.record import ResultRecord
from edgequant.results.store import COLUMNS, DB_NAME, STORE_SCHEMA_VERSION, ResultStore, flatten


def _record(scheme: str, device: str | None, ips: float) -> ResultRecord:
    return ResultRecord(
        model="tinynet",
        backend="onnxruntime",
        scheme=scheme,
        scenario="Offline",
        dataset="synthetic",
        threads=2,
        batch_size=8,
        throughput_ips=ips,
        loadgen={"valid": True, "mode": "PerformanceOnly"},
        device=device,
    )


def _schema_1_db(runs: Path, records: dict[str, ResultRecord]) -> None:
    """A results.db exactly as edgequant wrote it before schema 2 (no device column)."""
    runs.mkdir(parents=True)
    v1 = [(c, t) for c, t in COLUMNS if c != "device"]
    conn = sqlite3.connect(runs / DB_NAME)
    with conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        conn.execute(f"CREATE TABLE runs ({', '.join(f'{c} {t}' for c, t in v1)})")
        for run_id, rec in records.items():
            row = flatten(run_id, rec)
            names = [c for c, _ in v1]
            conn.execute(
                f"INSERT INTO runs ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})",
                [row[c] for c in names],
            )
    conn.close()


def test_schema_2_stores_the_device(tmp_path: Path) -> None:
    with ResultStore(tmp_path) as store:
        assert STORE_SCHEMA_VERSION == 2 and store.schema_version == 2
        store.add("a", _record("fp32", None, 100.0))
        store.add("b", _record("fp32", "rpi5", 20.0))
        assert [(r["run_id"], r["device"]) for r in store.rows()] == [("a", "local"), ("b", "rpi5")]
        assert [r["run_id"] for r in store.rows(device="rpi5")] == ["b"]
        assert store.devices() == ["local", "rpi5"]


def test_a_schema_1_database_opens_and_is_migrated(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _schema_1_db(
        runs,
        {
            "old-local": _record("fp32", None, 100.0),
            "old-w8": _record("w8a8", None, 250.0),
            "old-pi": _record("fp32", "rpi5", 20.0),
        },
    )
    with ResultStore(runs, create=False) as store:
        assert store.schema_version == STORE_SCHEMA_VERSION
        assert {r["run_id"]: r["device"] for r in store.rows()} == {
            "old-local": "local",
            "old-w8": "local",
            "old-pi": "rpi5",
        }
        assert [r["run_id"] for r in store.rows(device="rpi5")] == ["old-pi"]
        store.add("new", _record("w8a8", "rpi5", 30.0))  # new rows go in beside the old ones
        assert len(store) == 4
    conn = sqlite3.connect(runs / DB_NAME)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    # and the report reads it: the Pi's speed-up is against the Pi's fp32
    data = collect(runs, plots=False)
    pi = next(r for r in data.rows if r.device == "rpi5" and r.scheme == "w8a8")
    assert pi.speedup == 1.5 and data.multi_device
