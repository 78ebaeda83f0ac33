"""Per-layer outputs of an ONNX Runtime artifact: extra graph outputs on the quantized tensors.

For each Conv/Gemm/MatMul of the QDQ file, the ``QuantizeLinear`` that consumes its output (the
fused ReLU/Clip already folded into its range by ORT's quantizer) becomes an extra graph output;
ORT still fuses the group into ``QLinearConv``/``QGemm`` (checked on the optimized graph: a Q
output that is a graph output does not block the fusion), so the uint8 tensor is the one the
runtime's integer kernel wrote. It is dequantized here with that Q's scale and zero point. A
conv left in float (no Q after it) is compared on its float output.

**Names**: ``torch.onnx.export`` names nodes by module scope, ``/layer1/layer1.0/conv1/Conv``;
the fp32 module name is rebuilt from the scope (``layer1.0.conv1``), see :func:`module_name`.

Example:
    >>> module_name("/layer1/layer1.0/conv1/Conv")
    'layer1.0.conv1'
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from edgequant.backends.artifact import Artifact
from edgequant.backends.base import Backend
from edgequant.backends.inspection import LayerOutputs
from edgequant.errors import ArtifactError, condense_error

_LAYER_OPS = {"Conv", "Gemm", "MatMul", "ConvInteger", "MatMulInteger"}


def module_name(node_name: str) -> str | None:
    """The module name a TorchScript-export node name carries, or None (no scope).

    Example:
        >>> module_name("/features/features.0/Conv"), module_name("/fc/Gemm"), module_name("Conv_3")
        ('features.0', 'fc', None)
    """
    parts = [p for p in node_name.split("/") if p]
    if len(parts) < 2:
        return None
    name = parts[0]
    for p in parts[1:-1]:
        name = p if p.startswith(name + ".") else f"{name}.{p}"
    return name


def arith_target() -> str:
    """MLAS's arithmetic on this CPU: its flat im2col pairing where pairs saturate, else exact."""
    from edgequant.hw.cpu import cpu_profile

    return "pmaddubsw-mlas" if cpu_profile().pair_saturation else "exact"


def _initializer(graph: Any, name: str) -> np.ndarray | None:
    from onnx import numpy_helper

    for t in graph.initializer:
        if t.name == name:
            return np.asarray(numpy_helper.to_array(t))
    return None


def _taps(graph: Any, wanted: set[str] | None) -> tuple[dict[str, tuple[str, Any]], list[str]]:
    """layer name → (tensor to expose, Q node or None); and the layer ops matched to nothing."""
    consumers: dict[str, list[Any]] = {}
    for n in graph.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
    taps: dict[str, tuple[str, Any]] = {}
    unmatched = []
    for n in graph.node:
        if n.op_type not in _LAYER_OPS:
            continue
        name = module_name(n.name)
        if name is None or (wanted is not None and name not in wanted):
            unmatched.append(n.name)
            continue
        out = n.output[0]
        users = consumers.get(out, [])
        q = users[0] if len(users) == 1 and users[0].op_type == "QuantizeLinear" else None
        taps[name] = (q.output[0], q) if q is not None else (out, None)
    return taps, unmatched


def layer_outputs(
    backend: Backend, artifact: Artifact, batch: np.ndarray, names: Iterable[str] | None = None
) -> LayerOutputs:
    """Each matched layer's tensor on ``batch`` as ORT computes it (see the module docstring);
    bound as ``OnnxRuntimeBackend.layer_outputs``."""
    import onnx

    from edgequant.backends.onnxruntime.session import make_session

    model = onnx.load(str(artifact.path))
    graph = model.graph
    wanted = set(names) if names is not None else None
    taps, unmatched = _taps(graph, wanted)
    existing = {o.name for o in graph.output}
    for tensor, _ in taps.values():
        if tensor not in existing:
            graph.output.append(onnx.ValueInfoProto(name=tensor))
    out = LayerOutputs(
        arith_target=arith_target(),
        unmatched=unmatched,
        notes=["ONNX Runtime: each layer's requantized uint8/int8 output (extra graph outputs)"],
    )
    with tempfile.TemporaryDirectory(prefix="eq-ort-debug-") as tmp:
        path = Path(tmp) / "debug.onnx"
        onnx.save(model, str(path))
        backend.require()
        sess = make_session(path, 1)
        order = [o.name for o in sess.get_outputs()]
        x = np.ascontiguousarray(batch, dtype=np.float32)
        try:
            values = dict(zip(order, sess.run(None, {sess.get_inputs()[0].name: x}), strict=True))
        except Exception as e:  # ORT's own exception types
            raise ArtifactError(
                f"ONNX Runtime failed on the debug graph: {condense_error(e)}"
            ) from None
    for name, (tensor, q) in taps.items():
        value = np.asarray(values[tensor])
        if q is not None:
            scale = _initializer(graph, q.input[1])
            zp = _initializer(graph, q.input[2]) if len(q.input) > 2 and q.input[2] else None
            value = (value.astype(np.float32) - (0.0 if zp is None else zp.astype(np.float32))) * (
                scale.astype(np.float32) if scale is not None else np.float32(1.0)
            )
        out[name] = value.astype(np.float32)
        out.sources[name] = next(
            n.name for n in graph.node if n.op_type in _LAYER_OPS and module_name(n.name) == name
        )
    return out


__all__ = ["arith_target", "layer_outputs", "module_name"]
