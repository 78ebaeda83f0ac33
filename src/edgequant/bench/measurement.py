"""The measurement of one benchmark: LoadGen's performance run, then its accuracy run, into the record.

:func:`measure` runs the scenario on an open session (with the energy meter where there is one)
and fills the record's latency, throughput, LoadGen verdict, memory and energy fields;
:func:`accuracy_run` adds LoadGen's accuracy mode over the whole dataset, scored against the
labels and the fp32 reference. ``run_benchmark`` (:mod:`edgequant.bench.runner`) calls them.

Example:
    >>> measure(Run(cfg, rec, settings, session, model, data))  # doctest: +SKIP
    >>> rec.throughput_ips, rec.loadgen["valid"]              # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgequant.bench.config import DEFAULT_PERF_SAMPLES, BenchConfig, query_batch
from edgequant.bench.evidence import RunWatch, fill_roofline
from edgequant.bench.settings import SCENARIO_METRIC, BenchSettings
from edgequant.console import log

if TYPE_CHECKING:
    from pathlib import Path

    from edgequant.backends.base import Session
    from edgequant.bench.harness import ScenarioRun
    from edgequant.data.base import Dataset
    from edgequant.measure.noise import NoiseReport
    from edgequant.models.base import Model
    from edgequant.results.record import ResultRecord


@dataclass(frozen=True)
class Run:
    """One benchmark being measured: its config, the record it fills, what LoadGen is asked,
    the open session, the model (the fp32 reference) and the data."""

    cfg: BenchConfig
    rec: ResultRecord
    settings: BenchSettings
    session: Session
    model: Model
    data: Dataset


def measure(run: Run) -> None:
    """LoadGen's performance run of ``cfg.scenario`` on ``session``, filling ``rec``.

    A Ctrl-C or a runtime error during the run sets the record's status; with ``cfg.accuracy``
    a finished run is followed by :func:`accuracy_run`.
    """
    cfg, rec, settings, session, data = run.cfg, run.rec, run.settings, run.session, run.data
    from edgequant.bench.harness import run_scenario
    from edgequant.bench.qsl import SampleLibrary
    from edgequant.measure.energy import EnergySession, find_meter
    from edgequant.measure.memory import peak_rss_bytes

    batch = session.fixed_batch or cfg.batch
    rec.batch_size = query_batch(cfg.scenario, batch)
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
    watch = RunWatch(energy.start)
    try:
        perf = run_scenario(
            session,
            qsl,
            settings,
            cfg.run_dir / "loadgen",
            batch_size=batch,
            # quick runs shorter than the warm-up (sweeps, the demo) need no more warm-up than run
            # time; a compliance test's reference run gets the whole warm-up: its audit is compared
            # with it and runs warm (after it, and TEST01's accuracy run)
            warmup_s=cfg.warmup_s
            if cfg.mlperf or cfg.compliance is not None
            else min(cfg.warmup_s, max(0.25, cfg.duration_s / 2)),
            on_start=watch.start,
            respond=cfg.compliance is not None,
        )
    finally:
        noise = watch.stop()
    rec.noise = None if noise is None else noise.to_dict()
    result = energy.stop(perf.samples_completed)
    rec.peak_rss_bytes = peak_rss_bytes()
    rec.energy = None if result is None else result.to_dict()
    rec.energy_unavailable_reason = why
    fill_perf(rec, settings, perf)
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
    after_perf(run, perf, noise, batch=batch, count=perf_count)


def after_perf(
    run: Run,
    perf: ScenarioRun,
    noise: NoiseReport | None,
    *,
    batch: int,
    count: int,
) -> None:
    """After a finished performance run: the roofline, the accuracy run, the compliance test."""
    cfg, rec = run.cfg, run.rec
    if cfg.roofline:
        fill_roofline(rec, run.model, cfg)
    if cfg.accuracy:
        accuracy_run(run, batch, perf)
    if cfg.compliance is not None and rec.status == "ok":
        from edgequant.bench.compliance_run import run_compliance

        verdict = run_compliance(
            cfg,
            run.settings,
            run.session,
            run.data,
            perf,
            perf_count=count,
            batch=batch,
            reference_noise=noise,
        )
        rec.compliance = verdict.to_dict()


def fill_perf(rec: ResultRecord, settings: BenchSettings, perf: ScenarioRun) -> None:
    """The record's latency, throughput and ``loadgen`` fields from LoadGen's parsed log."""
    r = perf.result
    rec.latency_ms = r.latency_ms or None
    # an interrupted run's partial log gives no throughput (a few samples over a short span
    # read as an absurd rate): not measured is null
    rec.throughput_ips = None if perf.interrupted else r.throughput_ips
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


def accuracy_pass(
    settings: BenchSettings,
    session: Session,
    data: Dataset,
    perf: ScenarioRun,
    batch: int,
    out_dir: Path,
) -> ScenarioRun:
    """LoadGen's accuracy mode over the whole dataset, logs in ``out_dir`` (the performance
    run's warm-up is reused): ``--accuracy`` and TEST01's reference both run it."""
    from edgequant.bench.harness import run_scenario
    from edgequant.bench.qsl import SampleLibrary

    qsl = SampleLibrary(data.load, total=len(data), perf_count=len(data))
    return run_scenario(
        session,
        qsl,
        settings,
        out_dir,
        accuracy=True,
        batch_size=batch,
        warmup=perf.warmup,
    )


def accuracy_run(run: Run, batch: int, perf: ScenarioRun) -> None:
    """LoadGen's accuracy mode over the whole dataset: top-1/top-5 against the labels, and the
    agreement with fp32 (top-1, and output SQNR/cosine in ``accuracy["reference"]``)."""
    from edgequant.bench.accuracy import read_accuracy_log, reference_top5, scores
    from edgequant.bench.logs import ACCURACY

    cfg, rec, model, data = run.cfg, run.rec, run.model, run.data

    log(f"LoadGen {cfg.scenario} accuracy run ({len(data)} samples)")
    out = accuracy_pass(
        run.settings, run.session, data, perf, batch, cfg.run_dir / "loadgen" / "accuracy"
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
    acc["reference"] = _reference(run.session, model, data, batch)
    if acc["reference"].get("class_like") is False:
        # the output has no class axis (a feature map, boxes): top-k of it means nothing
        acc.update(top1_pct=None, top5_pct=None, agreement_with_fp32_pct=None)
    rec.accuracy = acc


def _reference(session: Session, model: Model, data: Dataset, batch: int) -> dict[str, Any]:
    """The output-by-output agreement with fp32 (:func:`~edgequant.bench.accuracy.reference_figures`)."""
    from edgequant.bench.accuracy import reference_figures, reference_line
    from edgequant.errors import ModelError

    try:
        ref = reference_figures(session, model, data.load, len(data), batch_size=batch)
    except ModelError as e:  # no runnable source: the LoadGen figures stand alone
        log(f"note: no output-by-output agreement with fp32: {e}")
        return {"skipped": str(e)}
    log(f"output agreement with fp32: {reference_line(ref)}")
    return ref


__all__ = ["Run", "accuracy_pass", "accuracy_run", "after_perf", "fill_perf", "measure"]
