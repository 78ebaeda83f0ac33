"""``run_benchmark``: model -> (cached) artifact -> session -> LoadGen -> one result record.

The artifact comes from the build stage (:func:`edgequant.build.stage.build_artifact`); this
module opens the data, checks what can be checked before anything runs
(:mod:`edgequant.bench.preflight`), loads the session and hands it to the measurement
(:mod:`edgequant.bench.measurement`). ``benchmark()`` (:mod:`edgequant.bench.api`) is the
Python function over it.

Example:
    >>> import tempfile
    >>> cfg = BenchConfig(model="digits_cnn", backend="onnxruntime", scheme="fp32",
    ...                   scenario="SingleStream", data="digits", duration_s=0.5,
    ...                   warmup_s=0.1, idle_s=0, run_dir=tempfile.mkdtemp(), progress=False)
    >>> rec = run_benchmark(cfg)
    >>> rec.status, rec.loadgen["valid"]
    ('ok', True)
"""

from __future__ import annotations

import datetime as _dt
from typing import TYPE_CHECKING

from edgequant.bench.config import (
    DEFAULT_PERF_SAMPLES,
    BenchConfig,
    query_batch,
    scenario_batch_sizes,
)
from edgequant.bench.settings import BenchSettings
from edgequant.build.calibration import SYNTHETIC_CALIBRATION_NOTE as CALIB_SAMPLES_NOTE
from edgequant.console import log
from edgequant.errors import DatasetError, EdgequantError
from edgequant.results.record import ResultRecord

if TYPE_CHECKING:
    import numpy as np

    from edgequant.backends.base import Artifact, Backend
    from edgequant.data.base import Dataset
    from edgequant.models.base import Model
    from edgequant.quant.scheme import Scheme


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def run_benchmark(
    cfg: BenchConfig, *, model: Model | None = None, calibration: np.ndarray | None = None
) -> ResultRecord:
    """Run one benchmark and write ``RUN_DIR/result.json``; the record says how it went.

    Bad input (unknown model/scenario, missing artifact, short dataset, a run directory that
    cannot be written, a batch that cannot fit in memory, far too many threads) raises an
    :class:`EdgequantError` before anything runs. After that: an unsupported scheme gives status
    ``na``; a runtime error gives ``failed`` with the error line; Ctrl-C gives ``interrupted``
    (never valid, LoadGen logs kept as partial, no throughput).

    ``model`` runs this :class:`~edgequant.models.base.Model` instead of loading ``cfg.model``;
    ``calibration`` (float32 NCHW samples) calibrates a static scheme instead of ``cfg.calib``.
    """
    from edgequant.bench.preflight import check_batch_memory, check_run_dir, check_threads

    check_run_dir(cfg.run_dir)
    threads_note = check_threads(cfg.threads)
    started = _now()
    backend, scheme, model, artifact = _resolve(cfg, model)
    if cfg.batch_size is not None:
        check_batch_memory(cfg.scenario, cfg.batch_size, model.input_spec.shape)
    settings = cfg.settings(model.name)
    data = _open_data(cfg, model)
    rec = _new_record(cfg, backend, scheme, model, data, settings, started)
    warnings: list[str] = rec.extra["warnings"]
    if threads_note is not None:
        log(f"warning: {threads_note}")
        warnings.append(threads_note)
    # a prebuilt artifact needs no module to convert: only the scheme is checked then
    reason = backend.unavailable_reason() or backend.supports(
        scheme, model if artifact is None else None
    )
    if reason is not None:
        rec.status, rec.reason = "na", reason
        return _finish(rec, cfg, backend)
    try:
        artifact = _artifact(cfg, backend, model, scheme, artifact, calibration, warnings)
        _run(cfg, rec, settings, backend, artifact, model, data)
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


def prepare_artifact(
    cfg: BenchConfig, *, model: Model | None = None, calibration: np.ndarray | None = None
) -> Artifact | None:
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
    if model is None:
        model = load_model(str(cfg.model), weights=cfg.weights, arch=cfg.arch)
    if backend.unavailable_reason() or backend.supports(scheme, model):
        return None
    return _artifact(cfg, backend, model, scheme, None, calibration, [])


