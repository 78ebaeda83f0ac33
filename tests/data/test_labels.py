"""Issue 16: impossible labels are refused when the dataset is opened, naming file and line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgequant.data import open_dataset
from edgequant.errors import DatasetError
from edgequant.input_spec import InputSpec

SPEC = InputSpec(shape=(3, 8, 8), resize=8)
DIGITS = InputSpec(shape=(1, 8, 8), mean=(0.0,), std=(255.0,), resize=8, color="L")


def _flat(tmp_path: Path, val_map: str) -> Path:
    root = tmp_path / "flat"
    root.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        Image.new("RGB", (10, 10), (9, 9, 9)).save(root / name)
    (root / "val_map.txt").write_text(val_map)
    return root


def test_label_beyond_the_model_classes_is_refused_with_file_and_line(tmp_path: Path) -> None:
    root = _flat(tmp_path, "a.png 3\n\nb.png 5000\nc.png 999\n")
    with pytest.raises(DatasetError) as info:
        open_dataset(f"imagenet:{root}", SPEC, num_classes=1000)
    msg = str(info.value)
    assert f"{root / 'val_map.txt'}:3 (b.png)" in msg
    assert "label 5000 is not a class of the model (0..999)" in msg
    assert "1 of 3 labels" in msg
    # the class count is what makes 5000 impossible: without it the folder still opens
    assert len(open_dataset(f"imagenet:{root}", SPEC)) == 3
    assert len(open_dataset(f"imagenet:{root}", SPEC, num_classes=5001)) == 3


def test_negative_label_is_refused_even_without_a_class_count(tmp_path: Path) -> None:
    root = _flat(tmp_path, "a.png 0\nb.png 1\nc.png -1\n")
    with pytest.raises(DatasetError, match=r"val_map\.txt:3 \(c\.png\): label -1 is negative"):
        open_dataset(f"imagenet:{root}", SPEC)
    # --limit does not hide a bad line: the whole file is checked at opening
    with pytest.raises(DatasetError, match="label -1"):
        open_dataset(f"imagenet:{root}", SPEC, limit=1, num_classes=10)


@pytest.mark.parametrize("label", ["--1", "²", "1.5", "+-2"])
def test_malformed_label_is_a_format_error_not_a_crash(tmp_path: Path, label: str) -> None:
    root = _flat(tmp_path, f"a.png {label}\n")
    with pytest.raises(DatasetError, match=r"val_map\.txt:1: expected '<file name> <class index>'"):
        open_dataset(f"imagenet:{root}", SPEC)


def test_synsets_index_beyond_the_model_is_named(tmp_path: Path) -> None:
    root = tmp_path / "folders"
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        Image.new("RGB", (10, 10)).save(root / cls / "x.png")
    (root / "synsets.txt").write_text("cat\nfish\nbird\ndog\n")
    with pytest.raises(DatasetError, match=r"synsets\.txt:4 \(x\.png\): label 3 is not a class"):
        open_dataset(f"imagenet:{root}", SPEC, num_classes=3)
    assert list(open_dataset(f"imagenet:{root}", SPEC, num_classes=4).labels) == [0, 3]


def test_npz_labels_are_checked(tmp_path: Path) -> None:
    x = np.zeros((3, 3, 8, 8), np.float32)
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=np.array([1, 10, 2]))
    with pytest.raises(DatasetError, match=r"d\.npz: y\[1\]: label 10 is not a class of the model"):
        open_dataset(f"npy:{path}", SPEC, num_classes=10)
    np.savez(path, x=x, y=np.array([1.0, 2.5, 0.0]))
    with pytest.raises(DatasetError, match="whole class indices"):
        open_dataset(f"npy:{path}", SPEC)
    np.savez(path, x=x, y=np.array([1, 2]))
    with pytest.raises(DatasetError, match="one class index per sample"):
        open_dataset(f"npy:{path}", SPEC)


def test_digits_against_a_model_with_fewer_classes() -> None:
    with pytest.raises(DatasetError, match=r"digits:test: sample \d+: label \d is not a class"):
        open_dataset("digits", DIGITS, num_classes=5)
    assert len(open_dataset("digits", DIGITS, num_classes=10)) == 450
