"""``BenchConfig``: one ``edgequant bench`` run, validated before anything is loaded or built.

Example:
    >>> cfg = BenchConfig(model="digits_cnn", backend="onnxruntime", scenario="singlestream")
    >>> cfg.scenario, scenario_batch_sizes("Server", 8)
    ('SingleStream', [1, 8])
    >>> BenchConfig(model="digits_cnn", backend="onnxruntime", duration_s=float("inf"))
    Traceback (most recent call last):
    ...
    edgequant.errors.ValidationError: --duration must be a positive finite number, got inf
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edgequant.bench.settings import (
    MULTISTREAM_SAMPLES,
    BenchSettings,
    check_positive,
    scenario_name,
)
from edgequant.errors import ValidationError

#: samples held in RAM for performance runs when --count is not given (LoadGen's perf sample count)
DEFAULT_PERF_SAMPLES = 256
#: the batch size of Offline and Server runs when neither --batch-size nor the artifact sets one
DEFAULT_BATCH = 8


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """One ``edgequant bench`` run. ``artifact`` runs a prebuilt artifact instead of building one."""

    model: str | None = None
    backend: str | None = None
    scheme: str = "fp32"
    scenario: str = "Offline"
    data: str = "synthetic"
    calib: str | None = None
    accuracy: bool = False
    threads: int = 2
    duration_s: float = 10.0
    batch_size: int | None = None
    count: int | None = None
    run_dir: Path = Path("runs/bench")
    mlperf: bool = False
    user_conf: Path | None = None
    target_qps: float | None = None
    target_latency_ms: float | None = None
    weights: str | None = None
    arch: str | None = None
    artifact: Path | None = None
    allow_short_dataset: bool = False
    energy_csv: Path | None = None
    energy_root: Path = Path("/")
    idle_s: float = 1.0
    warmup_s: float = 1.0
    cache_dir: Path | None = None
    force_rebuild: bool = False
    progress: bool = True
    #: an MLPerf compliance test to run after the measurement (``TEST01`` or ``TEST04``)
    compliance: str | None = None
    #: measure the machine's roofline (cached per CPU) and record GOP/s and % of peak
    roofline: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scenario", scenario_name(self.scenario))
        if self.artifact is None and (not self.model or not self.backend):
            raise ValidationError("bench needs --model and --backend (or --artifact DIR)")
        if self.threads < 1:
            raise ValidationError(f"--threads must be >= 1, got {self.threads}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValidationError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.count is not None and self.count < 1:
            raise ValidationError(f"--count must be >= 1, got {self.count}")
        check_positive(self.duration_s, "--duration")
        for value, flag in (
            (self.target_qps, "--target-qps"),
            (self.target_latency_ms, "--target-latency-ms"),
        ):
            if value is not None:
                check_positive(value, flag)
        object.__setattr__(self, "run_dir", Path(self.run_dir))
        if self.compliance is not None:
            from edgequant.bench.compliance import check_test

            object.__setattr__(self, "compliance", check_test(self.compliance))

    @property
    def batch(self) -> int:
        """The Offline/Server batch size asked for (before an artifact's fixed batch wins)."""
        return self.batch_size or DEFAULT_BATCH

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    def settings(self, model_name: str) -> BenchSettings:
        """What LoadGen is asked for this run: the config's fields of the same names.

        Example:
            >>> BenchConfig(model="m", backend="onnxruntime", duration_s=2).settings("m").duration_s
            2
        """
        shared = {f.name for f in fields(BenchSettings)} & {f.name for f in fields(self)}
        return BenchSettings(model_name=model_name, **{k: getattr(self, k) for k in shared})


def query_batch(scenario: str, batch: int) -> int:
    """The samples per query a scenario issues: 1, 8 (MultiStream) or the batch size.

    Example:
        >>> query_batch("MultiStream", 32), query_batch("Offline", 32)
        (8, 32)
    """
    return {"SingleStream": 1, "MultiStream": MULTISTREAM_SAMPLES}.get(scenario, batch)


def scenario_batch_sizes(scenario: str, batch: int) -> list[int]:
    """The batch sizes a scenario hands to ``Session.run``: Server's worker batches whatever
    has arrived (1 up to ``batch``), the others one fixed size.

    Example:
        >>> scenario_batch_sizes("Server", 8)
        [1, 8]
    """
    if scenario == "Server":
        return sorted({1, batch})
    return [query_batch(scenario, batch)]


__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_PERF_SAMPLES",
    "BenchConfig",
    "query_batch",
    "scenario_batch_sizes",
]
