"""Scenario names and LoadGen test settings: the quick default and the official edge rules.

Quick (default, ~``duration_s`` seconds): LoadGen's early stopping decides whether the tail
estimate is sound. MultiStream and Server use the 90th percentile there, because early stopping
at the 99th needs at least 662 queries, which a 10 s run of a big model on two cores cannot
reach. ``mlperf=True`` applies the official edge rules: 600 s minimum, MultiStream at least 662
queries, SingleStream p90, MultiStream p99, Server p99.

Example:
    >>> scenario_name("offline")
    'Offline'
    >>> s = BenchSettings(scenario="SingleStream", duration_s=2)
    >>> s.latency_percentile
    0.9
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgequant.errors import ValidationError

SCENARIOS = ("SingleStream", "MultiStream", "Offline", "Server")
#: what each scenario's headline figure is
SCENARIO_METRIC = {
    "SingleStream": "p90 latency of one-sample queries (ms)",
    "MultiStream": "p99 latency of 8-sample queries (ms)",
    "Offline": "throughput with all samples issued at once (samples/s)",
    "Server": "throughput at Poisson arrivals within the latency bound (samples/s)",
}
OFFICIAL_PERCENTILE = {"SingleStream": 0.9, "MultiStream": 0.99, "Server": 0.99, "Offline": 0.9}
QUICK_PERCENTILE = {"SingleStream": 0.9, "MultiStream": 0.9, "Server": 0.9, "Offline": 0.9}
MULTISTREAM_SAMPLES = 8
#: MLPerf edge: MultiStream needs 662 queries, so that p99 early stopping can succeed
MLPERF_MULTISTREAM_QUERIES = 662
MLPERF_MIN_DURATION_S = 600.0
SERVER_OVERHEAD_S = 0.0005
#: the Server's default arrival rate as a share of what one-at-a-time serving sustains. Measured
#: on MobileNetV2 (10 s quick runs, 4x-latency bound): at 0.5, LiteRT fp32 ended at p90 19.0 ms
#: against a 19.7 ms bound and failed early stopping; the worker's batches of up to 8 cost
#: XNNPACK 8x one sample, so queues grow faster than one-at-a-time arithmetic says
SERVER_LOAD = 0.4
#: the Server's default latency bound in typical one-sample latencies (at least 15 ms). At 4x,
#: LiteRT fp32 MobileNetV2 still ended at p90 17.7 ms against a 17.8 ms bound at load 0.4: a
#: batch that formed while one ran costs k samples' time. 5x leaves room for one such batch.
SERVER_BOUND = 5.0


def check_positive(value: float, what: str, *, unit: str = "") -> None:
    """Refuse a value that is not a positive, finite number (``nan`` and ``inf`` included).

    Example:
        >>> check_positive(float("nan"), "--duration")
        Traceback (most recent call last):
        ...
        edgequant.errors.ValidationError: --duration must be a positive finite number, got nan
    """
    if not math.isfinite(value) or value <= 0:
        raise ValidationError(f"{what} must be a positive finite number, got {value:g}{unit}")


def scenario_name(name: str) -> str:
    """The canonical MLPerf scenario name; a mistyped one lists the close matches."""
    for s in SCENARIOS:
        if name.lower().replace("-", "").replace("_", "") == s.lower():
            return s
    close = difflib.get_close_matches(
        name, SCENARIOS, n=2, cutoff=0.4
    ) or difflib.get_close_matches(name.lower(), [s.lower() for s in SCENARIOS], n=2, cutoff=0.4)
    hint = ""
    if close:
        canon = [s for s in SCENARIOS if s.lower() in {c.lower() for c in close}]
        hint = f"; did you mean {' or '.join(canon)}?"
    raise ValidationError(f"unknown scenario {name!r}{hint} (valid: {', '.join(SCENARIOS)})")


@dataclass(frozen=True, kw_only=True)
class BenchSettings:
    """What LoadGen is asked to do; estimates from the warm-up fill ``expected_*``.

    ``count`` is the number of samples held in the QSL (LoadGen's performance sample count).
    """

    scenario: str
    duration_s: float = 10.0
    mlperf: bool = False
    user_conf: Path | None = None
    model_name: str = "edgequant"
    target_qps: float | None = None
    target_latency_ms: float | None = None
    min_query_count: int | None = None
    max_duration_s: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "scenario", scenario_name(self.scenario))
        check_positive(self.duration_s, "duration", unit=" s")
        if self.target_qps is not None:
            check_positive(self.target_qps, "--target-qps")
        if self.target_latency_ms is not None:
            check_positive(self.target_latency_ms, "--target-latency-ms")
        if self.user_conf is not None and not Path(self.user_conf).is_file():
            raise ValidationError(f"user.conf {self.user_conf} does not exist")

    @property
    def latency_percentile(self) -> float:
        table = OFFICIAL_PERCENTILE if self.mlperf else QUICK_PERCENTILE
        return table[self.scenario]

    @property
    def min_duration_s(self) -> float:
        return max(self.duration_s, MLPERF_MIN_DURATION_S) if self.mlperf else self.duration_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "duration_s": self.duration_s,
            "mlperf": self.mlperf,
            "user_conf": None if self.user_conf is None else str(self.user_conf),
            "target_qps": self.target_qps,
            "target_latency_ms": self.target_latency_ms,
            "latency_percentile": self.latency_percentile,
        }

    def test_settings(
        self,
        *,
        accuracy: bool,
        expected_latency_s: float,
        expected_qps: float,
        samples: int,
        typical_latency_s: float | None = None,
    ) -> Any:
        """A ``mlperf_loadgen.TestSettings`` for this run.

        ``expected_latency_s`` (per query) and ``expected_qps`` come from the warm-up; LoadGen
        pre-generates its query schedule from them, so they are set optimistic (LoadGen stops as
        soon as the minimum duration and query count are met; a schedule too short is INVALID).
        ``typical_latency_s`` (the warm-up's median; default: ``expected_latency_s``) sets the
        Server's default arrival rate and latency bound, which an optimistic figure would overload.
        """
        import mlperf_loadgen as lg

        ts = lg.TestSettings()
        ts.scenario = getattr(lg.TestScenario, self.scenario)
        ts.mode = lg.TestMode.AccuracyOnly if accuracy else lg.TestMode.PerformanceOnly
        pct = self.latency_percentile
        ts.min_duration_ms = int(self.min_duration_s * 1000)
        if self.max_duration_s is not None:
            ts.max_duration_ms = int(self.max_duration_s * 1000)
        lat_ns = max(int(expected_latency_s * 1e9 * 0.5), 10_000)
        ts.single_stream_expected_latency_ns = lat_ns
        ts.single_stream_target_latency_percentile = pct
        ts.multi_stream_expected_latency_ns = lat_ns
        ts.multi_stream_samples_per_query = MULTISTREAM_SAMPLES
        ts.multi_stream_target_latency_percentile = pct
        # Offline sizes its single query as expected_qps x min_duration x 1.1: over-estimate
        ts.offline_expected_qps = max(expected_qps * 1.5, 1.0)
        # default arrival rate: SERVER_LOAD of what one-at-a-time serving sustains, counting
        # ~0.5 ms of queueing and thread hand-off per query (what a tiny model costs in Python)
        typical_s = max(typical_latency_s or expected_latency_s, expected_latency_s)
        per_query_s = typical_s + SERVER_OVERHEAD_S
        ts.server_target_qps = self.target_qps or max(SERVER_LOAD / per_query_s, 1.0)
        # default bound: MLPerf's ResNet-50 Server bound (15 ms) or SERVER_BOUND x the typical
        # latency, whichever is longer
        bound_s = (
            (self.target_latency_ms / 1000)
            if self.target_latency_ms
            else max(0.015, SERVER_BOUND * typical_s)
        )
        ts.server_target_latency_ns = int(bound_s * 1e9)
        ts.server_target_latency_percentile = pct
        if self.mlperf:
            ts.min_query_count = (
                MLPERF_MULTISTREAM_QUERIES if self.scenario == "MultiStream" else 100
            )
        else:
            # enough for early stopping at p90 (64 queries) without stretching a quick run
            ts.min_query_count = self.min_query_count or (1 if self.scenario == "Offline" else 64)
        if self.scenario == "SingleStream" and self.target_latency_ms:
            ts.single_stream_expected_latency_ns = int(self.target_latency_ms * 1e6)
        if self.user_conf is not None:
            # user.conf keys win over everything above, as in MLPerf harnesses; for MLPerf's own
            # model names (e.g. resnet50) LoadGen first applies its built-in mlperf.conf rules
            ts.FromConfig(str(self.user_conf), self.model_name, self.scenario)
        ts.performance_sample_count_override = samples
        return ts