def _resolve(
    cfg: BenchConfig, model: Model | None
) -> tuple[Backend, Scheme, Model, Artifact | None]:
    """The backend, scheme and model of the run, and the prebuilt artifact if there is one."""
    from edgequant.backends.base import Artifact, get_backend
    from edgequant.models.loader import load_model
    from edgequant.quant.scheme import get_scheme

    if cfg.artifact is not None:
        artifact = Artifact.load(cfg.artifact)
        return (
            get_backend(artifact.backend),
            artifact.scheme,
            model or _artifact_model(cfg, artifact.model),
            artifact,
        )
    if model is None:
        model = load_model(str(cfg.model), weights=cfg.weights, arch=cfg.arch)
    return get_backend(str(cfg.backend)), get_scheme(cfg.scheme), model, None


def _new_record(
    cfg: BenchConfig,
    backend: Backend,
    scheme: Scheme,
    model: Model,
    data: Dataset,
    settings: BenchSettings,
    started: str,
) -> ResultRecord:
    rec = ResultRecord(
        model=model.name,
        backend=backend.name,
        scheme=scheme.name,
        scenario=cfg.scenario,
        dataset=data.spec,
        threads=cfg.threads,
        batch_size=query_batch(cfg.scenario, cfg.batch),
        simulated=backend.simulated,
        scheme_detail=scheme.to_dict(),
        started_at=started,
    )
    from edgequant.hw.cpu import cpu_profile

    # a fleet worker names its device in the config's extra; a plain run is "local"
    rec.device = str(cfg.extra.get("device") or "local")
    rec.cpu_profile = cpu_profile().to_dict()
    rec.extra["config"] = cfg.to_dict()
    rec.extra["settings"] = settings.to_dict()
    rec.extra["warnings"] = warnings = []
    if model.weights is None:
        warnings.append("random weights: accuracy not meaningful")
    return rec


def _artifact(
    cfg: BenchConfig,
    backend: Backend,
    model: Model,
    scheme: Scheme,
    prebuilt: Artifact | None,
    calibration: np.ndarray | None,
    warnings: list[str],
) -> Artifact:
    """The artifact to run, from the build stage (static schemes calibrated on ``--calib``, by
    default the data measured), with the scenario's batch sizes compiled now, not while timed."""
    from edgequant.build.stage import build_artifact

    batch_sizes = scenario_batch_sizes(cfg.scenario, cfg.batch)
    if prebuilt is not None:
        backend.specialize(prebuilt, batch_sizes)
        return prebuilt
    built = build_artifact(
        backend,
        model,
        scheme,
        cfg.calib if calibration is None else calibration,
        default_calibration=cfg.data,
        batch_sizes=batch_sizes,
        cache_dir=cfg.cache_dir,
        force=cfg.force_rebuild,
        progress=cfg.progress,
    )
    warnings.extend(built.notes)
    return built.artifact


def _run(
    cfg: BenchConfig,
    rec: ResultRecord,
    settings: BenchSettings,
    backend: Backend,
    artifact: Artifact,
    model: Model,
    data: Dataset,
) -> None:
    """Record the artifact's sizes, load it and measure."""
    from edgequant.bench.measurement import Run, measure
    from edgequant.measure.size import artifact_disk_bytes, artifact_sizes

    rec.artifact = str(artifact.path)
    rec.artifact_metadata = artifact.metadata
    # where the model came from and the check of its conversion, recorded by the build stage
    rec.model_source = artifact.metadata.get("model_source")
    rec.size_bytes, rec.weight_bytes = artifact_sizes(
        artifact.metadata, artifact_disk_bytes(artifact.path)
    )
    if cfg.roofline:
        # measured (or read from the cache) before the runtime loads: nothing of ours runs beside it
        from edgequant.bench.evidence import prefetch_roofline

        prefetch_roofline(cfg)
    log(f"loading {artifact.path.name} into {backend.name} ({cfg.threads} threads)")
    with backend.load(artifact, cfg.threads) as session:
        measure(Run(cfg, rec, settings, session, model, data))


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

    # labels outside the model's classes are refused here, once for eval and bench --accuracy
    ds = open_dataset(
        cfg.data,
        model.input_spec,
        split="test",
        limit=cfg.count,
        num_classes=model.num_classes if cfg.accuracy else None,
    )
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


__all__ = [
    "CALIB_SAMPLES_NOTE",
    "DEFAULT_PERF_SAMPLES",
    "BenchConfig",
    "prepare_artifact",
    "run_benchmark",
    "scenario_batch_sizes",
]
