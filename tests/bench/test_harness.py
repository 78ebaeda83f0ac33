"""Each scenario on a real (tiny numpy) Session through the real LoadGen, with short runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgequant.bench.accuracy import read_accuracy_log, scores
from edgequant.bench.harness import run_scenario
from edgequant.bench.logs import ACCURACY, DETAIL, SUMMARY, parse_logs
from edgequant.bench.qsl import SampleLibrary
from edgequant.bench.settings import BenchSettings
from edgequant.measure.accuracy import topk_accuracy
from tests.bench.sessions import MatmulSession

pytest.importorskip("mlperf_loadgen")

SHAPE = (3, 8, 8)
N = 40


@pytest.fixture(scope="module")
def samples() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((N, *SHAPE)).astype(np.float32)


def _qsl(samples: np.ndarray) -> SampleLibrary:
    return SampleLibrary(lambda idx: samples[list(idx)], total=len(samples))


@pytest.mark.parametrize("scenario", ["SingleStream", "MultiStream", "Offline", "Server"])
def test_scenario_is_valid_and_logs_parse(
    scenario: str, samples: np.ndarray, tmp_path: Path
) -> None:
    session = MatmulSession(SHAPE, delay_s=0.0003)
    settings = BenchSettings(
        scenario=scenario, duration_s=0.5, target_latency_ms=50 if scenario == "Server" else None
    )
    out = run_scenario(
        session, _qsl(samples), settings, tmp_path / "lg", batch_size=4, warmup_s=0.1
    )
    r = out.result
    assert (tmp_path / "lg" / DETAIL).is_file() and (tmp_path / "lg" / SUMMARY).is_file()
    assert r.valid, r.reasons
    assert r.scenario == scenario and r.mode == "PerformanceOnly"
    assert r.latency_ms["p50"] <= r.latency_ms["p90"] <= r.latency_ms["p99"]
    assert r.throughput_ips is not None and r.throughput_ips > 0
    assert out.samples_completed >= (r.query_count or 1)
    # what each SUT fed the runtime: 1 sample, 8 samples, batches of 4, batches of <= 4
    sizes = set(session.batch_sizes[-20:])
    expected = {"SingleStream": {1}, "MultiStream": {8}}.get(scenario)
    if expected is not None:
        assert sizes == expected
    else:
        assert max(sizes) <= 4
    if scenario in ("SingleStream", "MultiStream"):
        assert r.early_stopping.get("met") is True
    # the summary agrees with the detail log on the verdict
    assert "Result is : VALID" in (tmp_path / "lg" / SUMMARY).read_text()


def test_too_short_schedule_is_invalid_then_retried(samples: np.ndarray, tmp_path: Path) -> None:
    from edgequant.bench.harness import WarmUp

    # a warm-up that claims the model is 100x slower: LoadGen's Offline query is far too small
    session = MatmulSession(SHAPE)
    slow = WarmUp(latency_s=0.1, qps=10.0, runs=1, seconds=0.0)
    settings = BenchSettings(scenario="Offline", duration_s=0.5)
    out = run_scenario(session, _qsl(samples), settings, tmp_path / "a", warmup=slow, retry=False)
    assert not out.result.valid
    assert "min duration not met" in out.result.reasons
    # by default the run is repeated once, sized from LoadGen's own measurement of the first
    out = run_scenario(session, _qsl(samples), settings, tmp_path / "b", warmup=slow)
    assert out.result.valid, out.result.reasons
    assert "min duration not met" in out.extra["earlier_attempts"][0]["reasons"]


def test_accuracy_log_top1_equals_direct_computation(samples: np.ndarray, tmp_path: Path) -> None:
    session = MatmulSession(SHAPE)
    labels = np.random.default_rng(1).integers(0, 10, N)
    for scenario in ("Offline", "SingleStream"):
        out = run_scenario(
            session,
            _qsl(samples),
            BenchSettings(scenario=scenario, duration_s=0.5),
            tmp_path / scenario,
            accuracy=True,
            batch_size=3,
            warmup_s=0.05,
        )
        top5 = read_accuracy_log(out.log_dir / ACCURACY, N)
        assert (top5[:, 0] >= 0).all(), "every sample answered once"
        logits = session.run(samples)
        got = scores(top5, labels, top5)
        assert got["samples"] == N
        assert got["top1_pct"] == pytest.approx(topk_accuracy(logits, labels, 1))
        assert got["top5_pct"] == pytest.approx(topk_accuracy(logits, labels, 5))
        assert got["agreement_with_fp32_pct"] == 100.0
        assert (top5[:, 0] == logits.argmax(1)).all()


def test_fixed_batch_runtime_gets_padded_batches(samples: np.ndarray, tmp_path: Path) -> None:
    session = MatmulSession(SHAPE, fixed_batch=4)
    out = run_scenario(
        session,
        _qsl(samples[:10]),
        BenchSettings(scenario="Offline", duration_s=0.3),
        tmp_path / "lg",
        accuracy=True,
        warmup_s=0.05,
    )
    top5 = read_accuracy_log(out.log_dir / ACCURACY, 10)
    assert set(session.batch_sizes) == {4}
    assert (top5[:, 0] == session.w.T.dot(samples[:10].reshape(10, -1).T).argmax(0)).all()


def test_runtime_failure_mid_run_is_reported_not_valid(samples: np.ndarray, tmp_path: Path) -> None:
    from edgequant.bench.harness import WarmUp

    session = MatmulSession(SHAPE, fail_after=30)
    warm = WarmUp(latency_s=1e-4, qps=1e4, runs=0, seconds=0.0)  # no warm-up calls: fail in LoadGen
    out = run_scenario(
        session,
        _qsl(samples),
        BenchSettings(scenario="SingleStream", duration_s=0.5),
        tmp_path / "lg",
        warmup=warm,
    )
    assert isinstance(out.error, RuntimeError)
    assert not out.result.valid
    assert "device lost" in out.result.reasons[0]
    assert parse_logs(tmp_path / "lg").scenario == "SingleStream"  # logs still written


def test_server_warm_up_runs_every_batch_size_before_timing(samples: np.ndarray) -> None:
    # the Server worker batches whatever queued up: a lazy per-size compile must not land mid-run
    from edgequant.bench.harness import warm_up

    session = MatmulSession(SHAPE)
    w = warm_up(session, samples[:3], "Server", batch_size=4, seconds=0.05)
    assert {2, 3, 4} <= set(session.batch_sizes)
    assert w.typical_s is not None and w.typical_s >= w.latency_s
    single = MatmulSession(SHAPE)
    warm_up(single, samples[:3], "SingleStream", batch_size=4, seconds=0.05)
    assert set(single.batch_sizes) == {1}


def test_a_stray_audit_config_in_the_working_dir_is_ignored(
    samples: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # LoadGen reads ./audit.config by default: a leftover TEST04 file would turn every normal
    # run into an audit run issuing one sample over and over
    from edgequant.bench.compliance import write_audit_config
    from edgequant.bench.logs import read_detail

    work = tmp_path / "cwd"
    write_audit_config("TEST04", work)
    monkeypatch.chdir(work)
    settings = BenchSettings(scenario="SingleStream", duration_s=0.3)
    # 200 us per query, like a small real model: at the bare matmul's ~4 us LoadGen's schedule
    # (sized from the warm-up, at least 10 us per query) can run out before the minimum duration
    out = run_scenario(
        MatmulSession(SHAPE, delay_s=2e-4), _qsl(samples), settings, tmp_path / "lg", warmup_s=0.05
    )
    detail = read_detail(tmp_path / "lg" / DETAIL)
    assert not any("Audit Config" in w for w in detail["_warnings"])
    assert detail.get("effective_performance_issue_same") in (None, False, 0)
    assert out.result.valid
    # the same file passed on purpose is applied
    audit = run_scenario(
        MatmulSession(SHAPE),
        _qsl(samples),
        settings,
        tmp_path / "audit",
        warmup_s=0.05,
        audit_config=work / "audit.config",
    )
    detail = read_detail(tmp_path / "audit" / DETAIL)
    assert any("Audit Config" in w for w in detail["_warnings"])
    assert audit.result.mode == "PerformanceOnly"
