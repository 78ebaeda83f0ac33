"""``run_benchmark``: model -> (cached) artifact -> session -> LoadGen -> one result record.

Example:
    >>> cfg = BenchConfig(model="mobilenet_v2", backend="openvino", scheme="w8a8",
    ...                   scenario="Offline", run_dir=Path("runs/mv2"))       # doctest: +SKIP
    >>> rec = run_benchmark(cfg)                                            # doctest: +SKIP
    >>> rec.throughput_ips, rec.loadgen["valid"]                            # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgequant.bench.settings import (
    MULTISTREAM_SAMPLES,
    SCENARIO_METRIC,
    BenchSettings,
    scenario_name,
)
from edgequant.console import log
from edgequant.errors import DatasetError, EdgequantError, ValidationError
from edgequant.results.record import ResultRecord

if TYPE_CHECKING:
    from edgequant.backends.base import Artifact, Backend, Session
    from edgequant.bench.harness import ScenarioRun
    from edgequant.data.base import Dataset
    from edgequant.models.base import Model
    from edgequant.quant.scheme import Scheme

#: samples held in RAM for performance runs when --count is not given (LoadGen's perf sample count)
DEFAULT_PERF_SAMPLES = 256
CALIB_SAMPLES_NOTE = "calibrated on synthetic data: fine for speed, meaningless for accuracy"


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
        if self.duration_s <= 0:
            raise ValidationError(f"--duration must be positive, got {self.duration_s}")
        object.__setattr__(self, "run_dir", Path(self.run_dir))

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _query_batch(scenario: str, batch: int) -> int:
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
    return [_query_batch(scenario, batch)]


def run_benchmark(cfg: BenchConfig) -> ResultRecord:
    """Run one benchmark and write ``RUN_DIR/result.json``; the record says how it went.

    Bad input (unknown model/scenario, missing artifact, short dataset) raises an
    :class:`EdgequantError` before anything runs. After that: an unsupported scheme gives status
    ``na``; a runtime error gives ``failed`` with the error line; Ctrl-C gives ``interrupted``
    (never valid, LoadGen logs kept as partial).
    """
    from edgequant.backends.base import Artifact, get_backend
    from edgequant.models.loader import load_model
    from edgequant.quant.scheme import get_scheme

    started = _now()
    artifact: Artifact | None = None
    if cfg.artifact is not None:
        artifact = Artifact.load(cfg.artifact)
        backend = get_backend(artifact.backend)
        scheme = artifact.scheme
        model = _artifact_model(cfg, artifact.model)
    else:
        backend = get_backend(str(cfg.backend))
        scheme = get_scheme(cfg.scheme)
        model = load_model(str(cfg.model), weights=cfg.weights, arch=cfg.arch)
    settings = BenchSettings(
        scenario=cfg.scenario,
        duration_s=cfg.duration_s,
        mlperf=cfg.mlperf,
        user_conf=cfg.user_conf,
        model_name=model.name,
        target_qps=cfg.target_qps,
        target_latency_ms=cfg.target_latency_ms,
    )
    data = _open_data(cfg, model)
    rec = ResultRecord(
        model=model.name,
        backend=backend.name,
        scheme=scheme.name,
        scenario=cfg.scenario,
        dataset=data.spec,
        threads=cfg.threads,
        batch_size=_query_batch(cfg.scenario, cfg.batch_size or 8),
        simulated=backend.simulated,
        scheme_detail=scheme.to_dict(),
        started_at=started,
    )
    rec.extra["config"] = cfg.to_dict()
    rec.extra["settings"] = settings.to_dict()
    rec.extra["warnings"] = warnings = []
    if model.weights is None:
        warnings.append("random weights: accuracy not meaningful")

    # a prebuilt artifact needs no module to convert: only the scheme is checked then
    reason = backend.unavailable_reason() or backend.supports(
        scheme, model if artifact is None else None
    )
    if reason is not None:
        rec.status, rec.reason = "na", reason
        return _finish(rec, cfg, backend)
    try:
        if artifact is None:
            artifact = _build(cfg, backend, model, scheme, warnings)
        rec.artifact = str(artifact.path)
        rec.artifact_metadata = artifact.metadata
        from edgequant.measure.size import artifact_disk_bytes, artifact_sizes

        rec.size_bytes, rec.weight_bytes = artifact_sizes(
            artifact.metadata, artifact_disk_bytes(artifact.path)
        )
        # static-shape runtimes compile the batch sizes this scenario runs now, not while timed
        backend.specialize(artifact, scenario_batch_sizes(cfg.scenario, cfg.batch_size or 8))
        log(f"loading {artifact.path.name} into {backend.name} ({cfg.threads} threads)")
        with backend.load(artifact, cfg.threads) as session:
            _measure(cfg, rec, settings, session, model, data)
    except KeyboardInterrupt:
        rec.status, rec.reason = "interrupted", "interrupted by the user (Ctrl-C)"
        if rec.loadgen is not None:
            rec.loadgen["valid"] = False
    except EdgequantError as e:
        rec.status, rec.reason = "failed", str(e)
    except Exception as e:  # the runtime itself broke: report its error line, mark the run failed
        lines = str(e).strip().splitlines()
        rec.status, rec.reason = "failed", f"{type(e).__name__}: {lines[0][:300] if lines else ''}"
    return _finish(rec, cfg, backend)


def prepare_artifact(cfg: BenchConfig) -> Artifact | None:
    """Build (or find in the cache) the artifact ``run_benchmark(cfg)`` would run, with the batch
    sizes of its scenario compiled; None when the backend cannot run the scheme.

    Sweeps call this to build ahead, several pairs at a time, before anything is measured.

    Example:
        >>> art = prepare_artifact(BenchConfig(model="digits_cnn", backend="onnxruntime"))  # doctest: +SKIP
    """
    from edgequant.backends.base import get_backend
    from edgequant.models.loader import load_model
    from edgequant.quant.scheme import get_scheme

    backend = get_backend(str(cfg.backend))
    scheme = get_scheme(cfg.scheme)
    model = load_model(str(cfg.model), weights=cfg.weights, arch=cfg.arch)
    if backend.unavailable_reason() or backend.supports(scheme, model):
        return None
    artifact = _build(cfg, backend, model, scheme, [])
    backend.specialize(artifact, scenario_batch_sizes(cfg.scenario, cfg.batch_size or 8))
    return artifact


def _artifact_model(cfg: BenchConfig, name: str) -> Model:
    """The model behind a prebuilt artifact. Only accuracy mode needs its fp32 module (for the
    reference); otherwise the zoo entry's input spec is enough, which saves building the module."""
    from edgequant.models.loader import load_model

    if cfg.accuracy or cfg.model or cfg.weights:
        return load_model(cfg.model or name, weights=cfg.weights, arch=cfg.arch)
    from edgequant.errors import ModelError
    from edgequant.models.base import Model
    from edgequant.models.registry import get_entry

    try:
        entry = get_entry(name)
    except ModelError:
        return load_model(name)
    return Model(
        name=entry.name,
        family=entry.family,
        input_spec=entry.input_spec,
        num_classes=entry.num_classes,
        weights="as built into the artifact",
    )


