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
from typing import TYPE_CHECKING

import numpy as np

from edgequant.errors import DatasetError, condense_error
from edgequant.input_spec import InputSpec

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm")
#: largest picture decoded (width × height): 8192², 67 MP, above the camera photos datasets hold
#: and below Pillow's own decompression-bomb limit; ImageNet images are under 1 MP
MAX_PIXELS = 8192 * 8192
#: the resized-but-uncropped picture may hold this many times the crop's pixels (aspect 16:1)
_MAX_INTERMEDIATE = 16


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
    """Decode one image → uint8 RGB HWC (or HW for ``L``) resized and centre-cropped for ``spec``.

    The work is bounded by the output size, whatever the picture: the resize samples only the
    source region that survives the crop (an 8000×1 PNG no longer becomes a 2-million-pixel-wide
    intermediate), and a picture declaring more than :data:`MAX_PIXELS` is refused before
    decoding, naming the file.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            _check_pixels(path, opened.width, opened.height)
            im = opened.convert(spec.pil_mode)
            return np.asarray(_resize_crop(im, spec), dtype=np.uint8)
    except Image.DecompressionBombError as e:
        raise DatasetError(
            f"cannot read image {path}: {condense_error(e)}; it declares more pixels than "
            f"edgequant decodes ({MAX_PIXELS // 1_000_000} MP): downscale or remove the file"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DatasetError(f"cannot read image {path}: {e}; remove or replace the file") from None
    except (MemoryError, DatasetError):
        raise
    except Exception as e:  # Pillow's plugins raise assorted errors on malformed files
        raise DatasetError(
            f"cannot read image {path}: {condense_error(e)}; remove or replace the file"
        ) from None


def _check_pixels(path: str | Path, width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise DatasetError(
            f"cannot read image {path}: it is {width}x{height} ({width * height / 1e6:.0f} MP), "
            f"over the {MAX_PIXELS // 1_000_000} MP edgequant decodes (a decompression bomb or an "
            "oversized picture): downscale or remove the file"
        )


def _resize_crop(im: PILImage, spec: InputSpec) -> PILImage:
    """Resize the shorter side to ``spec.resize`` then centre-crop, sampling only the crop."""
    h, w = spec.size
    scale = spec.resize / min(im.width, im.height)
    new_w = max(w, round(im.width * scale))
    new_h = max(h, round(im.height * scale))
    left = (new_w - w) // 2
    top = (new_h - h) // 2
    resample = _resample(spec.interpolation)
    if new_w * new_h <= _MAX_INTERMEDIATE * w * h:
        # every real photo: the plain resize + crop, bit for bit what accuracy figures were made with
        return im.resize((new_w, new_h), resample).crop((left, top, left + w, top + h))
    # an extreme aspect ratio: resample only the source region the crop keeps (Pillow's box);
    # the same geometry, within rounding, without a full-size intermediate
    sx, sy = new_w / im.width, new_h / im.height
    box = (left / sx, top / sy, (left + w) / sx, (top + h) / sy)
    return im.resize((w, h), resample, box=box)


def preprocess_files(
    paths: Sequence[str | Path], spec: InputSpec, workers: int | None = None
) -> np.ndarray:
    """Decode and preprocess images into one float32 batch in the spec's layout."""
    if not paths:
        return np.zeros((0, *spec.tensor_shape), np.float32)
    workers = workers or min(4, os.cpu_count() or 1)
    if workers > 1 and len(paths) > 1:
        with ThreadPoolExecutor(workers) as pool:
            images = list(pool.map(lambda p: load_image(p, spec), paths))
    else:
        images = [load_image(p, spec) for p in paths]
    batch = np.stack(images)
    return spec.normalize(batch if batch.ndim == 4 else batch[..., None])
