"""Per-layer outputs of a PyTorch PT2E artifact: its converted program's nodes, run eagerly.

The artifact's ``program.pt2`` (the PT2E-converted ``torch.export`` program: ``quantize`` /
``dequantize`` ops around ``aten.conv2d``/``aten.linear``) is loaded and run by a
``torch.fx.Interpreter`` that records, for each conv/linear, the tensor after its fused
activation and its ``quantize_per_tensor`` → ``dequantize_per_tensor`` pair (the int8 grid the
next layer reads), or its float output where no quantizer follows (a conv fused with an add).

This is the program's *reference* semantics (fp32 math on dequantized int8 values: exact
integer products), not the oneDNN kernels the AOTInductor package calls: on a CPU whose oneDNN
INT8 class saturates int16 pair sums (AVX2, AVX-512 without VNNI) the compiled package can be
worse than this view; the simulator's prediction is then given for oneDNN's class, see
:func:`arith_target`.

**Names**: every node carries ``nn_module_stack``; its innermost entry is the fp32 module's name.

Example:
    >>> arith_target() in ("exact", "pmaddubsw")
    True
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from edgequant.backends.artifact import Artifact
from edgequant.backends.base import Backend
from edgequant.backends.inspection import LayerOutputs, match_layers
from edgequant.backends.pytorch.trust import load_program

_LAYERS = ("aten.conv2d", "aten.convolution", "aten.linear", "aten.addmm")
_ACTS = ("aten.relu", "aten.relu_", "aten.hardtanh", "aten.hardtanh_", "aten.clamp")


def arith_target() -> str:
    """The arithmetic of the eager program: exact (it multiplies dequantized values in fp32)."""
    return "exact"


def _is(node: Any, prefixes: tuple[str, ...]) -> bool:
    return node.op == "call_function" and str(node.target).startswith(prefixes)


def _module_of(node: Any) -> str | None:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return None
    path = str(list(stack.values())[-1][0])
    return path or None


def _tap(node: Any) -> Any:
    """The node whose output is compared for a conv/linear node (see the module docstring)."""
    end = node
    users = list(end.users)
    if len(users) == 1 and _is(users[0], _ACTS):
        end, users = users[0], list(users[0].users)
    if len(users) == 1 and "quantize_per_tensor" in str(users[0].target):
        deq = [u for u in users[0].users if "dequantize" in str(u.target)]
        if deq:
            return deq[0]
    return end


def layer_outputs(
    backend: Backend, artifact: Artifact, batch: np.ndarray, names: Iterable[str] | None = None
) -> LayerOutputs:
    """Each matched layer's tensor on ``batch`` from the eager PT2E program (module docstring);
    bound as ``PyTorchBackend.layer_outputs``."""
    import torch
    import torch.fx as fx

    backend.require()
    gm = load_program(artifact).module()  # refuses an artifact not signed here
    layers = ((n.name, [_module_of(n)], (n, _tap(n))) for n in gm.graph.nodes if _is(n, _LAYERS))
    taps, unmatched = match_layers(layers, names)
    want = {t.name: name for name, (_, t) in taps.items()}
    got: dict[str, np.ndarray] = {}

    class _Grab(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            v = super().run_node(n)
            if n.name in want and isinstance(v, torch.Tensor):
                got[want[n.name]] = v.detach().float().numpy().copy()
            return v

    with torch.no_grad():
        _Grab(gm).run(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)))
    out = LayerOutputs(
        arith_target=arith_target(),
        unmatched=unmatched,
        notes=[
            "PyTorch: the PT2E program's nodes run eagerly (reference int8 semantics, exact "
            "products), not the AOTInductor package's oneDNN kernels"
        ],
    )
    for name, (node, _) in taps.items():
        if name in got:
            out[name] = got[name]
            out.sources[name] = node.name
    return out


__all__ = ["arith_target", "layer_outputs"]
