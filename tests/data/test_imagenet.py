"""Both ImageNet folder layouts on tiny generated image folders, and their errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgequant.data import open_dataset
from edgequant.errors import DatasetError, ValidationError
from edgequant.input_spec import InputSpec

SPEC = InputSpec(shape=(3, 16, 16), resize=18)


def _img(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (24, 20)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


@pytest.fixture
def class_folders(tmp_path: Path) -> Path:
    root = tmp_path / "folders"
    _img(root / "n02" / "b.jpg", (0, 255, 0))
    _img(root / "n01" / "a.png", (255, 0, 0))
    _img(root / "n01" / "c.png", (255, 0, 0))
    _img(root / "n03" / "d.JPEG", (0, 0, 255))
    (root / "n03" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture
def flat(tmp_path: Path) -> Path:
    root = tmp_path / "flat"
    _img(root / "x1.jpg", (255, 0, 0))
    _img(root / "x2.jpg", (0, 0, 255))
    (root / "val_map.txt").write_text("x1.jpg 7\nx2.jpg 3\n\n")
    return root


def test_class_folders_sorted_order(class_folders: Path) -> None:
    ds = open_dataset(f"imagenet:{class_folders}", SPEC)
    assert len(ds) == 4
    assert ds.labels.tolist() == [0, 0, 1, 2]
    x = ds.load([0, 2, 3])
    assert x.shape == (3, 3, 16, 16) and x.dtype == np.float32
    # a pure red image normalised with the ImageNet mean/std
    red = (255 - 123.675) / 58.395
    assert np.allclose(x[0, 0], red, atol=1e-4)
    assert np.allclose(x[1, 1], (255 - 116.28) / 57.12, atol=1e-4)  # green


def test_class_folders_with_synsets_file(class_folders: Path) -> None:
    (class_folders / "synsets.txt").write_text("n00\nn01 tench\nn02\nn03\n")
    ds = open_dataset(f"imagenet:{class_folders}", SPEC)
    assert ds.labels.tolist() == [1, 1, 2, 3]


def test_flat_val_map(flat: Path) -> None:
    ds = open_dataset(f"imagenet:{flat}", SPEC)
    assert ds.labels.tolist() == [7, 3]
    assert ds.load([1]).shape == (1, 3, 16, 16)


def test_limit_is_seeded_subset(class_folders: Path) -> None:
    a = open_dataset(f"imagenet:{class_folders}", SPEC, limit=2, seed=3)
    b = open_dataset(f"imagenet:{class_folders}", SPEC, limit=2, seed=3)
    assert len(a) == 2 and a.labels.tolist() == b.labels.tolist()
    np.testing.assert_array_equal(a.load([0, 1]), b.load([0, 1]))


def test_resize_and_centre_crop_keep_aspect(tmp_path: Path) -> None:
    # left half black, right half white, wide image: the centre crop must see both halves
    im = np.zeros((20, 60, 3), np.uint8)
    im[:, 30:] = 255
    root = tmp_path / "d"
    root.mkdir()
    Image.fromarray(im).save(root / "w.png")
    (root / "val_map.txt").write_text("w.png 0\n")
    spec = InputSpec(shape=(3, 10, 10), mean=(0, 0, 0), std=(255, 255, 255), resize=10)
    x = open_dataset(f"imagenet:{root}", spec).load([0])[0, 0]
    assert x[:, 0].max() < 0.1 and x[:, -1].min() > 0.9


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        ("missing", "does not exist"),
        ("empty", "no images found"),
        ("loose", "val_map.txt"),
        ("bad_map", "expected '<file name> <class index>'"),
        ("map_missing_file", "does not exist in"),
    ],
)
def test_folder_errors(tmp_path: Path, setup: str, match: str) -> None:
    root = tmp_path / "d"
    if setup != "missing":
        root.mkdir()
    if setup == "loose":
        _img(root / "a.jpg", (1, 2, 3))
    if setup == "bad_map":
        _img(root / "a.jpg", (1, 2, 3))
        (root / "val_map.txt").write_text("a.jpg seven\n")
    if setup == "map_missing_file":
        (root / "val_map.txt").write_text("gone.jpg 1\n")
    with pytest.raises(DatasetError, match=match):
        open_dataset(f"imagenet:{root}", SPEC)


def test_unreadable_image_is_named(tmp_path: Path) -> None:
    root = tmp_path / "d"
    root.mkdir()
    (root / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "val_map.txt").write_text("broken.jpg 0\n")
    ds = open_dataset(f"imagenet:{root}", SPEC)
    with pytest.raises(DatasetError, match=r"cannot read image .*broken\.jpg"):
        ds.load([0])


def test_dataset_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="did you mean imagenet"):
        open_dataset("imagenett:/x", SPEC)
    with pytest.raises(ValidationError, match=r"did you mean imagenet:"):
        open_dataset(str(tmp_path), SPEC)
    with pytest.raises(ValidationError, match="needs a folder"):
        open_dataset("imagenet", SPEC)


@pytest.mark.parametrize("text", ["", "\n  \n\n"])
def test_empty_val_map_is_named(tmp_path: Path, text: str) -> None:
    # issue 16: an empty val_map.txt said "no images found"; say the file is empty, and where
    root = tmp_path / "d"
    _img(root / "a.jpg", (1, 2, 3))
    (root / "val_map.txt").write_text(text)
    with pytest.raises(DatasetError) as info:
        open_dataset(f"imagenet:{root}", SPEC)
    assert str(info.value).startswith(f"{root / 'val_map.txt'} is empty")
    assert "no images found" not in str(info.value)
