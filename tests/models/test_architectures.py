"""Zoo architectures: output shapes, and the structure every runtime's quantizer needs."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
import torch.nn as nn

from edgequant.models import get_entry, list_models

ZOO = [
    "mobilenet_v1",
    "mobilenet_v2",
    "resnet18",
    "resnet50",
    "vgg16",
    "vgg19",
    "densenet121",
    "efficientnet_lite0",
]
# 32x32 inputs keep the forward passes cheap: every architecture reaches a >= 1x1 feature map
# (VGG through its 7x7 adaptive pool)
SIZE = 32


def _build(name: str, num_classes: int = 7) -> nn.Module:
    torch.manual_seed(0)
    return get_entry(name).build(num_classes).eval()


def _build_meta(name: str, num_classes: int = 7) -> nn.Module:
    # structure-only checks run on the meta device: shapes propagate, no weights, no compute
    with torch.device("meta"):
        return get_entry(name).build(num_classes).eval()


def test_every_family_registers_its_models() -> None:
    names = {e.name for e in list_models()}
    assert set(ZOO) <= names
    for name in ZOO:
        entry = get_entry(name)
        assert entry.published is not None, name
        assert entry.input_spec.shape == (3, 224, 224), name


@pytest.mark.parametrize("name", ZOO)
def test_output_shape_and_finite(name: str) -> None:
    size = SIZE
    if name == "vgg19":  # same code path as vgg16, 143M parameters to initialise: shapes only
        with torch.no_grad():
            out = _build_meta(name)(torch.zeros(2, 3, size, size, device="meta"))
        assert out.shape == (2, 7)
        return
    net = _build(name)
    with torch.no_grad():
        out = net(torch.randn(2, 3, size, size))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ZOO)
def test_no_module_object_is_shared(name: str) -> None:
    # PT2E rejects a module object used at two places ("Input partition has more than one
    # output node"): every module must appear once in the tree and run at most once per forward
    net = _build_meta(name)
    ids = Counter(id(m) for _, m in net.named_modules(remove_duplicate=False))
    shared = [n for n, m in net.named_modules(remove_duplicate=False) if ids[id(m)] > 1]
    assert not shared, f"shared module objects: {shared[:5]}"

    calls: Counter[str] = Counter()
    leaves = [(n, m) for n, m in net.named_modules() if not list(m.children())]
    handles = [m.register_forward_hook(lambda mod, i, o, n=n: calls.update([n])) for n, m in leaves]
    size = SIZE
    with torch.no_grad():
        net(torch.zeros(1, 3, size, size, device="meta"))
    for h in handles:
        h.remove()
    twice = [n for n, c in calls.items() if c > 1]
    assert not twice, f"modules called more than once per forward: {twice[:5]}"


@pytest.mark.parametrize("name", ZOO)
def test_convs_are_plain_conv2d_with_explicit_padding(name: str) -> None:
    # a Conv2d subclass with its own forward (the EfficientNet package's Conv2dStaticSamePadding)
    # hides the conv from PT2E; "same" string padding is not accepted by every exporter
    net = _build_meta(name)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert convs
    for conv in convs:
        assert type(conv) is nn.Conv2d
        assert not isinstance(conv.padding, str)


def test_torchvision_key_layout() -> None:
    # the keys a torchvision checkpoint has (spot checks per family)
    expected = {
        "resnet50": [
            "conv1.weight",
            "layer1.0.downsample.0.weight",
            "layer4.2.bn3.running_var",
            "fc.weight",
        ],
        "resnet18": ["layer2.0.downsample.1.bias", "layer4.1.conv2.weight", "fc.bias"],
        "mobilenet_v2": [
            "features.0.0.weight",
            "features.1.conv.0.0.weight",
            "features.1.conv.1.weight",
            "features.2.conv.3.running_mean",
            "features.18.1.weight",
            "classifier.1.weight",
        ],
        "vgg16": [
            "features.0.weight",
            "features.28.bias",
            "classifier.0.weight",
            "classifier.6.weight",
        ],
        "vgg19": ["features.34.weight", "classifier.3.weight"],
        "densenet121": [
            "features.conv0.weight",
            "features.denseblock1.denselayer1.norm1.weight",
            "features.denseblock4.denselayer16.conv2.weight",
            "features.transition3.conv.weight",
            "features.norm5.running_var",
            "classifier.weight",
        ],
    }
    for name, keys in expected.items():
        with torch.device("meta"):
            sd = get_entry(name).build(1000).state_dict()
        missing = [k for k in keys if k not in sd]
        assert not missing, (name, missing)


def test_densenet_block_concat_matches_full_concat() -> None:
    # the running two-input concat is the same computation as torchvision's concat of all
    # earlier features
    net = _build("densenet121")
    block = net.features.denseblock1
    x = torch.randn(1, 64, 16, 16)
    with torch.no_grad():
        feats = [x]
        for layer in block.values():
            feats.append(layer(torch.cat(feats, 1)))
        reference = torch.cat(feats, 1)
        assert torch.equal(block(x), reference)


@pytest.mark.slow
def test_pt2e_quantizes_every_conv_of_efficientnet() -> None:
    # the reason for our own EfficientNet: with the package's conv subclass PT2E quantized none
    # of the convs; here the x86 PT2E quantizer must put every conv on dequantized int8 inputs
    pt2e = pytest.importorskip("torchao.quantization.pt2e.quantize_pt2e")
    xiq = pytest.importorskip("torchao.quantization.pt2e.quantizer.x86_inductor_quantizer")
    net = _build("efficientnet_lite0", 1000)
    x = torch.randn(1, 3, 64, 64)
    graph_module = torch.export.export(net, (x,)).module()
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
    prepared = pt2e.prepare_pt2e(graph_module, quantizer)
    prepared(x)
    converted = pt2e.convert_pt2e(prepared)
    convs = [
        n for n in converted.graph.nodes if n.op == "call_function" and "conv2d" in str(n.target)
    ]

    def dequantized(arg: object) -> bool:
        return "dequantize" in str(getattr(arg, "target", ""))

    quantized = [n for n in convs if dequantized(n.args[0]) and dequantized(n.args[1])]
    n_convs = sum(isinstance(m, nn.Conv2d) for m in net.modules())
    assert n_convs == 49
    assert len(quantized) == n_convs
