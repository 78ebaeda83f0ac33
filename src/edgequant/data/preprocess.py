"""Image decoding and preprocessing: Pillow decode, resize shorter side, centre crop, normalise.

Decoding runs in a small thread pool (Pillow releases the GIL while decoding and resizing), and
the normalisation is one vectorised numpy operation over the whole batch.

Example:
    >>> from edgequant.input_spec import InputSpec
    >>> from PIL import Image
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x.png")
    >>> Image.new("RGB", (300, 200), (255, 0, 0)).save(p)
    >>> preprocess_files([p], InputSpec.imagenet()).shape
    (1, 3, 224, 224)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from edgequant.errors import DatasetError
from edgequant.input_spec import InputSpec

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm")


def _resample(name: str) -> int:
    from PIL import Image

    table = {
        "bilinear": Image.Resampling.BILINEAR,
        "bicubic": Image.Resampling.BICUBIC,
        "nearest": Image.Resampling.NEAREST,
        "lanczos": Image.Resampling.LANCZOS,
    }
    return table.get(name, Image.Resampling.BILINEAR)


def load_image(path: str | Path, spec: InputSpec) -> np.ndarray:
    """Decode one image → uint8 HWC (or HW for ``L``) resized and centre-cropped for ``spec``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            im = opened.convert(spec.color)
            h, w = spec.size
            short = spec.resize
            scale = short / min(im.width, im.height)
            new_w = max(w, round(im.width * scale))
            new_h = max(h, round(im.height * scale))
            im = im.resize((new_w, new_h), _resample(spec.interpolation))
            left = (new_w - w) // 2
            top = (new_h - h) // 2
            im = im.crop((left, top, left + w, top + h))
            return np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DatasetError(f"cannot read image {path}: {e}; remove or replace the file") from None


def preprocess_files(
    paths: Sequence[str | Path], spec: InputSpec, workers: int | None = None
) -> np.ndarray:
    """Decode and preprocess images into one float32 NCHW batch."""
    if not paths:
        return np.zeros((0, *spec.shape), np.float32)
    workers = workers or min(4, os.cpu_count() or 1)
    if workers > 1 and len(paths) > 1:
        with ThreadPoolExecutor(workers) as pool:
            images = list(pool.map(lambda p: load_image(p, spec), paths))
    else:
        images = [load_image(p, spec) for p in paths]
    batch = np.stack(images)
    return spec.normalize(batch if batch.ndim == 4 else batch[..., None])
