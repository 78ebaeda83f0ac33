"""Graph analysis for the simulator and the transforms: tracing, activations, quantization points.

Which ops an integer runtime fuses into the producing conv (ReLU, ReLU6, clamp), which ops pass a
quantized tensor through unchanged (reshape, pooling, concatenation), and therefore which nodes'
outputs a runtime holds quantized.

Example:
    >>> import torch.nn as nn
    >>> gm = trace(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten()))
    >>> [n.name for n in quant_points(gm)]
    ['input_1', '_1']
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Collection, Iterator
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from edgequant.errors import ModelError

# zero padding included: 0.0 is exactly representable, so padded tensors stay on the grid
_PASSTHROUGH_MODULES = (
    nn.ZeroPad2d,
    nn.ConstantPad2d,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.Flatten,
    nn.Dropout,
    nn.Identity,
    nn.Unflatten,
)
_PASSTHROUGH_FUNCS: set[Any] = {
    F.pad,
    torch.flatten,
    torch.reshape,
    F.dropout,
    F.max_pool2d,
    getattr,
    operator.getitem,
    torch.squeeze,
    torch.unsqueeze,
    torch.permute,
    torch.transpose,
}
_PASSTHROUGH_METHODS = {
    "view",
    "reshape",
    "flatten",
    "size",
    "contiguous",
    "permute",
    "transpose",
    "squeeze",
    "unsqueeze",
    "dim",
    "chunk",
    "split",
}
_ACT_MODULES = (nn.ReLU, nn.ReLU6, nn.Hardtanh)
_ACT_FUNCS: set[Any] = {F.relu, torch.relu, F.relu6, F.hardtanh, torch.clamp, torch.clip}
_ACT_METHODS = {"relu", "relu_", "clamp", "clamp_", "clip"}


def trace(module: nn.Module) -> fx.GraphModule:
    """``torch.fx`` trace; a model that cannot be traced gets a clear one-line error."""
    try:
        gm = fx.symbolic_trace(module)
    except Exception as e:  # fx raises many types; condense to one line
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ModelError(
            f"cannot trace {type(module).__name__} with torch.fx ({msg}); the simulator and the "
            "transforms need a traceable model (no data-dependent control flow)"
        ) from None
    # string annotations (``from __future__ import annotations``) end up as str "types" that
    # make the GraphModule unpicklable; the types carry nothing we need
    for node in gm.graph.nodes:
        node.type = None
    gm.recompile()
    return gm


def node_module(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    if node.op == "call_module":
        return gm.get_submodule(str(node.target))
    return None


def node_is(
    gm: fx.GraphModule,
    node: fx.Node,
    modules: tuple[type[nn.Module], ...],
    funcs: Collection[Any] = (),
    methods: Collection[str] = (),
) -> bool:
    """Whether ``node`` calls a module of one of the ``modules`` types, one of ``funcs`` or a
    tensor method named in ``methods``.

    Example:
        >>> gm = trace(nn.Sequential(nn.ReLU()))
        >>> [node_is(gm, n, (nn.ReLU,)) for n in gm.graph.nodes]
        [False, True, False]
    """
    mod = node_module(gm, node)
    if mod is not None:
        return isinstance(mod, modules)
    if node.op == "call_function":
        return node.target in funcs
    return node.op == "call_method" and node.target in methods


def is_activation(gm: fx.GraphModule, node: fx.Node) -> bool:
    """ReLU / ReLU6 / Hardtanh / clamp: ops runtimes fuse into the producing conv."""
    return node_is(gm, node, _ACT_MODULES, _ACT_FUNCS, _ACT_METHODS)


def _is_passthrough(gm: fx.GraphModule, node: fx.Node) -> bool:
    return node_is(
        gm, node, _PASSTHROUGH_MODULES, _PASSTHROUGH_FUNCS, _PASSTHROUGH_METHODS
    ) or node.op in ("get_attr", "output")


def module_pairs(
    gm: fx.GraphModule,
    first: type[nn.Module],
    second: type[nn.Module],
    *,
    through: Callable[[fx.GraphModule, fx.Node], bool] | None = None,
) -> Iterator[tuple[str, str, Any, Any]]:
    """``(first name, second name, first, second)`` for each module call of type ``second`` fed
    by one of type ``first`` whose output nothing else uses — directly, or through single-use
    nodes that ``through`` accepts (a ReLU between two convs).

    Example:
        >>> gm = trace(nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 2, 1)))
        >>> [(a, b) for a, b, *_ in module_pairs(gm, nn.Conv2d, nn.Conv2d, through=is_activation)]
        [('0', '2')]
    """
    for node in gm.graph.nodes:
        consumer = node_module(gm, node)
        if not isinstance(consumer, second) or not node.args:
            continue
        src = node.args[0]
        while (
            through is not None
            and isinstance(src, fx.Node)
            and len(src.users) == 1
            and through(gm, src)
        ):
            src = src.args[0]
        if not isinstance(src, fx.Node) or len(src.users) != 1:
            continue
        producer = node_module(gm, src)
        if isinstance(producer, first):
            yield str(src.target), str(node.target), producer, consumer


def quant_points(gm: fx.GraphModule) -> list[fx.Node]:
    """Nodes whose output an integer runtime holds quantized (see the module docstring); the
    compute op that produces a graph output is not one of them (its result is returned float)."""
    points = []
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            points.append(node)
            continue
        if node.op not in ("call_module", "call_function", "call_method") or _is_passthrough(
            gm, node
        ):
            continue
        users = list(node.users)
        if len(users) == 1 and is_activation(gm, users[0]):
            continue  # the fused activation's output is the quantized tensor
        if users and all(u.op == "output" for u in users):
            # a graph output stays float: OpenVINO and PT2E hand the last layer's result back
            # dequantized from its accumulator, and edgequant builds ORT and LiteRT the same way
            # (rounding the logits to 8 bits alone cost ~0.5% top-1 agreement on ImageNet)
            continue
        points.append(node)
    return points


__all__ = ["is_activation", "module_pairs", "node_is", "node_module", "quant_points", "trace"]
