"""Calibration samples: a deterministic subset, validated before any quantizer sees it.

Example:
    >>> from edgequant.data import open_dataset
    >>> from edgequant.input_spec import InputSpec
    >>> ds = open_dataset("synthetic", InputSpec.imagenet(112))
    >>> calibration_samples(ds, 4).shape
    (4, 3, 112, 112)
"""

from __future__ import annotations

import numpy as np

from edgequant.data.base import Dataset
from edgequant.errors import ValidationError
from edgequant.input_spec import InputSpec


def select_indices(n_total: int, n: int | None, seed: int = 0) -> list[int]:
    """A seeded subset of ``n`` indices out of ``n_total`` (all of them when n is None or ≥ total).

    Sorted, so the same files are read in the same order every time.
    """
    if n is None or n >= n_total:
        return list(range(n_total))
    if n < 0:
        raise ValidationError(f"sample count must be >= 0, got {n}")
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(n_total, size=n, replace=False))


def validate_batch(x: np.ndarray, input_spec: InputSpec, what: str = "input") -> np.ndarray:
    """Check a float batch against the spec: non-empty, right shape, finite. Returns float32.

    The shape is the model's own layout (``input_spec.tensor_shape``: NCHW unless it says NHWC).
    """
    x = np.asarray(x)
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(input_spec.tensor_shape):
        raise ValidationError(
            f"{what} has shape {tuple(x.shape)}, but the model takes "
            f"(N, {', '.join(map(str, input_spec.tensor_shape))}) ({input_spec.layout}); "
            "check the dataset and the model's input size"
        )
    if x.shape[0] == 0:
        raise ValidationError(f"{what} is empty; pass a dataset with at least one sample")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValidationError(f"{what} must be floating point, got {x.dtype}")
    bad = ~np.isfinite(x)
    if bad.any():
        n_bad = int(bad.reshape(len(x), -1).any(axis=1).sum())
        raise ValidationError(
            f"{what} contains NaN or inf in {n_bad} of {len(x)} samples; clean the data before calibrating"
        )
    return x.astype(np.float32, copy=False)


def calibration_samples(dataset: Dataset, n: int, seed: int = 0) -> np.ndarray:
    """``n`` validated samples of ``dataset`` (seeded subset) as float32 NCHW."""
    if len(dataset) == 0:
        raise ValidationError(f"calibration dataset {dataset.spec} is empty")
    idx = select_indices(len(dataset), n, seed)
    return validate_batch(
        dataset.load(idx), dataset.input_spec, what=f"calibration data ({dataset.spec})"
    )
