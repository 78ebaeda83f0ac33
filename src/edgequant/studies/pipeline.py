"""The quantization lab as one call: load the model and data, run a study, keep its records.

``edgequant lab STUDY`` is a thin wrapper over :func:`lab`; the studies themselves live in
:mod:`edgequant.studies.lab`.

Example:
    >>> import edgequant
    >>> out = edgequant.lab("ptq", "digits_cnn", data="digits", output="runs/lab",
    ...                     schemes=["w8a8", "w4a8"], calibrators=["minmax"])   # doctest: +SKIP
    >>> [r["scheme"] for r in out.results]                                      # doctest: +SKIP
    ['fp32', 'w8a8:minmax', 'w4a8:minmax']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgequant.errors import ValidationError

if TYPE_CHECKING:
    import numpy as np

    from edgequant.data.base import Dataset
    from edgequant.models.base import Model
    from edgequant.results.record import ResultRecord

#: the studies :func:`lab` runs
STUDIES = ("ptq", "winograd", "sensitivity")


@dataclass(kw_only=True)
class LabResult:
    """What a study produced: its result records (fp32 first) and, for sensitivity, the layers."""

    study: str
    model: str
    dataset: str
    runs_dir: Path
    records: list[ResultRecord]
    layers: list[dict[str, Any]] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def results(self) -> list[dict[str, Any]]:
        """One summary dict per configuration: scheme, accuracy fields, weight bytes."""
        return [
            {
                "scheme": r.scheme,
                **(r.accuracy or {}),
                "weight_bytes": r.weight_bytes,
                **{k: v for k, v in r.extra.items() if k in ("winograd", "kept_float")},
            }
            for r in self.records
        ]

    def to_dict(self) -> dict[str, Any]:
        """The JSON document ``edgequant lab --json`` prints."""
        doc: dict[str, Any] = {
            "study": self.study,
            "model": self.model,
            "dataset": self.dataset,
            "runs_dir": str(self.runs_dir),
        }
        if self.layers is not None:
            doc["layers"] = self.layers
        doc["results"] = self.results
        return doc


def technique_sets(items: Sequence[str]) -> list[list[str]]:
    """``["none", "cle+bias_correction"]`` -> ``[[], ["cle", "bias_correction"]]``, checked.

    Example:
        >>> technique_sets(["none", "cle+bias_correction"])
        [[], ['cle', 'bias_correction']]
    """
    from edgequant.quant.scheme import TECHNIQUES

    sets = []
    for item in items:
        techs = [] if item.strip() in ("none", "") else [t.strip() for t in item.split("+")]
        bad = [t for t in techs if t not in TECHNIQUES]
        if bad:
            raise ValidationError(f"unknown technique(s) {bad}; known: {', '.join(TECHNIQUES)}")
        sets.append(techs)
    return sets


def _check_study(study: str, keep_float: Sequence[int]) -> None:
    if study not in STUDIES:
        raise ValidationError(f"unknown lab study {study!r}; use {', '.join(STUDIES)}")
    if any(k < 0 for k in keep_float):
        raise ValidationError(f"keep_float values must be >= 0, got {list(keep_float)}")


def _lab_data(
    m: Model, data: str, calib: str | None, calib_samples: int, limit: int | None
) -> tuple[Dataset, np.ndarray, list[str]]:
    """The test split of ``data``, calibration samples of ``calib``'s train split, and notes."""
    from edgequant.console import log
    from edgequant.data import calibration_samples, open_dataset

    test = open_dataset(data, m.input_spec, split="test", limit=limit)
    calib_ds = open_dataset(calib or data, m.input_spec, split="train")
    calibration = calibration_samples(calib_ds, min(calib_samples, len(calib_ds)))
    notes = []
    if not calib and data.split(":")[0] != "digits":
        notes.append(
            "calibrating on the evaluation data (pass calib= / --calib for held-out images)"
        )
        log("note: " + notes[-1])
    return test, calibration, notes


def lab(
    study: str,
    model: str | Model,
    *,
    data: str,
    output: Path | str,
    calib: str | None = None,
    calib_samples: int = 200,
    limit: int | None = None,
    threads: int = 2,
    weights: str | None = None,
    arch: str | None = None,
    schemes: Sequence[str] = ("w8a8",),
    calibrators: Sequence[str] = ("minmax", "percentile:99.99", "mse", "entropy"),
    techniques: Sequence[str] = ("none",),
    scheme: str | None = None,
    keep_float: Sequence[int] = (0, 1, 2, 3),
) -> LabResult:
    """Run one simulated study of ``model`` on ``data``'s test split; records go to ``output``.

    * ``ptq``: every scheme × calibrator × technique set (``"none"``, ``"cle+bias_correction"``);
    * ``winograd``: direct INT8 vs INT8 Winograd of ``scheme`` (default w8a8);
    * ``sensitivity``: per-layer sensitivity of ``scheme`` (default w4a8) and the K most
      sensitive layers kept in float for each K of ``keep_float``.

    Calibration uses ``calib``'s train split (default: ``data``'s).

    Example:
        >>> lab("winograd", "digits_cnn", data="digits", output="runs/lab").records[1].scheme
        ... # doctest: +SKIP
        'w8a8-winograd'
    """
    import torch

    from edgequant.models.loader import load_model
    from edgequant.studies import lab as studies

    _check_study(study, keep_float)
    torch.set_num_threads(max(1, threads))
    m = load_model(model, weights=weights, arch=arch) if isinstance(model, str) else model
    if m.module is None:
        raise ValidationError("the lab simulates PyTorch models; an .onnx file cannot be simulated")
    test, calibration, notes = _lab_data(m, data, calib, calib_samples, limit)
    ev = studies.Evaluation.from_arrays(m, test.spec, test.load_all(), test.labels)
    runs = Path(output)
    records = [studies.fp32_record(ev, runs)]
    layers = None
    if study == "ptq":
        for s in schemes:
            studies.lab_scheme(s)  # fail early on a bad name
        sets = technique_sets(techniques)
        records += studies.ptq_study(ev, calibration, list(schemes), list(calibrators), sets, runs)
    elif study == "winograd":
        records += studies.winograd_study(ev, calibration, runs, scheme or "w8a8")
    else:
        layers, recs = studies.sensitivity_study(
            ev, calibration, runs, scheme or "w4a8", list(keep_float)
        )
        records += recs
    return LabResult(
        study=study,
        model=m.name,
        dataset=test.spec,
        runs_dir=runs,
        records=records,
        layers=layers,
        notes=notes,
    )


__all__ = ["STUDIES", "LabResult", "lab", "technique_sets"]
