"""scikit-learn's bundled handwritten digits (1,797 real 8×8 images, 10 classes), offline.

A fixed stratified split (seed 0): 1,347 train / 450 test images. Images are scaled from 0–16 to
0–255 and resized to the model's input size with Pillow, then normalised with its spec.

Example:
    >>> from edgequant.input_spec import InputSpec
    >>> spec = InputSpec(shape=(1, 32, 32), mean=(0.0,), std=(255.0,), resize=32, color="L")
    >>> ds = DigitsDataset(spec, split="test")
    >>> len(ds), ds.load([0]).shape
    (450, (1, 1, 32, 32))
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from edgequant.data.base import LabelledDataset
from edgequant.errors import ValidationError
from edgequant.input_spec import InputSpec

SPLITS = ("train", "test", "all")
TEST_FRACTION = 0.25
SPLIT_SEED = 0


@lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.clip(np.rint(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    idx = np.arange(len(images))
    train_idx, test_idx = train_test_split(
        idx, test_size=TEST_FRACTION, stratify=bunch.target, random_state=SPLIT_SEED
    )
    return images, bunch.target.astype(np.int64), np.sort(train_idx), np.sort(test_idx)


def split_indices(split: str) -> np.ndarray:
    """Indices into the 1,797 images for a split (deterministic)."""
    _, _, train, test = _raw()
    if split == "train":
        return train
    if split == "test":
        return test
    return np.arange(len(train) + len(test))


class DigitsDataset(LabelledDataset):
    """The digits split, preprocessed once for ``input_spec`` and held in memory."""

    kind = "digits"

    def __init__(self, input_spec: InputSpec, split: str = "test") -> None:
        if split not in SPLITS:
            raise ValidationError(f"digits split must be one of {SPLITS}, got {split!r}")
        self.input_spec = input_spec
        self.split = split
        self.spec = f"digits:{split}"
        images, targets, _, _ = _raw()
        idx = split_indices(split)
        self._labels = targets[idx]
        self._x = _prepare(images[idx], input_spec)

    def load(self, indices: Sequence[int]) -> np.ndarray:
        return np.ascontiguousarray(self._x[np.asarray(indices, dtype=np.int64)])


def _prepare(images: np.ndarray, spec: InputSpec) -> np.ndarray:
    from PIL import Image

    h, w = spec.size
    resized = np.stack(
        [
            np.asarray(Image.fromarray(im, "L").resize((w, h), Image.Resampling.BILINEAR))
            for im in images
        ]
    )
    if spec.channels == 3:  # an RGB model on grey digits: replicate the channel
        resized = np.repeat(resized[..., None], 3, axis=-1)
    else:
        resized = resized[..., None]
    return spec.normalize(resized)