def _open_data(cfg: BenchConfig, model: Model) -> Dataset:
    from edgequant.data import open_dataset

    ds = open_dataset(cfg.data, model.input_spec, split="test", limit=cfg.count)
    if cfg.count is not None and len(ds) < cfg.count:
        if not cfg.allow_short_dataset:
            raise DatasetError(
                f"{cfg.data} has {len(ds)} samples but --count asks for {cfg.count}; "
                f"pass --allow-short to run on the {len(ds)} there are"
            )
        log(
            f"warning: {cfg.data} has only {len(ds)} of the {cfg.count} samples asked for; using {len(ds)}"
        )
    if cfg.accuracy and not ds.has_labels:
        log(f"note: {cfg.data} has no labels: accuracy mode reports agreement with fp32 only")
    return ds


def _build(
    cfg: BenchConfig, backend: Backend, model: Model, scheme: Scheme, warnings: list[str]
) -> Artifact:
    """The artifact from the cache (built with the calibration set when the scheme needs one)."""
    from edgequant.data import open_dataset

    calib = None
    if scheme.needs_calibration:
        spec = cfg.calib or cfg.data  # calibrate on the data being measured unless told otherwise
        calib = open_dataset(spec, model.input_spec, split="train")
        if calib.kind == "synthetic":
            warnings.append(CALIB_SAMPLES_NOTE)
    log(f"preparing {model.name} {scheme.name} for {backend.name}")
    try:
        from edgequant.build.cache import get_or_build
    except ImportError:  # no artifact cache in this installation: build into the run directory
        from edgequant.data import calibration_samples

        x = None if calib is None else calibration_samples(calib, scheme.calibration.samples)
        out = cfg.run_dir / "artifact"
        out.mkdir(parents=True, exist_ok=True)
        return backend.prepare(model, scheme, x, out)
    return get_or_build(
        backend,
        model,
        scheme,
        calib,
        cache_dir=cfg.cache_dir,
        force=cfg.force_rebuild,
        progress=cfg.progress,
    )


