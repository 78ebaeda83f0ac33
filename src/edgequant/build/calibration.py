"""Which calibration data a build uses: written once for ``quantize``, ``bench`` and the Python API.

The rules:

- a scheme that needs no calibration (``fp32``, ``fp16``, ``w8-only``, ``w8-dyn``, …) gets none;
  a calibration set given for it is ignored (``Calibration.ignored``);
- a static scheme (``w8a8*``, ``w4a8``) takes the calibration set given, else the default the
  caller offers (``bench`` calibrates on the data it measures), else it is refused:
  ``scheme w8a8 needs calibration data: pass --calib DATASET``;
- a dataset spec (``KIND[:PATH]``) is opened on its **train** split where it has one, so test
  images stay unseen; an array is used as given (float32 NCHW, preprocessed);
- synthetic calibration is allowed (it is fine for speed) and always noted: its accuracy is
  meaningless.

Example:
    >>> from edgequant.models import load_model
    >>> from edgequant.quant.scheme import get_scheme
    >>> m = load_model("digits_cnn")
    >>> calib = select_calibration(get_scheme("w8a8"), m, "synthetic:8")
    >>> calib.source.spec, calib.notes
    ('synthetic:8:0', ['calibrated on synthetic data: fine for speed, meaningless for accuracy'])
    >>> select_calibration(get_scheme("fp32"), m, "digits").source is None
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Union

import numpy as np

from edgequant.errors import ValidationError

if TYPE_CHECKING:
    from edgequant.data.base import Dataset
    from edgequant.models.base import Model
    from edgequant.quant.scheme import Scheme

#: what the user may give as calibration data: a dataset spec, an opened dataset, or an array
CalibrationInput = Union[str, "Dataset", np.ndarray, None]

#: the note a synthetic calibration set always carries (in the record's warnings, on stderr)
SYNTHETIC_CALIBRATION_NOTE = (
    "calibrated on synthetic data: fine for speed, meaningless for accuracy"
)

#: the split a calibration dataset is opened on (test images stay unseen)
CALIBRATION_SPLIT = "train"


@dataclass(frozen=True)
class Calibration:
    """The calibration data chosen for one build and the notes that go with the choice.

    ``source`` is None (the scheme needs none), an opened :class:`~edgequant.data.base.Dataset`
    or a float32 NCHW array; ``notes`` are one-line remarks for the user and the record.
    ``ignored`` marks a calibration set given for a scheme that needs none: ``quantize`` says
    so, while a sweep's one ``calib:`` for all its schemes is ignored quietly by ``bench``.
    """

    source: Dataset | np.ndarray | None
    notes: list[str] = field(default_factory=list)
    #: a calibration set was given for a scheme that needs none (``quantize`` says so)
    ignored: bool = False


def select_calibration(
    scheme: Scheme,
    model: Model,
    calibration: CalibrationInput = None,
    *,
    default: str | None = None,
) -> Calibration:
    """The calibration data ``scheme`` is built with for ``model`` (see the module's rules).

    ``calibration`` is what the user gave (``--calib``): a dataset spec, a dataset, a float32
    NCHW array, or None; ``default`` is the dataset spec used when a static scheme got none.

    Example:
        >>> from edgequant.models import load_model
        >>> from edgequant.quant.scheme import get_scheme
        >>> m = load_model("digits_cnn")
        >>> select_calibration(get_scheme("w8a8"), m, None)
        Traceback (most recent call last):
        ...
        edgequant.errors.ValidationError: scheme w8a8 needs calibration data: pass --calib DATASET
        >>> select_calibration(get_scheme("w8a8"), m, default="digits").source.spec
        'digits:train'
    """
    if not scheme.needs_calibration:
        return Calibration(None, ignored=calibration is not None)
    chosen = calibration if calibration is not None else default
    if chosen is None:
        raise ValidationError(f"scheme {scheme.name} needs calibration data: pass --calib DATASET")
    if isinstance(chosen, np.ndarray):
        return Calibration(chosen)
    if isinstance(chosen, str):
        from edgequant.data import open_dataset

        chosen = open_dataset(chosen, model.input_spec, split=CALIBRATION_SPLIT)
    notes = [SYNTHETIC_CALIBRATION_NOTE] if chosen.kind == "synthetic" else []
    return Calibration(chosen, notes)


__all__ = [
    "CALIBRATION_SPLIT",
    "SYNTHETIC_CALIBRATION_NOTE",
    "Calibration",
    "CalibrationInput",
    "select_calibration",
]
