"""Issue 16: preprocessing work is bounded by the output, and oversized pictures are named."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgequant.data import open_dataset
from edgequant.data.preprocess import MAX_PIXELS, load_image
from edgequant.errors import DatasetError
from edgequant.input_spec import InputSpec


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that declares ``width`` x ``height`` but holds no pixels: a few dozen bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


def test_thin_strip_is_preprocessed_in_little_memory(tmp_path: Path) -> None:
    # an 8000x1 PNG (a hundred bytes) was resized by its 1-pixel side to 2,048,000x256 before the
    # crop: 2.37 GB. Under a 768 MiB address-space limit it must still preprocess.
    path = tmp_path / "strip.png"
    Image.new("RGB", (8000, 1), (200, 10, 10)).save(path)
    assert path.stat().st_size < 1000
    code = textwrap.dedent(
        f"""
        import resource
        from edgequant.data.preprocess import load_image
        from edgequant.input_spec import InputSpec
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (768 << 20, hard))
        x = load_image({str(path)!r}, InputSpec.imagenet())
        print(x.shape, int(x[..., 0].min()), int(x[..., 0].max()))
        """
    )
    env = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": ":".join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["(224,", "224,", "3)", "200", "200"]


def test_extreme_aspect_keeps_the_centre_crop_geometry(tmp_path: Path) -> None:
    # a 400x10 strip, left half black and right half white: the crop is the centre, both halves
    im = np.zeros((10, 400, 3), np.uint8)
    im[:, 200:] = 255
    path = tmp_path / "wide.png"
    Image.fromarray(im).save(path)
    spec = InputSpec(shape=(3, 10, 10), mean=(0, 0, 0), std=(255, 255, 255), resize=10)
    x = load_image(path, spec)
    assert x.shape == (10, 10, 3)
    assert x[:, 0].max() < 30 and x[:, -1].min() > 225


@pytest.mark.parametrize(
    ("size", "why"),
    [((9000, 9000), r"9000x9000 \(81 MP\), over the 67 MP"), ((30000, 30000), "exceeds limit")],
)
def test_decompression_bomb_names_the_file(tmp_path: Path, size: tuple[int, int], why: str) -> None:
    # before: `unexpected DecompressionBombError` (or a multi-GB decode) with no file name
    root = tmp_path / "d"
    root.mkdir()
    _png_header_only(root / "bomb.png", *size)
    (root / "val_map.txt").write_text("bomb.png 0\n")
    assert size[0] * size[1] > MAX_PIXELS
    ds = open_dataset(f"imagenet:{root}", InputSpec.imagenet(32))
    with pytest.raises(DatasetError) as info:
        ds.load([0])
    msg = str(info.value)
    assert msg.startswith(f"cannot read image {root / 'bomb.png'}: ")
    assert "downscale or remove the file" in msg
    assert re.search(why, msg), msg


def test_ordinary_photo_sizes_still_decode(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (4000, 3000), (1, 2, 3)).save(path)
    assert load_image(path, InputSpec.imagenet()).shape == (224, 224, 3)