def _measure(
    cfg: BenchConfig,
    rec: ResultRecord,
    settings: BenchSettings,
    session: Session,
    model: Model,
    data: Dataset,
) -> None:
    from edgequant.bench.harness import run_scenario
    from edgequant.bench.qsl import SampleLibrary
    from edgequant.measure.energy import EnergySession, find_meter
    from edgequant.measure.memory import peak_rss_bytes

    batch = session.fixed_batch or cfg.batch_size or 8
    rec.batch_size = _query_batch(cfg.scenario, batch)
    rec.extra["executed_precision"] = session.executed_precision
    meter, why = find_meter(cfg.energy_root, csv_path=cfg.energy_csv)
    energy = EnergySession(meter, reason=why, idle_s=cfg.idle_s)
    if meter is not None:
        log(f"measuring idle power ({cfg.idle_s:g} s, {meter.name})")
        energy.baseline()
    perf_count = min(len(data), cfg.count or DEFAULT_PERF_SAMPLES)
    qsl = SampleLibrary(data.load, total=len(data), perf_count=perf_count)
    log(
        f"LoadGen {cfg.scenario} performance run (≥{settings.min_duration_s:g} s, {perf_count} samples in RAM)"
    )
    perf = run_scenario(
        session,
        qsl,
        settings,
        cfg.run_dir / "loadgen",
        batch_size=batch,
        # quick runs shorter than the warm-up (sweeps, the demo) need no more warm-up than run time
        warmup_s=cfg.warmup_s if cfg.mlperf else min(cfg.warmup_s, max(0.25, cfg.duration_s / 2)),
        on_start=energy.start,
    )
    result = energy.stop(perf.samples_completed)
    rec.peak_rss_bytes = peak_rss_bytes()
    rec.energy = None if result is None else result.to_dict()
    rec.energy_unavailable_reason = why
    _fill_perf(rec, settings, perf)
    if perf.interrupted:
        rec.status, rec.reason = (
            "interrupted",
            "interrupted by the user (Ctrl-C); LoadGen logs are partial",
        )
        rec.extra["loadgen_abandoned"] = perf.abandoned
        return
    if perf.error is not None:
        rec.status, rec.reason = "failed", perf.result.reasons[0]
        return
    if cfg.accuracy:
        _accuracy(cfg, rec, settings, session, model, data, batch, perf)


def _fill_perf(rec: ResultRecord, settings: BenchSettings, perf: ScenarioRun) -> None:
    r = perf.result
    rec.latency_ms = r.latency_ms or None
    rec.throughput_ips = r.throughput_ips
    rec.loadgen = {
        "valid": bool(r.valid and not perf.interrupted and perf.error is None),
        "mode": r.mode,
        "scenario": r.scenario,
        "metric": SCENARIO_METRIC[settings.scenario],
        "reasons": r.reasons,
        "min_duration_ms": r.min_duration_ms,
        "min_query_count": r.min_query_count,
        "query_count": r.query_count,
        "samples_per_query": r.samples_per_query,
        "latency_percentile": r.latency_percentile,
        "target_qps": r.target_qps,
        "target_latency_ms": r.target_latency_ms,
        "early_stopping": r.early_stopping,
        "official_settings": settings.mlperf,
        "log_dir": str(perf.log_dir),
        "warmup": perf.warmup.to_dict(),
        "errors": r.errors,
        "warnings": r.warnings,
        "partial": perf.interrupted,
        **perf.extra,
    }


def _accuracy(
    cfg: BenchConfig,
    rec: ResultRecord,
    settings: BenchSettings,
    session: Session,
    model: Model,
    data: Dataset,
    batch: int,
    perf: ScenarioRun,
) -> None:
    from edgequant.bench.accuracy import read_accuracy_log, reference_top5, scores
    from edgequant.bench.harness import run_scenario
    from edgequant.bench.logs import ACCURACY
    from edgequant.bench.qsl import SampleLibrary

    log(f"LoadGen {cfg.scenario} accuracy run ({len(data)} samples)")
    qsl = SampleLibrary(data.load, total=len(data), perf_count=len(data))
    out = run_scenario(
        session,
        qsl,
        settings,
        cfg.run_dir / "loadgen" / "accuracy",
        accuracy=True,
        batch_size=batch,
        warmup=perf.warmup,
    )
    if out.interrupted or out.error is not None:
        rec.extra["loadgen_abandoned"] = out.abandoned
        rec.status = "interrupted" if out.interrupted else "failed"
        rec.reason = out.result.reasons[0] if out.result.reasons else "accuracy run did not finish"
        if rec.loadgen is not None:
            rec.loadgen["valid"] = False
        return
    top5 = read_accuracy_log(out.log_dir / ACCURACY, len(data))
    log("fp32 reference predictions (cached per model and dataset)")
    ref = reference_top5(model, data.identity, len(data), data.load, cache_dir=cfg.cache_dir)
    acc = scores(top5, data.labels if data.has_labels else None, ref)
    acc["log"] = str(out.log_dir / ACCURACY)
    rec.accuracy = acc


def _finish(rec: ResultRecord, cfg: BenchConfig, backend: Backend) -> ResultRecord:
    from edgequant.measure.environment import environment_info

    try:
        versions = backend.versions()
    except Exception:  # an unavailable runtime has no version to report
        versions = {}
    rec.environment = environment_info(versions)
    rec.finished_at = _now()
    rec.save(cfg.run_dir)
    return rec
