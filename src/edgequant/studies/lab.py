"""The quantization lab's studies, each writing one result record per configuration.

Every configuration is simulated (the registry's simulator, ``simulated=True``, scenario ``Accuracy``) and
saved as ``RUNS_DIR/<run>/result.json``, so ``edgequant report RUNS_DIR`` shows the studies next
to the runtime benchmarks. The record's ``scheme`` is a label such as ``w8a8:mse+cle+bias_correction``
(scheme : calibrator + techniques); the full scheme is in ``scheme_detail``.

* :func:`ptq_study` — schemes × calibrators × technique sets;
* :func:`winograd_study` — direct INT8 vs INT8 Winograd F(2×2,3×3) (INT4 weights / INT6 inputs);
* :func:`sensitivity_study` — per-layer sensitivity and K-most-sensitive-layers-in-float.

Example:
    >>> ev = Evaluation.from_dataset(model, test)                     # doctest: +SKIP
    >>> recs = ptq_study(model, ev, calib, ["w8a8"], ["minmax", "mse"], [()], runs)  # doctest: +SKIP
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from edgequant.backends import backend_names, canonical_name, get_backend
from edgequant.errors import UnsupportedError
from edgequant.models.base import Model
from edgequant.quant.scheme import Scheme, TensorQuant, get_scheme
from edgequant.quant.simulate import QuantLayer, quantize_module, weight_bytes
from edgequant.results.record import ResultRecord

_SHORT = re.compile(r"^w(\d+)(?:a(\d+))?(?:-(pt|b(\d+)))?$")


def lab_scheme(name: str) -> Scheme:
    """A built-in scheme, a YAML file, or a lab shorthand ``wN[aM][-pt|-bK]``.

    Example:
        >>> lab_scheme("w4-b32").weights.granularity
        'block:32'
        >>> lab_scheme("w3a8").activations.bits
        8
    """
    m = _SHORT.match(name)
    if m is None or name in ("w8a8", "w4a8", "w8a8-pt"):
        return get_scheme(name)
    bits, abits, kind, block = m.groups()
    gran = "tensor" if kind == "pt" else f"block:{block}" if block else "channel"
    weights = TensorQuant(bits=int(bits), symmetric=True, granularity=gran)
    acts = TensorQuant(bits=int(abits), symmetric=False) if abits else None
    return Scheme(name=name, weights=weights, activations=acts)


@dataclass(kw_only=True)
class Evaluation:
    """Evaluation inputs, labels (or None) and the fp32 reference logits."""

    model: Model
    dataset: str
    x: np.ndarray
    labels: np.ndarray | None
    ref: np.ndarray

    @classmethod
    def from_arrays(
        cls, model: Model, dataset: str, x: np.ndarray, labels: np.ndarray | None
    ) -> Evaluation:
        if model.module is None:
            from edgequant.errors import ValidationError

            raise ValidationError("the lab simulates PyTorch models; an .onnx file has no module")
        return cls(model=model, dataset=dataset, x=x, labels=labels, ref=logits(model.module, x))

    def accuracy(self, out: np.ndarray) -> dict[str, Any]:
        acc: dict[str, Any] = {
            "samples": len(out),
            "top1_pct": None,
            "top5_pct": None,
            "agreement_with_fp32_pct": float((out.argmax(1) == self.ref.argmax(1)).mean() * 100.0),
        }
        if self.labels is not None:
            acc["top1_pct"] = float((out.argmax(1) == self.labels).mean() * 100.0)
            k = min(5, out.shape[1])
            top = np.argsort(-out, axis=1)[:, :k]
            acc["top5_pct"] = float((top == self.labels[:, None]).any(1).mean() * 100.0)
        return acc


def logits(module: nn.Module, x: np.ndarray, batch: int = 64) -> np.ndarray:
    """Float32 logits of ``module`` on ``x`` (no grad, batched)."""
    with torch.no_grad():
        return np.concatenate(
            [
                module(torch.from_numpy(np.ascontiguousarray(x[i : i + batch]))).float().numpy()
                for i in range(0, len(x), batch)
            ]
        )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text)


def record(
    ev: Evaluation,
    label: str,
    scheme: Scheme,
    out: np.ndarray,
    runs_dir: Path,
    *,
    module: nn.Module | None = None,
    extra: dict[str, Any] | None = None,
    started: str | None = None,
    backend: str | None = None,
) -> ResultRecord:
    """Build and save the result record of one configuration.

    ``backend`` defaults to the registry's simulator; the record is ``simulated`` when that
    backend is.
    """
    backend = simulator_name() if backend is None else canonical_name(backend)
    simulated = type(get_backend(backend)).simulated
    rec = ResultRecord(
        model=ev.model.name,
        backend=backend,
        scheme=label,
        scenario="Accuracy",
        dataset=ev.dataset,
        threads=torch.get_num_threads(),
        batch_size=64,
        accuracy=ev.accuracy(out),
        simulated=simulated,
        weight_bytes=None if module is None else weight_bytes(module),
        scheme_detail=scheme.to_dict(),
        started_at=started,
        finished_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        environment={"torch": torch.__version__},
        extra=({"speed_note": "simulated: speed not representative"} if simulated else {})
        | (extra or {}),
    )
    rec.save(runs_dir / _slug(f"{ev.model.name}-{backend}-{label}"))
    return rec


def simulator_name() -> str:
    """The registry's name of the fake-quant simulator (the backend with ``simulated = True``).

    Example:
        >>> from edgequant.backends import get_backend
        >>> get_backend(simulator_name()).simulated
        True
    """
    for name in backend_names():
        if type(get_backend(name)).simulated:
            return name
    raise UnsupportedError("no simulated backend is registered; the lab needs one")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def sim_record(
    ev: Evaluation,
    label: str,
    scheme: Scheme,
    sim: nn.Module,
    runs_dir: Path,
    started: str | None = None,
    extra: dict[str, Any] | None = None,
) -> ResultRecord:
    """:func:`record` of a simulated module's logits on the evaluation inputs.

    ``started`` defaults to now (give it when the simulation's building should count).
    """
    out = logits(sim, ev.x)
    return record(
        ev, label, scheme, out, runs_dir, module=sim, started=started or _now(), extra=extra
    )


def fp32_record(ev: Evaluation, runs_dir: Path) -> ResultRecord:
    return record(ev, "fp32", get_scheme("fp32"), ev.ref, runs_dir, started=_now())


def ptq_study(
    ev: Evaluation,
    calibration: np.ndarray,
    schemes: Sequence[str],
    calibrators: Sequence[str],
    technique_sets: Sequence[Sequence[str]],
    runs_dir: Path,
) -> list[ResultRecord]:
    """Every scheme × calibrator × technique set, simulated; one record each."""
    from edgequant.quant.transforms import apply_techniques

    out = []
    for sname in schemes:
        base = lab_scheme(sname)
        cals = calibrators if base.is_static else ["minmax"]
        for techs in technique_sets:
            for cal in cals:
                started = _now()
                scheme = base.with_(techniques=tuple(techs))
                model = apply_techniques(ev.model, scheme, calibration)
                if model.module is None:
                    continue
                sim = quantize_module(model.module, scheme, calibration, act_observer=cal)
                label = (
                    sname + (f":{cal}" if base.is_static else "") + "".join(f"+{t}" for t in techs)
                )
                extra = {
                    "calibrator": cal if base.is_static else None,
                    "techniques": list(techs),
                    "calibration_samples": len(calibration),
                }
                out.append(sim_record(ev, label, scheme, sim, runs_dir, started, extra))
    return out


def winograd_study(
    ev: Evaluation, calibration: np.ndarray, runs_dir: Path, scheme_name: str = "w8a8"
) -> list[ResultRecord]:
    """Direct INT8 convolution vs INT8 Winograd (INT4 transformed weights, INT6 inputs)."""
    base = lab_scheme(scheme_name)
    direct = quantize_module(ev.model.module, base, calibration)  # type: ignore[arg-type]
    wino_scheme = base.with_(
        name=f"{base.name}-winograd", techniques=(*base.techniques, "winograd")
    )
    wino = quantize_module(ev.model.module, wino_scheme, calibration)  # type: ignore[arg-type]
    counts = _count_multiplies(wino, ev.x[:1])
    note = (
        "F(2x2,3x3); transformed weights INT4 per (out channel, tap), transformed inputs INT6 per "
        "tap (dynamic)"
    )
    return [
        sim_record(ev, base.name, base, direct, runs_dir),
        sim_record(
            ev,
            f"{base.name}+winograd",
            wino_scheme,
            wino,
            runs_dir,
            extra={"winograd": counts, "note": note},
        ),
    ]


def _count_multiplies(gm: nn.Module, x: np.ndarray) -> dict[str, Any]:
    """Multiplies of the 3x3 stride-1 convs run by Winograd, direct vs Winograd, for one image."""
    from edgequant.quant.winograd import multiply_counts

    shapes: dict[str, tuple[int, int]] = {}
    hooks = [
        m.register_forward_hook(lambda mod, a, o, n=n: shapes.__setitem__(n, tuple(o.shape[-2:])))
        for n, m in gm.named_modules()
        if isinstance(m, QuantLayer) and m.use_winograd
    ]
    with torch.no_grad():
        gm(torch.from_numpy(x))
    for h in hooks:
        h.remove()
    direct = wino = 0
    for n, hw in shapes.items():
        d, w = multiply_counts(gm.get_submodule(n).inner, hw)  # type: ignore[arg-type]
        direct, wino = direct + d, wino + w
    return {
        "layers": len(shapes),
        "direct_mults": direct,
        "winograd_mults": wino,
        "reduction": round(direct / wino, 3) if wino else None,
    }


def sensitivity_study(
    ev: Evaluation,
    calibration: np.ndarray,
    runs_dir: Path,
    scheme_name: str,
    keep_float: Sequence[int],
) -> tuple[list[dict[str, Any]], list[ResultRecord]]:
    """Per-layer sensitivity rows, and one record per K (K most sensitive layers in float);
    for a scheme of fewer than 8 weight bits, also one per K with those layers' weights at 8
    bits instead (the scheme's ``layer_bits``: activations stay integer, so it deploys where
    the runtime takes mixed widths)."""
    from edgequant.quant.sensitivity import layer_sensitivity, mixed_precision
    from edgequant.quant.simulate import quantize_module

    scheme = lab_scheme(scheme_name)
    module = ev.model.module
    if module is None:
        return [], []
    rows = layer_sensitivity(module, scheme, calibration, ev.x, ev.labels)
    recs = []
    for k in keep_float:
        keep = [r.name for r in rows[:k]]
        sim = mixed_precision(module, scheme, calibration, keep)
        label = f"{scheme.name}+float{k}"
        recs.append(sim_record(ev, label, scheme, sim, runs_dir, extra={"kept_float": keep}))
        if k and scheme.weights is not None and scheme.weights.bits < 8:
            eight = scheme.with_(
                name=f"{scheme.name}+8bit{k}",
                layer_bits=(*scheme.layer_bits, *((n, 8) for n in keep)),
            )
            sim8 = quantize_module(module, eight, calibration)
            extra = {"kept_8bit": keep, "layer_bits": dict(eight.layer_bits)}
            recs.append(sim_record(ev, eight.name, eight, sim8, runs_dir, extra=extra))
    return [r.to_dict() for r in rows], recs


__all__ = [
    "Evaluation",
    "fp32_record",
    "lab_scheme",
    "logits",
    "ptq_study",
    "record",
    "sensitivity_study",
    "sim_record",
    "winograd_study",
]
