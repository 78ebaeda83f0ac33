"""The input spec for any model (issue 14): options as users type them, and data honouring it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgequant.data import calibration_samples, open_dataset, validate_batch
from edgequant.errors import ValidationError
from edgequant.input_spec import InputSpec, parse_numbers, parse_shape


@pytest.mark.parametrize(
    ("text", "layout", "chw"),
    [
        ("1,3,224,224", "NCHW", (3, 224, 224)),
        ("?,3,96,128", "NCHW", (3, 96, 128)),
        ("-1x1x28x28", "NCHW", (1, 28, 28)),
        ("N,160,160,3", "NHWC", (3, 160, 160)),
        ("3,32,48", "NCHW", (3, 32, 48)),
        ("32,48,1", "NHWC", (1, 32, 48)),
        ("96x128", "NCHW", (3, 96, 128)),
        ([1, 3, 64, 64], "NCHW", (3, 64, 64)),
    ],
)
def test_parse_shape(text: str, layout: str, chw: tuple[int, int, int]) -> None:
    assert parse_shape(text, layout) == chw


@pytest.mark.parametrize(
    ("text", "layout", "match"),
    [
        ("1,224,224,3", "NCHW", r"224 channels in NCHW.*--layout NHWC"),
        ("1,3,224", "NHWC", "1 or 3"),
        ("1,3,a,224", "NCHW", "'a' is not a whole number"),
        ("1,2,3,4,5", "NCHW", "got 5 dimension"),
        ("1,3,0,224", "NCHW", "positive"),
        ("1,3,224,224", "NCWH", "NCHW or NHWC"),
    ],
)
def test_parse_shape_errors(text: str, layout: str, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        parse_shape(text, layout)


def test_parse_numbers() -> None:
    assert parse_numbers("1, 2 ,3", "--mean") == (1.0, 2.0, 3.0)
    assert parse_numbers([0.5, "1/2"], "--std") == (0.5, 0.5)
    for bad in ("x", "1/0", "nan", "", "inf"):
        with pytest.raises(ValidationError, match="--mean"):
            parse_numbers(bad, "--mean")


def test_from_options_over_a_base() -> None:
    base = InputSpec.imagenet()
    same = InputSpec.from_options(base)
    assert same == base
    s = InputSpec.from_options(base, input_shape="1,3,160,160")
    assert s.shape == (3, 160, 160) and s.mean == base.mean and s.resize == 183
    s = InputSpec.from_options(base, mean="0.485,0.456,0.406", std="0.229,0.224,0.225", units="0-1")
    assert s.mean == pytest.approx(base.mean) and s.std == pytest.approx(base.std)
    s = InputSpec.from_options(base, scale="1/127.5", mean="127.5")
    assert s.std == (127.5,) * 3 and s.mean == (127.5,) * 3
    s = InputSpec.from_options(base, input_shape="1,1,28,28")
    assert s.color == "L" and s.mean == (0.0,) and s.std == (1.0,)
    s = InputSpec.from_options(base, color="bgr", resize=240, interpolation="BICUBIC")
    assert (s.color, s.resize, s.interpolation) == ("BGR", 240, "bicubic")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"std": "0.229,0.224,0.225"}, "look like 0-1 values.*--units 0-1"),
        ({"scale": "1/255", "std": "1"}, "either --scale or --std"),
        ({"mean": "1,2"}, "1 or 3 values"),
        ({"scale": "-1"}, "positive"),
        ({"units": "0-100"}, "0-255 or 0-1"),
        ({"color": "CMYK"}, "RGB, BGR, L"),
        ({"input_shape": "1,1,8,8", "color": "RGB"}, "does not fit 1 channel"),
        ({"interpolation": "cubic"}, "bilinear, bicubic"),
        ({"resize": "big"}, "--resize needs a whole number"),
        ({"resize": 0}, "resize must be"),
        ({"input_shape": "1,3,100000,8"}, "<= 8192"),
        ({"shape": "1,3,8,8"}, r"unknown input option\(s\) \['shape'\]"),
    ],
)
def test_from_options_errors(options: dict[str, object], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        InputSpec.from_options(InputSpec.imagenet(), **options)


def test_nhwc_datasets_load_the_model_layout(tmp_path: Path) -> None:
    spec = InputSpec.from_options(input_shape="1,8,8,3", layout="NHWC", scale="1/255")
    assert spec.tensor_shape == (8, 8, 3)
    ds = open_dataset("synthetic:4", spec)
    x = ds.load([0, 1])
    assert x.shape == (2, 8, 8, 3) and x.min() >= 0.0 and x.max() <= 1.0
    assert calibration_samples(ds, 3).shape == (3, 8, 8, 3)
    with pytest.raises(ValidationError, match=r"takes \(N, 8, 8, 3\) \(NHWC\)"):
        validate_batch(np.zeros((1, 3, 8, 8), np.float32), spec)
    # the same synthetic samples, transposed: layout changes the order, never the values
    nchw = open_dataset("synthetic:4", InputSpec.from_options(spec, layout="NCHW"))
    np.testing.assert_array_equal(nchw.load([0, 1]).transpose(0, 2, 3, 1), x)
    assert ds.identity != nchw.identity


def test_bgr_reverses_channels_before_normalising(tmp_path: Path) -> None:
    root = tmp_path / "d"
    root.mkdir()
    Image.new("RGB", (8, 8), (250, 120, 10)).save(root / "a.png")
    (root / "val_map.txt").write_text("a.png 0\n")
    rgb = InputSpec(shape=(3, 8, 8), mean=(0, 0, 0), std=(1, 1, 1), resize=8)
    bgr = InputSpec.from_options(rgb, color="BGR", mean="10,20,30")
    x_rgb = open_dataset(f"imagenet:{root}", rgb).load([0])[0, :, 0, 0]
    x_bgr = open_dataset(f"imagenet:{root}", bgr).load([0])[0, :, 0, 0]
    assert list(x_rgb) == [250, 120, 10]
    assert list(x_bgr) == [10 - 10, 120 - 20, 250 - 30]
    assert open_dataset("synthetic:1", bgr).identity != open_dataset("synthetic:1", rgb).identity


def test_default_identity_is_unchanged() -> None:
    # cache keys made before layout/colour order existed stay valid for NCHW RGB bilinear models
    ds = open_dataset("synthetic:2", InputSpec.imagenet(32))
    spec = ds.input_spec
    assert ds.identity == f"{ds.spec}|n=2|{spec.shape}|{spec.mean}|{spec.std}|{spec.resize}"
