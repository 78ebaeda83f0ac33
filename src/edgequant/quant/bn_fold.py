"""Batch-norm folding: ``conv → bn`` becomes one conv with a bias (exact in fp32).

``bn(conv(x)) = γ (W x + b − μ) / √(σ² + ε) + β``, so with ``s = γ / √(σ² + ε)`` the folded conv
has ``W' = s·W`` (per output channel) and ``b' = s·(b − μ) + β``. The BN module is replaced by
``nn.Identity`` in a copy of the model, which keeps its class (and so stays picklable, exportable
and loadable like the original). The conv → bn pairs are found on the ``torch.fx`` graph, so a
conv whose output is also used elsewhere (before its BN) is left alone.

Example:
    >>> import torch, torch.nn as nn
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
    >>> folded, pairs = fold_batchnorm(net)
    >>> pairs, type(folded[1]).__name__
    ([('0', '1')], 'Identity')
    >>> x = torch.randn(2, 3, 8, 8)
    >>> bool(torch.allclose(net(x), folded(x), atol=1e-5))
    True
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from edgequant.quant.graph import module_pairs, trace


def conv_bn_pairs(module: nn.Module) -> list[tuple[str, str]]:
    """``(conv name, bn name)`` for every BatchNorm2d fed only by a Conv2d."""
    gm = trace(module)
    return [(conv, bn) for conv, bn, *_ in module_pairs(gm, nn.Conv2d, nn.BatchNorm2d)]


def fold_into(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold ``bn``'s affine transform and running statistics into ``conv`` in place."""
    with torch.no_grad():
        var = bn.running_var if bn.running_var is not None else torch.ones(bn.num_features)
        mean = bn.running_mean if bn.running_mean is not None else torch.zeros(bn.num_features)
        gamma = bn.weight if bn.weight is not None else torch.ones_like(var)
        beta = bn.bias if bn.bias is not None else torch.zeros_like(var)
        s = gamma / torch.sqrt(var + bn.eps)
        conv.weight.mul_(s.reshape(-1, *([1] * (conv.weight.dim() - 1))))
        b = conv.bias if conv.bias is not None else torch.zeros_like(mean)
        new_bias = (b - mean) * s + beta
        if conv.bias is None:
            conv.bias = nn.Parameter(new_bias)
        else:
            conv.bias.copy_(new_bias)


def fold_batchnorm(module: nn.Module) -> tuple[nn.Module, list[tuple[str, str]]]:
    """A copy of ``module`` (eval mode) with every conv → bn pair folded; and the pairs."""
    out = copy.deepcopy(module).eval()
    pairs = conv_bn_pairs(out)
    for conv_name, bn_name in pairs:
        conv = out.get_submodule(conv_name)
        bn = out.get_submodule(bn_name)
        fold_into(conv, bn)  # type: ignore[arg-type]
        parent_name, _, attr = bn_name.rpartition(".")
        parent = out.get_submodule(parent_name) if parent_name else out
        setattr(parent, attr, nn.Identity())
    return out, pairs


__all__ = ["conv_bn_pairs", "fold_batchnorm", "fold_into"]
