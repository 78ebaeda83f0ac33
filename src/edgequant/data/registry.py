"""Open a dataset from its command-line name ``KIND[:PATH]``.

=================== ==========================================================================
``imagenet:DIR``    labelled images: class sub-folders, or flat + MLPerf ``val_map.txt``
``digits[:SPLIT]``  scikit-learn's bundled digits; SPLIT = train | test (default) | all
``synthetic[:N]``   N random images (default 1024): performance only, no labels
``npy:FILE``        preprocessed float32 NCHW samples in a ``.npy`` (or ``.npz`` with x, y)
=================== ==========================================================================

Example:
    >>> from edgequant.input_spec import InputSpec
    >>> ds = open_dataset("synthetic:8", InputSpec.imagenet())
    >>> len(ds)
    8
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgequant.data.base import Dataset
from edgequant.data.calibration import select_indices
from edgequant.data.labels import validate_labels
from edgequant.errors import DatasetError, ValidationError
from edgequant.input_spec import InputSpec

KINDS = ("imagenet", "digits", "synthetic", "npy")


class SubsetDataset(Dataset):
    """A seeded subset of another dataset (``--limit N``)."""

    def __init__(self, base: Dataset, indices: Sequence[int]) -> None:
        self.base = base
        self.indices = list(indices)
        self.kind = base.kind
        self.has_labels = base.has_labels
        self.input_spec = base.input_spec
        self.spec = f"{base.spec}[{len(self.indices)}]"

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def labels(self) -> np.ndarray | None:
        labels = self.base.labels
        return None if labels is None else labels[self.indices]

    def load(self, indices: Sequence[int]) -> np.ndarray:
        return self.base.load([self.indices[i] for i in indices])

    def label_origin(self, index: int) -> str:
        return self.base.label_origin(self.indices[index])


class ArrayDataset(Dataset):
    """Samples already preprocessed, from a ``.npy``/``.npz`` file or an array."""

    kind = "npy"

    def __init__(
        self, x: np.ndarray, labels: np.ndarray | None, input_spec: InputSpec, spec: str
    ) -> None:
        self._x = x
        self._labels = None if labels is None else _int_labels(labels, len(x), spec)
        self.has_labels = labels is not None
        self.input_spec = input_spec
        self.spec = spec
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(input_spec.tensor_shape):
            raise ValidationError(
                f"{spec}: samples have shape {tuple(x.shape)}, but the model takes "
                f"(N, {', '.join(map(str, input_spec.tensor_shape))}) ({input_spec.layout})"
            )

    def __len__(self) -> int:
        return len(self._x)

    @property
    def labels(self) -> np.ndarray | None:
        return self._labels

    def load(self, indices: Sequence[int]) -> np.ndarray:
        return np.asarray(self._x[np.asarray(indices, dtype=np.int64)], dtype=np.float32)

    def label_origin(self, index: int) -> str:
        return f"{self.spec}: y[{index}]"


def _int_labels(labels: np.ndarray, n: int, spec: str) -> np.ndarray:
    """Labels as int64 class indices, refusing what a cast would silently change."""
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != n:
        raise DatasetError(
            f"{spec}: labels y have shape {y.shape}, but there are {n} samples; "
            "y needs one class index per sample"
        )
    if y.dtype.kind == "f" and not (np.isfinite(y).all() and np.array_equal(y, np.rint(y))):
        raise DatasetError(f"{spec}: labels y must be whole class indices, got {y.dtype} fractions")
    if y.dtype.kind not in "iuf" and len(y):
        raise DatasetError(f"{spec}: labels y must be integer class indices, got {y.dtype}")
    return y.astype(np.int64)


def _open_npy(path: Path, input_spec: InputSpec, spec: str) -> ArrayDataset:
    if not path.is_file():
        raise DatasetError(f"{path} does not exist; npy:FILE needs a .npy or .npz file")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DatasetError(f"cannot read {path}: {e}") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        if "x" not in data:
            raise DatasetError(f"{path} must hold an array named 'x' (and optionally 'y' labels)")
        return ArrayDataset(data["x"], data.get("y", None), input_spec, spec)
    return ArrayDataset(data, None, input_spec, spec)


def parse_dataset_spec(spec: str) -> tuple[str, str | None]:
    """Split ``KIND[:PATH]`` and check the kind; unknown kinds list the close matches."""
    kind, _, arg = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        if Path(spec).expanduser().is_dir():
            raise ValidationError(f"dataset {spec!r} needs a kind: did you mean imagenet:{spec}?")
        close = difflib.get_close_matches(kind, KINDS, n=2, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValidationError(
            f"unknown dataset kind {kind!r}{hint} (use one of {', '.join(KINDS)}, as KIND[:PATH])"
        )
    return kind, (arg or None)


def open_dataset(
    spec: str,
    input_spec: InputSpec,
    *,
    split: str = "test",
    limit: int | None = None,
    seed: int = 0,
    num_classes: int | None = None,
) -> Dataset:
    """Open ``KIND[:PATH]`` preprocessed for ``input_spec``; ``limit`` takes a seeded subset.

    ``split`` applies to datasets that have splits (``digits``): an explicit ``digits:train``
    wins over it. Labels are checked here, once for every consumer: a negative label is always
    refused, and with ``num_classes`` (the model's output classes) so is one ``>= num_classes``;
    the error names the file and line (see :func:`edgequant.data.labels.validate_labels`).
    """
    kind, arg = parse_dataset_spec(spec)
    ds: Dataset
    if kind == "imagenet":
        if not arg:
            raise ValidationError("imagenet needs a folder: imagenet:DIR")
        from edgequant.data.imagenet import ImageFolderDataset

        ds = ImageFolderDataset(arg, input_spec)
    elif kind == "digits":
        from edgequant.data.digits import DigitsDataset

        ds = DigitsDataset(input_spec, split=arg or split)
    elif kind == "synthetic":
        from edgequant.data.synthetic import DEFAULT_SIZE, SyntheticDataset

        try:
            size = int(arg) if arg else DEFAULT_SIZE
        except ValueError:
            raise ValidationError(f"synthetic:N needs a sample count, got {arg!r}") from None
        if size < 1:
            raise ValidationError(f"synthetic:N needs N >= 1, got {size}")
        ds = SyntheticDataset(input_spec, size=size, seed=seed)
    else:
        if not arg:
            raise ValidationError("npy needs a file: npy:FILE.npy")
        ds = _open_npy(Path(arg).expanduser(), input_spec, spec)
    validate_labels(ds, num_classes)
    if limit is not None:
        if limit < 1:
            raise ValidationError(f"--limit must be >= 1, got {limit}")
        if limit < len(ds):
            ds = SubsetDataset(ds, select_indices(len(ds), limit, seed))
    return ds
