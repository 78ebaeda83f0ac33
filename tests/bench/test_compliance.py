"""Compliance verification (TEST01/TEST04) on log files built by the test, passing and failing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgequant.bench.compliance import (
    AUDIT_WARNING,
    TEST01_SEED,
    audit_config_text,
    read_accuracy_log,
    verify_accuracy,
    verify_applied,
    verify_performance,
    write_audit_config,
)
from edgequant.errors import BenchmarkError, ValidationError


def _hex(*top5: int) -> str:
    return np.asarray(top5, dtype=np.int32).tobytes().hex().upper()


def _acc_log(path: Path, entries: list[tuple[int, str]]) -> Path:
    body = ",\n".join(
        f'{{ "seq_id" : {i}, "qsl_idx" : {q}, "data" : "{d}" }}' for i, (q, d) in enumerate(entries)
    )
    path.write_text("[\n" + body + "\n]\n")
    return path


def _detail(path: Path, **values: object) -> Path:
    lines = []
    for k, v in values.items():
        meta = {"is_warning": True} if k == "warning_generic_message" else {}
        lines.append(":::MLLOG " + json.dumps({"key": k, "value": v, "metadata": meta}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_audit_configs_carry_the_official_keys(tmp_path: Path) -> None:
    t01 = audit_config_text("test01", sampling_target=64)
    assert "*.*.mode = 2" in t01 and f"accuracy_log_rng_seed = {TEST01_SEED}" in t01
    assert "accuracy_log_sampling_target = 64" in t01
    t04 = audit_config_text("TEST04")
    assert "performance_issue_same = 1" in t04 and "performance_issue_same_index = 3" in t04
    assert write_audit_config("TEST04", tmp_path).read_text() == t04
    with pytest.raises(ValidationError, match="TEST01, TEST04"):
        audit_config_text("TEST05")


def test_accuracy_log_round_trip_and_bad_files(tmp_path: Path) -> None:
    p = _acc_log(tmp_path / "a.json", [(3, _hex(1, 2, 3, 4, 5)), (7, "")])
    assert read_accuracy_log(p) == [(3, _hex(1, 2, 3, 4, 5)), (7, "")]
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(BenchmarkError, match=r"bad\.json"):
        read_accuracy_log(tmp_path / "bad.json")


def test_test01_accuracy_passes_on_equal_responses_and_fails_on_a_broken_session() -> None:
    ref = [(i, _hex(i, 1, 2, 3, 4)) for i in range(10)]
    assert verify_accuracy(ref, [ref[2], ref[5], ref[5]]).passed
    # a session that returns something else in performance mode (e.g. cached, or garbage)
    broken = [(2, _hex(9, 1, 2, 3, 4)), (5, _hex(5, 1, 2, 3, 4))]
    check = verify_accuracy(ref, broken)
    assert not check.passed and check.figures["data_mismatched"] == 1
    assert check.figures["top1_mismatched"] == 1
    # nothing in common: fail, even with no mismatch
    assert not verify_accuracy(ref, [(99, _hex(0, 0, 0, 0, 0))]).passed


def test_test01_fallback_accepts_a_top1_tie_within_one_percent() -> None:
    labels = list(range(200))
    ref = [(i, _hex(i, 0, 0, 0, 0)) for i in range(200)]
    # same top-1 everywhere, lower-ranked classes differ (non-determinism): accuracy unchanged
    audit = [(i, _hex(i, 1, 1, 1, 1)) for i in range(200)]
    assert verify_accuracy(ref, audit, labels).passed
    # 10 of 200 top-1s wrong: 5% accuracy lost, over the 1% allowed
    wrong = [(i, _hex(i if i >= 10 else 999, 0, 0, 0, 0)) for i in range(200)]
    check = verify_accuracy(ref, wrong, labels)
    assert not check.passed and check.figures["delta_pct"] > 1


def test_performance_rules(tmp_path: Path) -> None:
    ref = _detail(
        tmp_path / "ref.txt",
        effective_scenario="Offline",
        result_validity="VALID",
        result_samples_per_second=100.0,
    )
    close = _detail(
        tmp_path / "a.txt",
        effective_scenario="Offline",
        result_validity="VALID",
        result_samples_per_second=105.0,
    )
    fast = _detail(
        tmp_path / "b.txt",
        effective_scenario="Offline",
        result_validity="VALID",
        result_samples_per_second=130.0,
    )
    slow = _detail(
        tmp_path / "c.txt",
        effective_scenario="Offline",
        result_validity="VALID",
        result_samples_per_second=70.0,
    )
    invalid = _detail(
        tmp_path / "d.txt",
        effective_scenario="Offline",
        result_validity="INVALID",
        result_samples_per_second=100.0,
    )
    assert verify_performance("TEST01", ref, close).passed
    assert not verify_performance("TEST01", ref, fast).passed
    assert not verify_performance("TEST01", ref, slow).passed  # TEST01 is two-sided
    assert verify_performance("TEST04", ref, slow).passed  # TEST04: slower is always fine
    t04 = verify_performance("TEST04", ref, fast)  # caching: 30% faster on one repeated sample
    assert not t04.passed and "faster" in t04.detail
    assert not verify_performance("TEST01", ref, invalid).passed


def test_latency_scenarios_compare_latencies(tmp_path: Path) -> None:
    ref = _detail(
        tmp_path / "r.txt",
        effective_scenario="SingleStream",
        result_validity="VALID",
        early_stopping_latency_ss=2_000_000,
    )
    cached = _detail(
        tmp_path / "c.txt",
        effective_scenario="SingleStream",
        result_validity="VALID",
        early_stopping_latency_ss=1_000_000,
    )
    assert not verify_performance("TEST04", ref, cached).passed  # twice as fast on one sample
    assert verify_performance("TEST04", cached, ref).passed


def test_audit_applied_needs_loadgens_warning(tmp_path: Path) -> None:
    ok = _detail(
        tmp_path / "ok.txt",
        warning_generic_message=f"{AUDIT_WARNING} (audit.config).",
        effective_test_mode="PerformanceOnly",
        effective_accuracy_log_rng_seed=TEST01_SEED,
    )
    assert verify_applied("TEST01", ok).passed
    plain = _detail(tmp_path / "plain.txt", effective_test_mode="PerformanceOnly")
    check = verify_applied("TEST04", plain)
    assert not check.passed and "did not report" in check.detail
