"""The QAT pipeline: PTQ baseline, quantization-aware training, ONNX QDQ export, a real runtime's
accuracy, one result record. ``edgequant qat`` is a thin wrapper over :func:`qat`.

Example:
    >>> import edgequant
    >>> rec = edgequant.qat("digits_cnn", scheme="w4a8", data="digits", epochs=1,
    ...                     output="runs/qat-w4a8")                          # doctest: +SKIP
    >>> rec.scheme, rec.extra["qat_sim"]["top1_pct"] is not None             # doctest: +SKIP
    ('w4a8-qat', True)
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgequant.backends import backend_names, canonical_name, get_backend
from edgequant.errors import BackendUnavailableError, ValidationError, condense_error

if TYPE_CHECKING:
    import numpy as np

    from edgequant.models.base import Model
    from edgequant.quant.scheme import QATConfig, Scheme
    from edgequant.results.record import ResultRecord


def _runs_onnx_files(backend: Any) -> bool:
    cls = type(backend)
    declared = getattr(cls, "loads_onnx", None)  # the capability, where the registry declares it
    if declared is not None:
        return bool(declared)
    return not cls.needs_torch_module and not cls.simulated


def qat_backends() -> list[str]:
    """Runtimes that can run the exported ONNX QDQ model, in the registry's order: those that
    load a plain ONNX file (no PyTorch module needed) and really execute it (not simulated).

    Example:
        >>> all(not get_backend(n).simulated for n in qat_backends())
        True
    """
    return [n for n in backend_names() if _runs_onnx_files(get_backend(n))]


def resolve_qat_backend(backend: str | None) -> str:
    """The registry's name of the runtime that runs the QAT export (``None``: the first of
    :func:`qat_backends` that is available here).

    Example:
        >>> resolve_qat_backend(None) in qat_backends()                  # doctest: +SKIP
        True
    """
    allowed = qat_backends()
    if backend is None:
        for name in allowed:
            if get_backend(name).available():
                return name
        raise BackendUnavailableError(
            f"no runtime that runs ONNX QDQ files is available ({', '.join(allowed)}); "
            + "; ".join(f"{n}: {get_backend(n).unavailable_reason()}" for n in allowed)
        )
    name = canonical_name(backend)
    get_backend(name)  # an unknown name gets the registry's message (with close matches)
    if name not in allowed:
        raise ValidationError(
            f"QAT exports ONNX QDQ; {name} cannot run it as exported (use {', '.join(allowed)})"
        )
    return name


@dataclass(kw_only=True)
class QATOptions:
    """Training options left unset take the scheme's ``qat`` section, else the defaults."""

    epochs: int | None = None
    lr: float | None = None
    batch_size: int = 32
    freeze_bn_after: int | None = None
    freeze_observers_after: int | None = None
    distill: bool = False
    #: also score PTQ with AdaRound's learnt rounding (the best PTQ) beside plain PTQ and QAT
    ptq_adaround: bool = True

    def config(self, scheme: Scheme) -> QATConfig:
        """The :class:`QATConfig` these options give for ``scheme``."""
        from edgequant.quant.scheme import QATConfig

        if self.epochs is not None and self.epochs < 0:
            raise ValidationError("--epochs must be >= 0")
        base = scheme.qat or QATConfig(lr=1e-3)
        pick = lambda mine, theirs: theirs if mine is None else mine  # noqa: E731
        return QATConfig(
            epochs=pick(self.epochs, base.epochs),
            lr=pick(self.lr, base.lr),
            batch_size=self.batch_size,
            freeze_bn_after_steps=pick(self.freeze_bn_after, base.freeze_bn_after_steps),
            freeze_observers_after_steps=pick(
                self.freeze_observers_after, base.freeze_observers_after_steps
            ),
            distill=self.distill or base.distill,
        )


def accuracy(logits: np.ndarray, labels: np.ndarray | None, ref: np.ndarray) -> dict[str, Any]:
    """Top-1/top-5 (when labels exist) and agreement with the fp32 reference logits."""
    from edgequant.measure.accuracy import agreement_pct, topk_accuracy

    out: dict[str, Any] = {
        "samples": len(logits),
        "top1_pct": None,
        "top5_pct": None,
        "agreement_with_fp32_pct": agreement_pct(logits, ref),
    }
    if labels is not None:
        out["top1_pct"] = topk_accuracy(logits, labels, 1)
        out["top5_pct"] = topk_accuracy(logits, labels, min(5, logits.shape[1]))
    return out


