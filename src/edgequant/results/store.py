"""The results database: one SQLite row per run, next to the runs' own ``result.json`` files.

``RUNS_DIR/<run-id>/result.json`` is the source of truth; ``RUNS_DIR/results.db`` indexes it for
queries (:mod:`edgequant.report` renders exports and reports from it). The database is versioned (table ``meta``, key ``schema_version``):
a database written by a newer edgequant is refused with a clear message instead of misread, an
older one is migrated in place when opened (schema 1 -> 2 adds the ``device`` column, filled from
the stored records), and :func:`rebuild` re-creates the index from the run directories at any time.

Each row holds the record's flat fields (model, backend, scheme, scenario, status, reason,
throughput, latency percentiles, accuracy, size, energy, LoadGen validity, ...) plus the full
record JSON, so nothing is lost by flattening. One transaction per record: a killed sweep leaves
either the whole row or none.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from edgequant.results.record import ResultRecord
    >>> runs = Path(tempfile.mkdtemp())
    >>> rec = ResultRecord(model="m", backend="rt", scheme="fp32", scenario="Offline",
    ...                    dataset="synthetic", threads=2, batch_size=1, throughput_ips=100.0)
    >>> with ResultStore(runs) as store:
    ...     store.add("m__rt__fp32__Offline", rec)
    ...     [r["throughput_ips"] for r in store.rows()]
    [100.0]
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgequant.errors import ArtifactError, ValidationError
from edgequant.results.record import ResultRecord

DB_NAME = "results.db"
#: version of the SQLite layout below; bump it (and migrate) when columns change meaning
STORE_SCHEMA_VERSION = 2
#: the device a record with ``device`` None ran on (today's local sweeps)
LOCAL_DEVICE = "local"
#: ``mode`` of a run: a LoadGen performance run or an accuracy run
MODES = ("performance", "accuracy")

#: (column, SQL type) of the flat part of a row, in export order
COLUMNS: tuple[tuple[str, str], ...] = (
    ("run_id", "TEXT PRIMARY KEY"),
    ("model", "TEXT"),
    ("backend", "TEXT"),
    ("scheme", "TEXT"),
    ("scenario", "TEXT"),
    ("mode", "TEXT"),
    ("status", "TEXT"),
    ("reason", "TEXT"),
    ("dataset", "TEXT"),
    ("threads", "INTEGER"),
    ("batch_size", "INTEGER"),
    ("throughput_ips", "REAL"),
    ("latency_mean_ms", "REAL"),
    ("latency_p50_ms", "REAL"),
    ("latency_p90_ms", "REAL"),
    ("latency_p99_ms", "REAL"),
    ("top1_pct", "REAL"),
    ("top5_pct", "REAL"),
    ("agreement_with_fp32_pct", "REAL"),
    ("accuracy_samples", "INTEGER"),
    ("size_bytes", "INTEGER"),
    ("peak_rss_bytes", "INTEGER"),
    ("joules_per_inference", "REAL"),
    ("loadgen_valid", "INTEGER"),
    ("simulated", "INTEGER"),
    ("artifact", "TEXT"),
    ("started_at", "TEXT"),
    ("finished_at", "TEXT"),
    ("device", "TEXT"),  # schema 2: ``record.device or "local"`` (last, so old exports keep order)
    ("run_dir", "TEXT"),
    ("record_json", "TEXT"),
    ("indexed_at", "TEXT"),
)
COLUMN_NAMES = tuple(c for c, _ in COLUMNS)
#: columns shown by exports (the raw JSON stays in the database and in ``result.json``)
EXPORT_COLUMNS = tuple(c for c in COLUMN_NAMES if c not in ("record_json", "indexed_at", "run_dir"))


def record_mode(record: ResultRecord, run_id: str = "") -> str:
    """``accuracy`` for an accuracy run, else ``performance``.

    The sweep annotates its records (``extra["sweep"]["mode"]``); for other records LoadGen's mode
    or the run name decides.
    """
    sweep = record.extra.get("sweep") if isinstance(record.extra, dict) else None
    if isinstance(sweep, dict) and sweep.get("mode") in MODES:
        return str(sweep["mode"])
    mode = str((record.loadgen or {}).get("mode", "")).lower()
    if "accuracy" in mode or run_id.endswith("__accuracy"):
        return "accuracy"
    return "performance"


def record_device(record: ResultRecord) -> str:
    """The device a record ran on: its ``device``, or ``"local"`` for records without one.

    Example:
        >>> r = ResultRecord(model="m", backend="b", scheme="fp32", scenario="Offline",
        ...                  dataset="synthetic", threads=1, batch_size=1)
        >>> record_device(r), record_device(ResultRecord(**{**r.to_dict(), "device": "rpi5"}))
        ('local', 'rpi5')
    """
    return record.device or LOCAL_DEVICE


def flatten(run_id: str, record: ResultRecord, run_dir: Path | None = None) -> dict[str, Any]:
    """The flat row of a record (see :data:`COLUMNS`).

    Example:
        >>> r = ResultRecord(model="m", backend="b", scheme="fp32", scenario="Offline",
        ...                  dataset="synthetic", threads=1, batch_size=1,
        ...                  latency_ms={"p50": 1.5}, loadgen={"valid": False})
        >>> row = flatten("x", r)
        >>> row["latency_p50_ms"], row["loadgen_valid"]
        (1.5, 0)
    """
    lat = record.latency_ms or {}
    acc = record.accuracy or {}
    energy = record.energy or {}
    valid = (record.loadgen or {}).get("valid")
    return {
        "run_id": run_id,
        "model": record.model,
        "backend": record.backend,
        "scheme": record.scheme,
        "scenario": record.scenario,
        "mode": record_mode(record, run_id),
        "device": record_device(record),
        "status": record.status,
        "reason": record.reason,
        "dataset": record.dataset,
        "threads": record.threads,
        "batch_size": record.batch_size,
        "throughput_ips": record.throughput_ips,
        "latency_mean_ms": _num(lat.get("mean")),
        "latency_p50_ms": _num(lat.get("p50")),
        "latency_p90_ms": _num(lat.get("p90")),
        "latency_p99_ms": _num(lat.get("p99")),
        "top1_pct": _num(acc.get("top1_pct")),
        "top5_pct": _num(acc.get("top5_pct")),
        "agreement_with_fp32_pct": _num(acc.get("agreement_with_fp32_pct")),
        "accuracy_samples": acc.get("samples"),
        "size_bytes": record.size_bytes,
        "peak_rss_bytes": record.peak_rss_bytes,
        "joules_per_inference": _num(energy.get("joules_per_inference")),
        "loadgen_valid": None if valid is None else int(bool(valid)),
        "simulated": int(bool(record.simulated)),
        "artifact": record.artifact,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "run_dir": None if run_dir is None else str(run_dir),
        "record_json": record.to_json(),
        "indexed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _device_of_json(text: Any) -> str:
    try:
        device = json.loads(text).get("device")
    except (TypeError, ValueError, AttributeError):
        device = None
    return str(device) if isinstance(device, str) and device else LOCAL_DEVICE


def _num(v: Any) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


class ResultStore:
    """``RUNS_DIR/results.db``: open (creating it if needed), add records, query rows.

    Use it as a context manager, or call :meth:`close`. Writes go through WAL journaling, one
    transaction per record.

    Example:
        >>> import tempfile
        >>> with ResultStore(Path(tempfile.mkdtemp())) as s:
        ...     len(s)
        0
    """

    def __init__(self, runs_dir: Path | str, *, create: bool = True) -> None:
        self.runs_dir = Path(runs_dir)
        self.path = self.runs_dir / DB_NAME
        if not self.path.exists() and not create:
            raise ValidationError(
                f"{self.runs_dir} has no {DB_NAME}; run `edgequant sweep` into it first "
                "(or `edgequant results --rebuild` if it holds run directories)"
            )
        if not create and self.path.is_file() and self.path.stat().st_size == 0:
            raise ArtifactError(
                f"{self.path} is empty (zero bytes); run `edgequant results {self.runs_dir} "
                "--rebuild` to re-index the run directories"
            )
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(self.path, timeout=30.0)
            self._conn.row_factory = sqlite3.Row
            self._init_schema()
        except sqlite3.DatabaseError as e:
            raise ArtifactError(
                f"{self.path} is not a readable results database ({e}); run `edgequant results "
                f"{self.runs_dir} --rebuild` to re-index the run directories"
            ) from None

    # --- schema -------------------------------------------------------------------------------
    def _init_schema(self) -> None:
        conn = self._conn
        conn.execute("PRAGMA journal_mode=WAL")
        has_meta = conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone()
        version = STORE_SCHEMA_VERSION
        if has_meta:
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > STORE_SCHEMA_VERSION:
                raise ValidationError(
                    f"{self.path} was written by a newer edgequant (results schema {version}, this "
                    f"edgequant reads up to {STORE_SCHEMA_VERSION}); upgrade edgequant, or write to "
                    "a new runs directory"
                )
        cols = ", ".join(f"{name} {typ}" for name, typ in COLUMNS)
        with conn:
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(STORE_SCHEMA_VERSION),),
            )
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('created_at', ?)",
                (datetime.now(UTC).isoformat(timespec="seconds"),),
            )
            conn.execute(f"CREATE TABLE IF NOT EXISTS runs ({cols})")
        if version < STORE_SCHEMA_VERSION:
            self._migrate()

    def _migrate(self) -> None:
        """Bring a schema-1 database to schema 2: add ``device`` and fill it from the records.

        One transaction: a failed migration leaves the database as it was (and :meth:`__init__`
        says to rebuild).
        """
        conn = self._conn
        have = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
        with conn:
            if "device" not in have:
                conn.execute("ALTER TABLE runs ADD COLUMN device TEXT")
            for run_id, text in conn.execute("SELECT run_id, record_json FROM runs").fetchall():
                conn.execute(
                    "UPDATE runs SET device = ? WHERE run_id = ?", (_device_of_json(text), run_id)
                )
            conn.execute(
                "UPDATE meta SET value = ? WHERE key = 'schema_version'",
                (str(STORE_SCHEMA_VERSION),),
            )

    @property
    def schema_version(self) -> int:
        row = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row[0])

    # --- writes -------------------------------------------------------------------------------
    def add(self, run_id: str, record: ResultRecord, run_dir: Path | None = None) -> None:
        """Insert or replace the row of ``run_id`` in one transaction."""
        row = flatten(run_id, record, run_dir)
        names = ", ".join(COLUMN_NAMES)
        marks = ", ".join("?" for _ in COLUMN_NAMES)
        with self._conn:  # commits on success, rolls back on any exception
            self._conn.execute(
                f"INSERT OR REPLACE INTO runs ({names}) VALUES ({marks})",
                [row[c] for c in COLUMN_NAMES],
            )

    def remove(self, run_id: str) -> None:
        with self._conn:
            self._conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))

    # --- reads --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    def __contains__(self, run_id: object) -> bool:
        return (
            self._conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (str(run_id),)).fetchone()
            is not None
        )

    def rows(self, **where: Any) -> list[dict[str, Any]]:
        """Rows as dicts, ordered by model, device, backend, scheme, scenario; ``where`` filters by equality.

        Example: ``store.rows(model="resnet50", device="rpi5", status="ok")``.
        """
        bad = [k for k in where if k not in COLUMN_NAMES]
        if bad:
            raise ValidationError(
                f"unknown result column(s) {bad}; known: {', '.join(COLUMN_NAMES)}"
            )
        sql = "SELECT * FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(f"{k} = ?" for k in where)
        sql += " ORDER BY model, device, backend, scheme, mode, scenario, run_id"
        return [dict(r) for r in self._conn.execute(sql, list(where.values()))]

    def devices(self) -> list[str]:
        """The devices the stored runs ran on, sorted (``"local"`` for runs without one)."""
        return sorted({str(r["device"]) for r in self.rows()})

    def records(self, **where: Any) -> Iterator[tuple[str, ResultRecord]]:
        """``(run_id, ResultRecord)`` pairs, rebuilt from the stored JSON."""
        for row in self.rows(**where):
            yield row["run_id"], self._decode(row["run_id"], row["record_json"])

    def get(self, run_id: str) -> ResultRecord | None:
        row = self._conn.execute(
            "SELECT record_json FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        return None if row is None else self._decode(run_id, row[0])

    def _decode(self, run_id: str, text: Any) -> ResultRecord:
        try:
            return ResultRecord.from_dict(json.loads(text))
        except (TypeError, ValueError) as e:  # ValidationError and JSONDecodeError included
            raise ArtifactError(
                f"{self.path}: the stored record of {run_id} is corrupt ({e}); run `edgequant "
                f"results {self.runs_dir} --rebuild` to re-index the run directories"
            ) from None

    # --- lifecycle ----------------------------------------------------------------------------
    def checkpoint(self) -> None:
        """Fold the write-ahead log into ``results.db`` itself (before the file is moved)."""
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_run_dirs(runs_dir: Path) -> Iterator[Path]:
    """Run directories under ``runs_dir`` (those holding a ``result.json``), sorted."""
    for p in sorted(Path(runs_dir).glob("*/result.json")):
        yield p.parent


def rebuild(runs_dir: Path | str) -> int:
    """Re-create ``results.db`` from the ``result.json`` files; returns how many runs it indexed.

    A ``result.json`` that cannot be read as a result record (not JSON, not an object, wrong field
    types) is reported by path on stderr and skipped: one broken run does not hide the others. The
    new index is written beside the old one and replaces it only once it is complete, so a failed
    rebuild leaves the previous ``results.db`` as it was.

    Example:
        >>> import tempfile
        >>> rebuild(Path(tempfile.mkdtemp()))
        0
    """
    from edgequant.console import log

    runs = Path(runs_dir)
    if not runs.is_dir():
        raise ValidationError(f"runs directory {runs} does not exist")
    tmp_dir = Path(tempfile.mkdtemp(prefix=".rebuild-", dir=runs))
    try:
        n = 0
        with ResultStore(tmp_dir) as store:
            for run_dir in iter_run_dirs(runs):
                try:
                    record = ResultRecord.load(run_dir)
                    store.add(run_dir.name, record, run_dir)
                except (ValidationError, TypeError, ValueError) as e:
                    log(f"skipping {run_dir / 'result.json'}: {e}")
                    continue
                n += 1
            store.checkpoint()
        db = runs / DB_NAME
        for suffix in ("-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
        (tmp_dir / DB_NAME).replace(db)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return n


__all__ = [
    "COLUMNS",
    "DB_NAME",
    "EXPORT_COLUMNS",
    "LOCAL_DEVICE",
    "STORE_SCHEMA_VERSION",
    "ResultStore",
    "flatten",
    "iter_run_dirs",
    "rebuild",
    "record_device",
    "record_mode",
]
