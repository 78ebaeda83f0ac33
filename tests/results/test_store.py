"""The SQLite results store: schema versioning, transactional writes, re-indexing, bad input."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from edgequant.errors import ValidationError
from edgequant.results.record import ResultRecord
from edgequant.results.store import (
    DB_NAME,
    STORE_SCHEMA_VERSION,
    ResultStore,
    rebuild,
)


def _record(scheme: str = "fp32", scenario: str = "Offline", **kw: object) -> ResultRecord:
    base: dict[str, object] = dict(
        model="tinynet",
        backend="onnxruntime",
        scheme=scheme,
        scenario=scenario,
        dataset="synthetic",
        threads=2,
        batch_size=8,
        throughput_ips=123.5,
        latency_ms={"mean": 2.0, "p50": 1.9, "p90": 2.5, "p99": 3.1},
        loadgen={"valid": True, "mode": "PerformanceOnly"},
        size_bytes=4096,
        accuracy={
            "top1_pct": 91.25,
            "top5_pct": 99.0,
            "samples": 360,
            "agreement_with_fp32_pct": 98.5,
        },
    )
    base.update(kw)
    return ResultRecord(**base)  # type: ignore[arg-type]


def _save(runs: Path, run_id: str, rec: ResultRecord) -> None:
    rec.save(runs / run_id)
    with ResultStore(runs) as store:
        store.add(run_id, rec, runs / run_id)


def test_add_and_read_back_flat_fields_and_full_record(tmp_path: Path) -> None:
    rec = _record(extra={"sweep": {"mode": "accuracy"}})
    _save(tmp_path, "a", rec)
    with ResultStore(tmp_path) as store:
        assert len(store) == 1 and "a" in store and "b" not in store
        (row,) = store.rows()
        assert row["model"] == "tinynet" and row["status"] == "ok" and row["mode"] == "accuracy"
        assert row["throughput_ips"] == 123.5 and row["latency_p99_ms"] == 3.1
        assert row["top1_pct"] == 91.25 and row["agreement_with_fp32_pct"] == 98.5
        assert row["loadgen_valid"] == 1 and row["size_bytes"] == 4096
        assert store.get("a") == rec
        assert store.schema_version == STORE_SCHEMA_VERSION
    # re-adding the same run replaces its row
    with ResultStore(tmp_path) as store:
        store.add("a", _record(throughput_ips=1.0))
        assert [r["throughput_ips"] for r in store.rows()] == [1.0]


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    ResultStore(tmp_path).close()
    with sqlite3.connect(tmp_path / DB_NAME) as conn:
        conn.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'",
            (str(STORE_SCHEMA_VERSION + 1),),
        )
    with pytest.raises(ValidationError, match=r"newer edgequant.*upgrade edgequant"):
        ResultStore(tmp_path)


def test_corrupt_database_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).write_bytes(b"this is not sqlite" * 100)
    from edgequant.errors import ArtifactError

    with pytest.raises(ArtifactError, match="--rebuild"):
        ResultStore(tmp_path)


def test_failed_insert_leaves_no_partial_row(tmp_path: Path) -> None:
    with ResultStore(tmp_path) as store:
        store.add("good", _record())
        bad = _record(scheme="w8a8")
        bad.size_bytes = object()  # type: ignore[assignment]  # sqlite cannot bind it: the insert fails
        with pytest.raises(sqlite3.Error):
            store.add("bad", bad)
        assert "bad" not in store
        store.add("after", _record(scheme="w8a8"))  # the store is still usable
    # what was committed is visible to another connection
    with sqlite3.connect(tmp_path / DB_NAME) as conn:
        ids = sorted(r[0] for r in conn.execute("SELECT run_id FROM runs"))
    assert ids == ["after", "good"]


def test_rows_filter_and_unknown_column(tmp_path: Path) -> None:
    with ResultStore(tmp_path) as store:
        store.add("a", _record("fp32"))
        store.add("b", _record("w8a8"))
        store.add("c", _record("w4a8", status="na", reason="no int4 kernel"))
        assert [r["run_id"] for r in store.rows(status="ok")] == ["a", "b"]
        assert store.rows(scheme="w4a8")[0]["reason"] == "no int4 kernel"
        with pytest.raises(ValidationError, match="unknown result column"):
            store.rows(nonsense=1)


def test_rebuild_reindexes_from_result_json(tmp_path: Path) -> None:
    _save(tmp_path, "a", _record("fp32"))
    _save(tmp_path, "b", _record("w8a8", scenario="SingleStream"))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "result.json").write_text("{not json")
    (tmp_path / DB_NAME).unlink()
    assert rebuild(tmp_path) == 2
    with ResultStore(tmp_path) as store:
        assert sorted(r["run_id"] for r in store.rows()) == ["a", "b"]
        assert store.get("b") == ResultRecord.load(tmp_path / "b")


def test_results_command_exports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgequant.cli import main

    _save(tmp_path, "a", _record("fp32"))
    (tmp_path / DB_NAME).unlink()  # the command re-indexes a runs dir that has no database
    assert main(["results", str(tmp_path), "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("run_id,model,backend") and "tinynet" in out
    assert main(["results", str(tmp_path), "--json", "--status", "ok"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["run_id"] == "a"
    assert main(["results", str(tmp_path / "missing")]) != 0


BAD_RESULTS = {
    "empty-object": b"{}",
    "list": b"[]",
    "binary": bytes(range(256)),
    "wrong-types": json.dumps(
        {
            "model": 1,
            "backend": "b",
            "scheme": "fp32",
            "scenario": "Offline",
            "dataset": "d",
            "threads": "two",
            "batch_size": 1,
        }
    ).encode(),
    "bool-threads": json.dumps(
        {
            "model": "m",
            "backend": "b",
            "scheme": "fp32",
            "scenario": "Offline",
            "dataset": "d",
            "threads": True,
            "batch_size": 1,
            "extra": [],
        }
    ).encode(),
}


@pytest.mark.parametrize("kind", sorted(BAD_RESULTS))
def test_rebuild_skips_a_bad_result_by_path_and_keeps_the_good(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _save(tmp_path, "a", _record("fp32"))
    _save(tmp_path, "b", _record("w8a8"))
    (tmp_path / "zbad").mkdir()
    (tmp_path / "zbad" / "result.json").write_bytes(BAD_RESULTS[kind])
    assert rebuild(tmp_path) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "zbad" / "result.json") in err
    with ResultStore(tmp_path, create=False) as store:
        assert sorted(r["run_id"] for r in store.rows()) == ["a", "b"]
    assert not list(tmp_path.glob(".rebuild-*"))  # no temp store left behind


def test_failed_rebuild_keeps_the_previous_store(tmp_path: Path) -> None:
    _save(tmp_path, "a", _record("fp32"))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "result.json").write_text(_record("w8a8").to_json())
    with ResultStore(tmp_path) as store:  # a row only the old store has: it must survive
        store.add("only-in-old-store", _record("fp16"))

    class Boom(Exception):
        pass

    real_add = ResultStore.add

    def add(self: ResultStore, run_id: str, rec: ResultRecord, run_dir: Path | None = None) -> None:
        if run_id == "b":
            raise Boom("disk full")
        real_add(self, run_id, rec, run_dir)

    ResultStore.add = add  # type: ignore[method-assign]
    try:
        with pytest.raises(Boom):
            rebuild(tmp_path)
    finally:
        ResultStore.add = real_add  # type: ignore[method-assign]
    with ResultStore(tmp_path, create=False) as store:
        assert sorted(r["run_id"] for r in store.rows()) == ["a", "only-in-old-store"]
    assert not list(tmp_path.glob(".rebuild-*"))


def test_zero_byte_database_advises_rebuild(tmp_path: Path) -> None:
    from edgequant.errors import ArtifactError

    (tmp_path / DB_NAME).write_bytes(b"")
    with pytest.raises(ArtifactError, match=r"empty.*--rebuild"):
        ResultStore(tmp_path, create=False)


def test_json_in_place_of_the_database_advises_rebuild(tmp_path: Path) -> None:
    from edgequant.errors import ArtifactError

    (tmp_path / DB_NAME).write_text(json.dumps([{"run_id": "a"}] * 50))
    with pytest.raises(ArtifactError, match=rf"results {tmp_path} --rebuild"):
        ResultStore(tmp_path, create=False)


def test_corrupt_stored_record_advises_rebuild(tmp_path: Path) -> None:
    from edgequant.errors import ArtifactError

    with ResultStore(tmp_path) as store:
        store.add("a", _record())
    with sqlite3.connect(tmp_path / DB_NAME) as conn:
        conn.execute("UPDATE runs SET record_json = '{broken'")
    with (
        ResultStore(tmp_path, create=False) as store,
        pytest.raises(ArtifactError, match="--rebuild"),
    ):
        list(store.records())


def test_results_command_rebuild_survives_a_bad_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgequant.cli import main

    _save(tmp_path, "a", _record("fp32"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "result.json").write_text("[]")
    assert main(["results", str(tmp_path), "--rebuild", "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert "tinynet" in captured.out and "bad/result.json" in captured.err


def test_results_command_output_to_a_directory_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgequant.cli import main

    _save(tmp_path, "a", _record("fp32"))
    (tmp_path / "out").mkdir()
    assert main(["results", str(tmp_path), "--format", "csv", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and "unexpected" not in err