def _sim_logits(module: Any, x: np.ndarray) -> np.ndarray:
    import numpy as np
    import torch

    with torch.no_grad():
        return np.concatenate(
            [module(torch.from_numpy(x[i : i + 128])).numpy() for i in range(0, len(x), 128)]
        )


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _static_scheme(scheme: str | Scheme) -> Scheme:
    from edgequant.quant.scheme import get_scheme

    s = get_scheme(scheme) if isinstance(scheme, str) else scheme
    if not s.is_static or s.weights is None:
        raise ValidationError(
            f"QAT needs a static integer scheme (e.g. w8a8, w4a8); {s.name} is not"
        )
    return s


def _inspection(backend: str, path: Path, artifact: Any) -> dict[str, Any]:
    """What the runtime's own inspector says about the export, for the artifact metadata."""
    be = get_backend(backend)
    # a backend that wraps outside ONNX files itself (Backend.onnx_artifact) inspects its own view
    wrap = getattr(be, "onnx_artifact", None)
    try:
        report = be.inspect(wrap(path, artifact.scheme) if wrap is not None else artifact)
    except Exception as e:  # the export stands without an inspection; the metadata says why
        return {
            "executed_precision": "QDQ",
            "inspect_summary": f"not inspected: {condense_error(e)}",
        }
    integer = any(o.precision.startswith("int") for o in report.ops)
    return {
        "executed_precision": "int8 (QDQ)" if integer else "QDQ",
        "optimized_ops": dict(Counter(o.op_type.rsplit(".", 1)[-1] for o in report.ops)),
        "inspect_summary": report.summary(),
        "inspect_notes": list(report.notes),
    }


