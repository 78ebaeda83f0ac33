"""Params/MACs by hooks: hand-checked small cases and the published figures of the zoo."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from edgequant.errors import ValidationError
from edgequant.models import count_params_macs, get_entry

# (params M, GMAC) at 224x224 from the papers / torchvision docs
PUBLISHED = {
    "resnet50": (25.56, 4.09),
    "resnet18": (11.69, 1.82),
    "mobilenet_v2": (3.50, 0.30),
    "mobilenet_v1": (4.23, 0.57),
    "vgg16": (138.36, 15.47),
    "vgg19": (143.67, 19.63),
    "densenet121": (7.98, 2.87),
    "efficientnet_lite0": (4.65, 0.39),
}


def test_counts_by_hand() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),  # 8x4x4 out, 27 MACs each
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),  # depthwise: 9 MACs per output
        nn.Flatten(),
        nn.Linear(128, 10),
    )
    params, macs = count_params_macs(net, (3, 8, 8))
    assert params == (3 * 8 * 9 + 8) + (8 * 9) + (128 * 10 + 10)
    assert macs == 128 * 27 + 128 * 9 + 10 * 128


def test_macs_are_per_sample_and_scale_with_resolution() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 1))
    _, one = count_params_macs(net, (1, 3, 8, 8))
    _, batch = count_params_macs(net, (5, 3, 8, 8))
    _, big = count_params_macs(net, (3, 16, 16))
    assert one == batch == 3 * 4 * 64
    assert big == 4 * one


def test_meta_device_counts_match_cpu() -> None:
    entry = get_entry("mobilenet_v2")
    cpu = count_params_macs(entry.build(10), (3, 96, 96))
    with torch.device("meta"):
        meta_net = entry.build(10)
    assert count_params_macs(meta_net, (3, 96, 96)) == cpu


def test_training_mode_is_restored() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    net.train()
    count_params_macs(net, (3, 4, 4))
    assert net.training


@pytest.mark.parametrize("shape", [(3, 8), (0, 3, 8, 8), (1, 1, 3, 8, 8)])
def test_bad_input_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValidationError, match="input_shape"):
        count_params_macs(nn.Conv2d(3, 4, 1), shape)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_figures_within_2_percent(name: str) -> None:
    entry = get_entry(name)
    assert entry.published == PUBLISHED[name]
    with torch.device("meta"):
        net = entry.build(1000)
    params, macs = count_params_macs(net, (3, 224, 224))
    pub_params, pub_gmac = PUBLISHED[name]
    assert params / 1e6 == pytest.approx(pub_params, rel=0.02)
    assert macs / 1e9 == pytest.approx(pub_gmac, rel=0.02)
