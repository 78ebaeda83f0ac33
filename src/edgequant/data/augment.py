"""Random crops and flips of images: more distinct inputs from a few hundred calibration images.

Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32)
    >>> out = crops_and_flips(x, 3)
    >>> out.shape            # image i's variants are rows i*3 .. i*3+2
    (6, 3, 16, 16)
"""

from __future__ import annotations

import numpy as np


def crops_and_flips(x: np.ndarray, k: int, seed: int = 0, min_scale: float = 0.6) -> np.ndarray:
    """``k`` variants of every image of ``x`` (N, C, H, W): a random square-ish crop of
    ``min_scale``-100% of each side, resized back bilinearly, and a coin-flip horizontal flip;
    image ``i``'s variants are rows ``i*k .. i*k+k-1``. Deterministic for a ``seed``."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    n, _, h, w = x.shape
    out = np.empty((n * k, *x.shape[1:]), np.float32)
    for i in range(n):
        for j in range(k):
            s = rng.uniform(min_scale, 1.0)
            ch, cw = int(h * s), int(w * s)
            top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
            crop = torch.from_numpy(
                np.ascontiguousarray(x[i : i + 1, :, top : top + ch, left : left + cw], np.float32)
            )
            img = F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)
            if rng.random() < 0.5:
                img = img.flip(3)
            out[i * k + j] = img[0].numpy()
    return out


__all__ = ["crops_and_flips"]
