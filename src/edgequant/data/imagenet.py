"""ImageNet-style folders, in both layouts users have.

* **class sub-folders**: ``DIR/<class>/*.JPEG``; class index = the sorted order of the sub-folder
  names, unless ``DIR/synsets.txt`` (one class name per line, in class-index order) says otherwise
  — needed when the folder holds only some of a model's classes.
* **flat + val_map.txt** (MLPerf): ``DIR/*.JPEG`` and ``DIR/val_map.txt`` with
  ``<file name> <class index>`` per line.

Example:
    >>> ds = ImageFolderDataset("/data/imagenet-val", InputSpec.imagenet())  # doctest: +SKIP
    >>> x, y = next(ds.batches(8))                                             # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgequant.data.base import LabelledDataset
from edgequant.data.preprocess import IMAGE_SUFFIXES, preprocess_files
from edgequant.errors import DatasetError
from edgequant.input_spec import InputSpec

VAL_MAP = "val_map.txt"
SYNSETS = "synsets.txt"


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def _read_val_map(root: Path) -> tuple[list[Path], list[int], list[str]]:
    """Files, labels and each label's origin (``val_map.txt:LINE``) of a flat folder."""
    val_map = root / VAL_MAP
    files: list[Path] = []
    labels: list[int] = []
    origins: list[str] = []
    for n, line in enumerate(val_map.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not re.fullmatch(r"-?[0-9]+", parts[1]):
            raise DatasetError(
                f"{val_map}:{n}: expected '<file name> <class index>', got {line.strip()!r}"
            )
        path = root / parts[0]
        if not path.is_file():
            raise DatasetError(f"{val_map}:{n}: image {parts[0]} does not exist in {root}")
        files.append(path)
        labels.append(int(parts[1]))
        origins.append(f"{val_map}:{n}")
    if not files:
        raise DatasetError(
            f"{val_map} is empty: write one '<file name> <class index>' line per image in "
            f"{root}, or delete it and sort the images into class sub-folders"
        )
    return files, labels, origins


def _read_class_folders(
    root: Path, class_dirs: list[Path]
) -> tuple[list[Path], list[int], list[str]]:
    """Files, labels and each label's origin (the folder, and the synsets.txt line) by class."""
    names = sorted(d.name for d in class_dirs)
    synsets_file = root / SYNSETS
    if synsets_file.is_file():
        index: dict[str, int] = {}
        where: dict[str, str] = {}
        entries = [
            (n, ln.split()[0])
            for n, ln in enumerate(synsets_file.read_text().splitlines(), 1)
            if ln.strip()
        ]
        for i, (n, name) in enumerate(entries):
            index[name] = i
            where[name] = f"{synsets_file}:{n}"
        missing = [n for n in names if n not in index]
        if missing:
            raise DatasetError(f"{synsets_file} does not list the class folder(s) {missing[:3]}")
    else:
        index = {name: i for i, name in enumerate(names)}
        where = {
            name: f"{root / name} (class {i} in sorted folder order)" for name, i in index.items()
        }
    files: list[Path] = []
    labels: list[int] = []
    origins: list[str] = []
    for name in names:
        imgs = sorted(p for p in (root / name).iterdir() if _is_image(p))
        files += imgs
        labels += [index[name]] * len(imgs)
        origins += [where[name]] * len(imgs)
    return files, labels, origins


class ImageFolderDataset(LabelledDataset):
    """Labelled images from a folder (either layout), preprocessed for one model's input spec."""

    kind = "imagenet"

    def __init__(self, root: str | Path, input_spec: InputSpec) -> None:
        self.root = Path(root).expanduser()
        self.input_spec = input_spec
        self.spec = f"imagenet:{self.root}"
        if not self.root.exists():
            raise DatasetError(
                f"dataset folder {self.root} does not exist; check the path after 'imagenet:'"
            )
        if not self.root.is_dir():
            raise DatasetError(
                f"{self.root} is not a folder; imagenet:DIR needs a folder of images"
            )
        if (self.root / VAL_MAP).is_file():
            self.layout = "val_map"
            files, labels, origins = _read_val_map(self.root)
        else:
            class_dirs = [
                d for d in self.root.iterdir() if d.is_dir() and not d.name.startswith(".")
            ]
            if class_dirs:
                self.layout = "class_folders"
                files, labels, origins = _read_class_folders(self.root, class_dirs)
            else:
                loose = [p for p in self.root.iterdir() if _is_image(p)]
                if loose:
                    raise DatasetError(
                        f"{self.root} holds images but no {VAL_MAP} and no class sub-folders: add a "
                        f"{VAL_MAP} ('<file name> <class index>' per line) or sort images into class folders"
                    )
                files, labels, origins = [], [], []
                self.layout = "empty"
        if not files:
            raise DatasetError(
                f"no images found in {self.root} (looked for {', '.join(IMAGE_SUFFIXES)})"
            )
        self.files = files
        self._labels = np.asarray(labels, dtype=np.int64)
        self._origins = origins

    def load(self, indices: Sequence[int]) -> np.ndarray:
        return preprocess_files([self.files[i] for i in indices], self.input_spec)

    def label_origin(self, index: int) -> str:
        return f"{self._origins[index]} ({self.files[index].name})"

    def subset(self, indices: Sequence[int]) -> ImageFolderDataset:
        """A view on some samples (keeps order); used by ``--limit``."""
        sub = object.__new__(ImageFolderDataset)
        sub.__dict__.update(self.__dict__)
        sub.files = [self.files[i] for i in indices]
        sub._labels = self._labels[list(indices)]
        sub._origins = [self._origins[i] for i in indices]
        return sub
