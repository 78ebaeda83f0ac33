"""Crops and flips: full-size crops are the image or its mirror; deterministic per seed."""

from __future__ import annotations

import numpy as np

from edgequant.data.augment import crops_and_flips


def test_full_crops_are_the_image_or_its_mirror() -> None:
    x = np.random.default_rng(0).random((3, 3, 10, 12), dtype=np.float32)
    out = crops_and_flips(x, 4, seed=1, min_scale=1.0)
    assert out.shape == (12, 3, 10, 12)
    flips = 0
    for i in range(3):
        for v in out[i * 4 : i * 4 + 4]:
            same, mirror = (
                np.allclose(v, x[i], atol=1e-6),
                np.allclose(v, x[i][..., ::-1], atol=1e-6),
            )
            assert same or mirror
            flips += int(mirror and not same)
    assert 0 < flips < 12


def test_crops_are_deterministic_and_differ_from_the_original() -> None:
    x = np.random.default_rng(2).random((2, 3, 16, 16), dtype=np.float32)
    a, b = crops_and_flips(x, 2, seed=5), crops_and_flips(x, 2, seed=5)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, crops_and_flips(x, 2, seed=6))
    assert not any(np.allclose(v, x[0]) or np.allclose(v, x[0][..., ::-1]) for v in a[:2])
