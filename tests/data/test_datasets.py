"""digits split determinism, synthetic data, npy datasets, calibration validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgequant.data import calibration_samples, open_dataset, select_indices, validate_batch
from edgequant.data.digits import split_indices
from edgequant.errors import DatasetError, ValidationError
from edgequant.input_spec import InputSpec

DIGITS = InputSpec(shape=(1, 32, 32), mean=(127.5,), std=(127.5,), resize=32, color="L")


def test_digits_split_is_fixed_stratified_and_disjoint() -> None:
    train, test = split_indices("train"), split_indices("test")
    assert len(train) == 1347 and len(test) == 450
    assert not set(train) & set(test)
    np.testing.assert_array_equal(train, split_indices("train"))  # deterministic
    ds = open_dataset("digits", DIGITS, split="test")
    counts = np.bincount(ds.labels, minlength=10)
    assert counts.min() >= 43 and counts.max() <= 47  # stratified: ~45 per class
    assert open_dataset("digits:train", DIGITS).labels.shape == (1347,)


def test_digits_preprocessing_range_and_rgb() -> None:
    x = open_dataset("digits", DIGITS).load([0, 1, 2])
    assert x.shape == (3, 1, 32, 32)
    assert x.min() >= -1.0 and x.max() <= 1.0 and x.max() > 0.5
    rgb = InputSpec(shape=(3, 16, 16), resize=16)
    y = open_dataset("digits", rgb).load([0])
    assert y.shape == (1, 3, 16, 16)
    np.testing.assert_allclose(y[0, 0] * 58.395 + 123.675, y[0, 1] * 57.12 + 116.28, atol=1e-3)


def test_digits_bad_split() -> None:
    with pytest.raises(ValidationError, match="split"):
        open_dataset("digits:validation", DIGITS)


def test_synthetic_is_deterministic_and_unlabelled() -> None:
    spec = InputSpec.imagenet(32)
    a = open_dataset("synthetic:10", spec)
    b = open_dataset("synthetic:10", spec)
    assert len(a) == 10 and a.labels is None and not a.has_labels
    np.testing.assert_array_equal(a.load([3, 4]), b.load([3, 4]))
    assert not np.array_equal(a.load([3]), a.load([4]))
    with pytest.raises(ValidationError, match="sample count"):
        open_dataset("synthetic:many", spec)


def test_npy_and_npz(tmp_path: Path) -> None:
    spec = InputSpec.imagenet(8, resize=8)
    x = np.random.default_rng(0).standard_normal((5, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "xy.npz", x=x, y=np.arange(5))
    a = open_dataset(f"npy:{tmp_path / 'x.npy'}", spec)
    assert a.labels is None
    np.testing.assert_array_equal(a.load([2]), x[2:3])
    b = open_dataset(f"npy:{tmp_path / 'xy.npz'}", spec)
    assert b.labels.tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValidationError, match="model takes"):
        open_dataset(f"npy:{tmp_path / 'x.npy'}", InputSpec.imagenet(16))
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(f"npy:{tmp_path / 'nope.npy'}", spec)


def test_select_indices_seeded_sorted() -> None:
    a = select_indices(100, 10, seed=1)
    assert a == select_indices(100, 10, seed=1) and a == sorted(a) and len(set(a)) == 10
    assert a != select_indices(100, 10, seed=2)
    assert select_indices(5, 10) == [0, 1, 2, 3, 4]


def test_calibration_validation(tmp_path: Path) -> None:
    spec = InputSpec.imagenet(8, resize=8)
    good = np.zeros((2, 3, 8, 8), np.float32)
    assert validate_batch(good, spec).dtype == np.float32
    bad = good.copy()
    bad[1, 0, 0, 0] = np.nan
    with pytest.raises(ValidationError, match=r"NaN or inf in 1 of 2 samples"):
        validate_batch(bad, spec, what="calibration data")
    with pytest.raises(ValidationError, match="has shape"):
        validate_batch(np.zeros((2, 3, 9, 9), np.float32), spec)
    with pytest.raises(ValidationError, match="empty"):
        validate_batch(np.zeros((0, 3, 8, 8), np.float32), spec)
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(ValidationError, match="NaN"):
        calibration_samples(open_dataset(f"npy:{tmp_path / 'nan.npy'}", spec), 2)
    assert calibration_samples(open_dataset("synthetic:20", spec), 4).shape == (4, 3, 8, 8)
