"""Cross-layer equalization (Nagel et al., "Data-Free Quantization", ICCV 2019).

For ``conv1 → act → conv2`` where ``act`` is positively homogeneous (``relu(x/s)·s = relu(x)``
for ``s > 0``), output channel ``i`` of conv1 can be divided by ``s_i`` and input channel ``i``
of conv2 multiplied by it without changing the function. Choosing
``s_i = √(r1_i / r2_i)`` (``r1_i`` = range of conv1's output channel i, ``r2_i`` = range of
conv2's input channel i) makes both ranges ``√(r1_i r2_i)``: per-tensor (and per-channel) weight
quantization then wastes far less of its grid on a few wide channels — the failure mode of
depthwise-separable nets (MobileNet, EfficientNet-Lite), whose depthwise channels differ by
orders of magnitude after BN folding.

Pairs handled: conv → [ReLU | nothing] → conv, where conv2 is ungrouped or depthwise (a
depthwise conv1 → pointwise conv2, and pointwise → depthwise, cover the separable blocks), each
intermediate tensor used by nothing else. Chains are equalized by sweeping all pairs a few times.

**ReLU6 is not positively homogeneous** (``relu6(x/s)·s`` clips at ``6s``), so scaling through it
changes the model. We follow the paper's exact variant: pairs joined by ReLU6 / Hardtanh are
skipped, and the transform stays exactly equivalent (tested to 1e-4). (The paper's MobileNetV2
results replace ReLU6 with ReLU first; that changes the model, so we do not do it silently.)
Run BN folding first — :func:`equalize` does it.

Example:
    >>> import torch, torch.nn as nn
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 4, 1)).eval()
    >>> eq, pairs = equalize(net)
    >>> pairs
    [('0', '2')]
    >>> x = torch.randn(2, 3, 4, 4)
    >>> bool(torch.allclose(net(x), eq(x), atol=1e-5))
    True
"""

from __future__ import annotations

import torch
import torch.nn as nn

from edgequant.quant.bn_fold import fold_batchnorm
from edgequant.quant.graph import module_pairs, node_is, trace

_HOMOGENEOUS = (nn.ReLU, nn.Identity)


def _is_relu(gm: torch.fx.GraphModule, node: torch.fx.Node) -> bool:
    return node_is(gm, node, _HOMOGENEOUS, (torch.relu, nn.functional.relu), ("relu", "relu_"))


def equalizable_pairs(module: nn.Module) -> list[tuple[str, str]]:
    """``(conv1, conv2)`` names joined by ReLU/identity only, each tensor used once."""
    gm = trace(module)
    pairs = []
    for a, b, c1, c2 in module_pairs(gm, nn.Conv2d, nn.Conv2d, through=_is_relu):
        depthwise = c2.groups == c2.in_channels == c2.out_channels
        if c1.out_channels == c2.in_channels and (c2.groups == 1 or depthwise):
            pairs.append((a, b))
    return pairs


def _equalize_pair(c1: nn.Conv2d, c2: nn.Conv2d) -> float:
    """Rescale one pair in place; returns the largest relative change of a scale factor."""
    with torch.no_grad():
        r1 = c1.weight.abs().reshape(c1.out_channels, -1).amax(1)
        if c2.groups == 1:
            r2 = c2.weight.abs().transpose(0, 1).reshape(c2.in_channels, -1).amax(1)
        else:  # depthwise: input channel i is output channel i
            r2 = c2.weight.abs().reshape(c2.out_channels, -1).amax(1)
        ok = (r1 > 0) & (r2 > 0)
        s = torch.where(
            ok, torch.sqrt(r1 / torch.where(ok, r2, torch.ones_like(r2))), torch.ones_like(r1)
        )
        c1.weight.div_(s.reshape(-1, 1, 1, 1))
        if c1.bias is not None:
            c1.bias.div_(s)
        if c2.groups == 1:
            c2.weight.mul_(s.reshape(1, -1, 1, 1))
        else:
            c2.weight.mul_(s.reshape(-1, 1, 1, 1))
        return float((s - 1).abs().max()) if s.numel() else 0.0


def equalize(
    module: nn.Module, *, iterations: int = 20, tol: float = 1e-4
) -> tuple[nn.Module, list[tuple[str, str]]]:
    """A BN-folded, equalized copy of ``module`` (exactly equivalent) and the pairs it scaled."""
    out, _ = fold_batchnorm(module)
    pairs = equalizable_pairs(out)
    for _ in range(iterations):
        change = 0.0
        for a, b in pairs:
            change = max(change, _equalize_pair(out.get_submodule(a), out.get_submodule(b)))  # type: ignore[arg-type]
        if change < tol:
            break
    return out, pairs


__all__ = ["equalizable_pairs", "equalize"]
