"""Random inputs for performance runs. Never used for an accuracy figure (no labels).

Example:
    >>> from edgequant.models.spec import InputSpec
    >>> ds = SyntheticDataset(InputSpec.imagenet(), size=16)
    >>> ds.labels is None, ds.load([3]).shape
    (True, (1, 3, 224, 224))
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgequant.data.base import Dataset
from edgequant.models.spec import InputSpec

DEFAULT_SIZE = 1024


class SyntheticDataset(Dataset):
    """Deterministic pseudo-images: uniform 0–255 pixels, normalised with the model's spec.

    Samples are generated per index from a seeded generator, so any subset is reproducible and
    nothing large is held in memory.
    """

    kind = "synthetic"
    has_labels = False

    def __init__(self, input_spec: InputSpec, size: int = DEFAULT_SIZE, seed: int = 0) -> None:
        self.input_spec = input_spec
        self.size = size
        self.seed = seed
        self.spec = f"synthetic:{size}:{seed}"

    def __len__(self) -> int:
        return self.size

    @property
    def labels(self) -> None:
        return None

    def load(self, indices: Sequence[int]) -> np.ndarray:
        c, h, w = self.input_spec.shape
        out = np.empty((len(indices), h, w, c), np.float32)
        for j, i in enumerate(indices):
            out[j] = np.random.default_rng((self.seed, int(i))).integers(0, 256, (h, w, c))
        return self.input_spec.normalize(out)
