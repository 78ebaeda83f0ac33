"""``edgequant bench --compliance TEST01|TEST04``: the reference runs, the audit run, the verdict.

The verification rules live in :mod:`edgequant.bench.compliance`; this module runs what they
need on an open session, in MLCommons' layout of evidence:

- the **reference performance run** is the benchmark's own run (``RUN_DIR/loadgen``), made
  with the SUT answering every sample (as TEST01 requires of an honest SUT);
- TEST01's **reference accuracy run** is LoadGen's accuracy mode over the dataset
  (``RUN_DIR/loadgen/accuracy``, the ``--accuracy`` run when there is one);
- the **audit run** (``RUN_DIR/compliance/TESTxx/``): the same settings and samples, with the
  test's ``audit.config`` handed to LoadGen.

Then ``verify_applied``, ``verify_accuracy`` (TEST01, with the labels when the dataset has them)
and ``verify_performance``; the verdict goes to ``record.compliance``.

Example:
    >>> rec = benchmark("digits_cnn", backend="onnxruntime", scheme="w8a8", data="digits",
    ...                 scenario="SingleStream", compliance="TEST04")   # doctest: +SKIP
    >>> rec.compliance["passed"], rec.compliance["summary"]             # doctest: +SKIP
    (True, 'TEST04 PASS')
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgequant.bench.compliance import (
    TEST01_SAMPLING_TARGET,
    Check,
    ComplianceVerdict,
    check_test,
    read_accuracy_log,
    verify_accuracy,
    verify_applied,
    verify_performance,
    write_audit_config,
)
from edgequant.bench.logs import ACCURACY, DETAIL
from edgequant.console import log

if TYPE_CHECKING:
    from edgequant.backends.base import Session
    from edgequant.bench.config import BenchConfig
    from edgequant.bench.harness import ScenarioRun
    from edgequant.bench.settings import BenchSettings
    from edgequant.data.base import Dataset
    from edgequant.measure.noise import NoiseReport


def compliance_dir(run_dir: Path, test: str) -> Path:
    """Where a test's audit.config and audit logs go: ``RUN_DIR/compliance/TESTxx``."""
    return Path(run_dir) / "compliance" / check_test(test)


def reference_accuracy_log(
    cfg: BenchConfig,
    settings: BenchSettings,
    session: Session,
    data: Dataset,
    perf: ScenarioRun,
    batch: int,
) -> Path:
    """LoadGen's accuracy log of the dataset: the ``--accuracy`` run's, else a new accuracy run."""
    from edgequant.bench.measurement import accuracy_pass
    from edgequant.errors import BenchmarkError

    path = cfg.run_dir / "loadgen" / "accuracy" / ACCURACY
    if cfg.accuracy and path.is_file():
        return path
    log(f"TEST01 reference: LoadGen {cfg.scenario} accuracy run ({len(data)} samples)")
    out = accuracy_pass(settings, session, data, perf, batch, path.parent)
    if out.interrupted or out.error is not None:
        raise BenchmarkError(
            "the TEST01 reference accuracy run did not finish: "
            + (out.result.reasons[0] if out.result.reasons else "interrupted")
        )
    return path


def run_compliance(
    cfg: BenchConfig,
    settings: BenchSettings,
    session: Session,
    data: Dataset,
    perf: ScenarioRun,
    *,
    perf_count: int,
    batch: int,
    reference_noise: NoiseReport | None = None,
) -> ComplianceVerdict:
    """Run ``cfg.compliance``'s audit (and TEST01's accuracy reference); verify; the verdict.

    ``perf`` is the reference performance run, made with the same ``settings`` and
    ``perf_count`` samples in RAM (and the SUT answering every sample).
    """
    from edgequant.bench.harness import run_scenario
    from edgequant.bench.qsl import SampleLibrary
    from edgequant.measure.noise import NoiseMonitor

    test = check_test(str(cfg.compliance))
    where = compliance_dir(cfg.run_dir, test)
    target = TEST01_SAMPLING_TARGET
    audit_file = write_audit_config(test, where, sampling_target=target)
    ref_acc = None
    if test == "TEST01":
        ref_acc = reference_accuracy_log(cfg, settings, session, data, perf, batch)
    log(f"{test} audit run: LoadGen {cfg.scenario} with {audit_file}")
    qsl = SampleLibrary(data.load, total=len(data), perf_count=perf_count)
    with NoiseMonitor() as mon:
        audit = run_scenario(
            session,
            qsl,
            settings,
            where / "loadgen",
            batch_size=batch,
            warmup=perf.warmup,
            audit_config=audit_file,
            respond=True,
        )
    checks = _verify(test, where / "loadgen", audit, perf, data, ref_acc, target)
    noise = {
        # the reference run's full report is the record's own ``noise``
        "reference": None if reference_noise is None else reference_noise.summary(),
        "audit": None if mon.report is None else mon.report.to_dict(),
    }
    _note_noise(checks, reference_noise, mon.report)
    settings_out: dict[str, Any] = {
        "audit_config": str(audit_file),
        "audit_log_dir": str(where / "loadgen"),
        "reference_performance_log_dir": str(perf.log_dir),
        "reference_accuracy_log": None if ref_acc is None else str(ref_acc),
        "accuracy_comparison": "whole response (top-5 int32), stricter than verify_accuracy.py",
        "noise": noise,
    }
    if test == "TEST01":
        settings_out["accuracy_log_sampling_target"] = target
    verdict = ComplianceVerdict(test=test, checks=checks, settings=settings_out)
    log(verdict.summary())
    return verdict


def _verify(
    test: str,
    audit_dir: Path,
    audit: ScenarioRun,
    perf: ScenarioRun,
    data: Dataset,
    ref_acc: Path | None,
    target: int,
) -> list[Check]:
    """The checks of a finished audit run: applied, (TEST01) accuracy, performance."""
    audit_detail = audit_dir / DETAIL
    checks = [
        verify_applied(test, audit_detail, sampling_target=target if test == "TEST01" else None)
    ]
    if audit.interrupted or audit.error is not None:
        why = audit.result.reasons[0] if audit.result.reasons else "the audit run did not finish"
        return [*checks, Check(name="audit run", passed=False, detail=why)]
    if ref_acc is not None:
        raw = data.labels if data.has_labels else None
        labels = None if raw is None else [int(x) for x in raw]
        checks.append(
            verify_accuracy(
                read_accuracy_log(ref_acc), read_accuracy_log(audit_dir / ACCURACY), labels
            )
        )
    checks.append(verify_performance(test, perf.log_dir / DETAIL, audit_detail))
    return checks


def _note_noise(
    checks: list[Check], reference: NoiseReport | None, audit: NoiseReport | None
) -> None:
    """A failed performance check measured under noise says so: the machine, not the SUT, may
    be why (the verdict stays a failure; run it again on a quiet machine)."""
    noisy = [
        f"{name} run {r.summary()}"
        for name, r in (("reference", reference), ("audit", audit))
        if r is not None and r.noisy
    ]
    for c in checks:
        if c.name == "performance" and not c.passed and noisy:
            c.detail += " [measured under noise: " + "; ".join(noisy) + "]"


__all__ = ["compliance_dir", "reference_accuracy_log", "run_compliance"]
