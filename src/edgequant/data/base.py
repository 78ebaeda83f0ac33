"""The dataset contract: labelled (or not) samples, preprocessed for one model's input spec.

Datasets are named ``KIND[:PATH]`` on the command line (see :func:`edgequant.data.open_dataset`):
``imagenet:DIR``, ``digits``, ``synthetic``.

Example:
    >>> from edgequant.data import open_dataset
    >>> from edgequant.input_spec import InputSpec
    >>> ds = open_dataset("synthetic", InputSpec.imagenet(), limit=4)
    >>> ds.load([0, 1]).shape
    (2, 3, 224, 224)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence

import numpy as np

from edgequant.input_spec import InputSpec


class Dataset(ABC):
    """Samples preprocessed for ``input_spec``; ``labels`` is None when there are none.

    ``spec`` is the ``KIND[:PATH]`` string it was opened from (plus the split), used to name
    cached calibration sets and reference predictions.
    """

    spec: str
    kind: str
    input_spec: InputSpec
    #: True only for data whose labels mean something (never for ``synthetic``)
    has_labels: bool = False

    @abstractmethod
    def __len__(self) -> int: ...

    @property
    @abstractmethod
    def labels(self) -> np.ndarray | None:
        """int64 class indices, one per sample, or None."""

    @abstractmethod
    def load(self, indices: Sequence[int]) -> np.ndarray:
        """float32 batch of the given samples, preprocessed for ``input_spec``.

        NCHW, or NHWC for a model whose spec says so: each sample is ``input_spec.tensor_shape``.
        """

    def batches(
        self, batch_size: int, indices: Sequence[int] | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Yield ``(x, y)`` batches over ``indices`` (all samples by default)."""
        idx = list(range(len(self))) if indices is None else list(indices)
        labels = self.labels
        for start in range(0, len(idx), batch_size):
            chunk = idx[start : start + batch_size]
            yield self.load(chunk), (None if labels is None else labels[chunk])

    def label_origin(self, index: int) -> str:
        """Where sample ``index``'s label comes from, for error messages (file and line if known)."""
        return f"{self.spec}: sample {index}"

    def load_all(self) -> np.ndarray:
        return self.load(list(range(len(self))))

    @property
    def identity(self) -> str:
        """Stable identity for cache keys: spec, split, sample count and preprocessing."""
        return f"{self.spec}|n={len(self)}|{self.input_spec.identity}"


class LabelledDataset(Dataset):
    """A dataset with one meaningful int64 label per sample, held in ``_labels``.

    Example:
        >>> from edgequant.data.digits import DigitsDataset
        >>> from edgequant.input_spec import InputSpec
        >>> ds = DigitsDataset(InputSpec(shape=(1, 8, 8), mean=(0.0,), std=(16.0,), color="L"))
        >>> ds.has_labels, len(ds) == len(ds.labels)
        (True, True)
    """

    has_labels = True
    _labels: np.ndarray

    def __len__(self) -> int:
        return len(self._labels)

    @property
    def labels(self) -> np.ndarray:
        return self._labels