def qat(
    model: str | Model,
    *,
    scheme: str | Scheme,
    data: str,
    output: Path | str,
    epochs: int | None = None,
    backend: str | None = None,
    eval_data: str | None = None,
    options: QATOptions | None = None,
    weights: str | None = None,
    arch: str | None = None,
    int4_storage: bool = False,
    threads: int = 2,
    limit: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> ResultRecord:
    """Train ``model`` quantization-aware under ``scheme``, export ONNX QDQ, run it, record it.

    Writes ``output/model.onnx``, ``output/artifact.json`` and ``output/result.json`` and returns
    the record: ``accuracy`` is the runtime's on ``eval_data`` (default: ``data``'s test split);
    ``extra`` holds fp32, the PTQ simulation of the same scheme and the QAT simulation beside it.
    ``backend`` is a runtime of :func:`qat_backends` (default: its first).

    Example:
        >>> rec = qat("digits_cnn", scheme="w8a8", data="digits", epochs=1, limit=192,
        ...           output="runs/qat")                                       # doctest: +SKIP
        >>> rec.scenario, rec.simulated                                        # doctest: +SKIP
        ('Accuracy', False)
    """
    import torch

    from edgequant.console import log
    from edgequant.data import calibration_samples, open_dataset
    from edgequant.models.loader import load_model
    from edgequant.quant.qat import run_qat
    from edgequant.quant.simulate import quantize_module
    from edgequant.quant.transforms import apply_techniques
    from edgequant.studies.qat_export import check_exportable, run_onnx

    started = _now()
    s = _static_scheme(scheme)
    opts = options or QATOptions()
    cfg = (opts if epochs is None else replace(opts, epochs=epochs)).config(s)
    runtime = resolve_qat_backend(backend)
    out_dir = _output_dir(output)  # before training: a bad -o must not cost the run
    m = load_model(model, weights=weights, arch=arch) if isinstance(model, str) else model
    if m.module is None:
        raise ValidationError("QAT needs a PyTorch model; an .onnx file cannot be trained")
    torch.set_num_threads(max(1, threads))
    train = open_dataset(data, m.input_spec, split="train", limit=limit, seed=seed)
    test = open_dataset(eval_data or data, m.input_spec, split="test")
    calib = calibration_samples(train, min(s.calibration.samples, len(train)), seed=seed)
    x_test, y_test = test.load_all(), test.labels

    ref = _sim_logits(m.module.eval(), x_test)
    log(f"PTQ {s.name} (simulated) ...")
    ptq = apply_techniques(m, s, calib)  # the scheme's own techniques (w8a8: GPTQ rounding)
    assert ptq.module is not None  # m has a module: checked above
    ptq_acc = accuracy(_sim_logits(quantize_module(ptq.module, s, calib), x_test), y_test, ref)
    ada_acc = None
    if opts.ptq_adaround:
        log(f"PTQ {s.name} with AdaRound (simulated) ...")
        ada = apply_techniques(m, _with_adaround(s), calib)
        assert ada.module is not None  # m has a module: checked above
        ada_logits = _sim_logits(quantize_module(ada.module, s, calib), x_test)
        ada_acc = accuracy(ada_logits, y_test, ref)
    log(f"QAT {s.name}: {cfg.epochs} epochs on {train.spec} ({len(train)} samples) ...")
    result = run_qat(
        m.module, s, train, config=cfg, calibration=calib, seed=seed, progress=progress
    )
    check_exportable(result.module)
    sim_acc = accuracy(_sim_logits(result.module, x_test), y_test, ref)
    art = _export(
        result, m, s.with_(name=f"{s.name}-qat", qat=cfg), runtime, out_dir, int4_storage, calib
    )
    rt_acc = accuracy(run_onnx(art.path, x_test, backend=runtime, threads=threads), y_test, ref)
    accuracies = {
        "fp32": accuracy(ref, y_test, ref),
        "ptq_sim": ptq_acc,
        **({"ptq_adaround_sim": ada_acc} if ada_acc is not None else {}),
        "qat_sim": sim_acc,
        "runtime": rt_acc,
    }
    return _record(m.name, test.spec, threads, art, started, accuracies, out_dir)


def _with_adaround(scheme: Scheme) -> Scheme:
    """The scheme with AdaRound as its rounding (any other rounding technique replaced)."""
    from edgequant.quant.scheme import ROUNDING_TECHNIQUES

    kept = [t for t in scheme.techniques if t not in ROUNDING_TECHNIQUES]
    return scheme.with_(techniques=(*kept, "adaround"))


def _output_dir(output: Path | str) -> Path:
    out_dir = Path(output)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValidationError(f"output {out_dir} is a file; give a directory for the QAT run")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValidationError(
            f"cannot create the output directory {out_dir}: {e.strerror}"
        ) from None
    return out_dir


def _export(
    result: Any,
    m: Model,
    scheme: Scheme,
    runtime: str,
    out_dir: Path,
    int4_storage: bool,
    calib: np.ndarray,
) -> Any:
    """The trained simulator as ONNX QDQ in ``out_dir``, with its metadata saved.

    The CPU-class treatment of PTQ builds applies (``edgequant.backends.int8_cpu.plan_qdq``): on a
    class whose int8 path saturates int16 pair sums for ``runtime``, the layers where it bites on
    the calibration data are exported so that the runtime computes them exactly.
    """
    from edgequant.backends.artifact import Artifact
    from edgequant.backends.int8_cpu import plan_qdq, record_plan
    from edgequant.quant.layer_bits import changed_bits
    from edgequant.quant.simulate import weight_bytes
    from edgequant.studies.qat_export import export_qdq

    plan = plan_qdq(runtime, result.module, calib)
    path = export_qdq(
        result.module,
        m.input_spec,
        out_dir / "model.onnx",
        int4_storage=int4_storage,
        remedy=plan.remedy,
        remedy_layers=plan.remedied,
    )
    art = Artifact(path=path, backend=runtime, model=m.name, scheme=scheme)
    plan_meta: dict[str, Any] = {"choices": []}
    record_plan(plan_meta, plan)
    inspection = _inspection(runtime, path, art)
    if plan.saturating:
        inspection["inspect_notes"] = [*inspection.get("inspect_notes", []), plan.reason()]
    art.metadata = {
        **plan_meta,
        **inspection,
        "weight_bytes": weight_bytes(result.module),
        "format": "onnx-qdq",
        "producer": "edgequant qat",
        "qat": result.config | {"steps": result.steps, "seconds": round(result.seconds, 1)},
        **(
            {"layer_bits": changed_bits(m.module, scheme)}
            if scheme.layer_bits and m.module is not None
            else {}
        ),
    }
    art.save_metadata()
    return art


def _record(
    model: str,
    dataset: str,
    threads: int,
    art: Any,
    started: str,
    acc: dict[str, dict[str, Any]],
    out_dir: Path,
) -> ResultRecord:
    from edgequant.results.record import ResultRecord

    rt, sim = acc["runtime"], acc["qat_sim"]
    record = ResultRecord(
        model=model,
        backend=art.backend,
        scheme=art.scheme.name,
        scenario="Accuracy",
        dataset=dataset,
        threads=threads,
        batch_size=64,
        accuracy=rt,
        artifact=str(art.path),
        size_bytes=art.size_bytes,
        weight_bytes=art.metadata["weight_bytes"],
        simulated=False,
        scheme_detail=art.scheme.to_dict(),
        artifact_metadata=art.metadata,
        started_at=started,
        finished_at=_now(),
        extra={
            "fp32": acc["fp32"],
            "ptq_sim": acc["ptq_sim"],
            "ptq_adaround_sim": acc.get("ptq_adaround_sim"),
            "qat_sim": sim,
            "runtime_vs_sim_top1_points": None
            if rt["top1_pct"] is None
            else round(rt["top1_pct"] - sim["top1_pct"], 3),
        },
    )
    record.save(out_dir)
    return record


__all__ = ["QATOptions", "accuracy", "qat", "qat_backends", "resolve_qat_backend"]
