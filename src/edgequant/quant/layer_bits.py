"""Per-layer weight bit widths: which conv/linear gets which weight quantizer.

A scheme's ``layer_bits`` (``((selector, bits), ...)``) overrides the weight bits of the layers
a selector picks: ``first`` / ``last`` (the first / last conv or linear in execution order),
``depthwise`` (a conv with one input channel per group), or a glob on the module's qualified
name (:func:`fnmatch.fnmatchcase`). Later entries win. Everything else (symmetry, granularity)
stays the scheme's. One function decides, so the simulator, AdaRound/GPTQ/BRECQ's grids, bias
correction, QAT and each runtime's quantizer agree on every layer.

Example:
    >>> import torch.nn as nn
    >>> from edgequant.quant.scheme import get_scheme
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, groups=8), nn.Flatten(),
    ...                     nn.Linear(128, 10))
    >>> s = get_scheme({"base": "w4a8", "layer_bits": {"first": 8, "depthwise": 6}})
    >>> {n: q.bits for n, q in layer_weight_quants(net, s).items()}
    {'0': 8, '1': 6, '3': 4}
"""

from __future__ import annotations

import dataclasses
from fnmatch import fnmatchcase

import torch.nn as nn

from edgequant.errors import ValidationError
from edgequant.quant.graph import node_module, trace
from edgequant.quant.scheme import Scheme, TensorQuant


def weight_layers(module: nn.Module) -> list[str]:
    """The conv/linear module names in execution order (``torch.fx``), else registration order."""
    names = {n for n, m in module.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)}
    try:
        gm = trace(module)
    except Exception:  # untraceable: the runtimes still see the layers in this order
        return [n for n, m in module.named_modules() if n in names]
    order = [
        str(node.target)
        for node in gm.graph.nodes
        if isinstance(node_module(gm, node), nn.Conv2d | nn.Linear)
    ]
    seen = list(dict.fromkeys(n for n in order if n in names))
    return seen + [n for n in sorted(names) if n not in seen]


def is_depthwise(layer: nn.Module) -> bool:
    """A conv whose every group has one input channel (and more than one group)."""
    return isinstance(layer, nn.Conv2d) and layer.groups > 1 and layer.groups == layer.in_channels


def selected_bits(scheme: Scheme, names: list[str], depthwise: set[str]) -> dict[str, int]:
    """``{layer: bits}`` for the layers ``scheme.layer_bits`` changes (``names`` in execution
    order); a glob or selector that picks no layer is an error naming it.

    Example:
        >>> from edgequant.quant.scheme import get_scheme
        >>> s = get_scheme({"base": "w4a8", "layer_bits": {"last": 8, "b.*": 6}})
        >>> selected_bits(s, ["a.0", "b.1", "b.2"], set())
        {'b.1': 6, 'b.2': 6}
    """
    out: dict[str, int] = {}
    for selector, bits in scheme.layer_bits:
        if selector == "first":
            picked = names[:1]
        elif selector == "last":
            picked = names[-1:]
        elif selector == "depthwise":
            picked = [n for n in names if n in depthwise]
        else:
            picked = [n for n in names if fnmatchcase(n, selector)]
            if not picked:
                near = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
                raise ValidationError(
                    f"layer_bits selector {selector!r} matches no conv/linear layer "
                    f"(this model's are named like {near}); use first, last, depthwise or a "
                    "glob on those names"
                )
        for n in picked:
            out.pop(n, None)  # a later entry wins, and sits last
            out[n] = bits
    return out


def layer_weight_quants(module: nn.Module, scheme: Scheme) -> dict[str, TensorQuant]:
    """Every conv/linear's weight quantizer under ``scheme`` (its ``weights`` with the layer's
    bits). Empty when the scheme has no integer weights."""
    if scheme.weights is None:
        return {}
    if not scheme.layer_bits:  # no order needed: no trace
        return {
            n: scheme.weights
            for n, m in module.named_modules()
            if isinstance(m, nn.Conv2d | nn.Linear)
        }
    names = weight_layers(module)
    depthwise = {n for n in names if is_depthwise(module.get_submodule(n))}
    bits = selected_bits(scheme, names, depthwise)
    return {
        n: dataclasses.replace(scheme.weights, bits=bits[n]) if n in bits else scheme.weights
        for n in names
    }


def changed_bits(module: nn.Module, scheme: Scheme) -> dict[str, int]:
    """``{layer: bits}`` of the layers whose bits differ from the scheme's (for artifacts'
    metadata and the runtimes' per-layer configuration)."""
    if scheme.weights is None or not scheme.layer_bits:
        return {}
    base = scheme.weights.bits
    return {n: q.bits for n, q in layer_weight_quants(module, scheme).items() if q.bits != base}


__all__ = [
    "changed_bits",
    "is_depthwise",
    "layer_weight_quants",
    "selected_bits",
    "weight_layers",
]
