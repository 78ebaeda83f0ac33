"""Per-layer outputs of an OpenVINO artifact: model outputs added on intermediate nodes.

For each ``Convolution``/``GroupConvolution``/``MatMul`` of the IR, the tensor compared is found
by walking its single consumers: the bias / folded-BatchNorm ``Add``, a ``Relu``/``Clamp`` the CPU
plugin fuses, then the ``FakeQuantize`` NNCF put there (its output, already dequantized, is what
the next int8 layer reads). That output is added as a model output (``model.add_outputs``) and the
model compiled for the CPU as the artifact runs; the conv itself still runs on int8 inputs (its
input and weight FakeQuantize are untouched), only the requantized output is also materialized.

**Names**: OpenVINO's PyTorch frontend names ops ``__module.<module name>/aten::...``
(``__module.layer1.0.conv1/aten::_convolution/Convolution``). NNCF renames some convs
(``Multiply_3244``) when it compresses their weights; those are matched through their bias /
BatchNorm ``Add`` (``__module.bn1/aten::batch_norm/...``), reported under the BN module that was
folded into the conv (``layer_debug`` maps it back).

Example:
    >>> friendly_module("__module.layer1.0.conv1/aten::_convolution/Convolution")
    'layer1.0.conv1'
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import numpy as np

from edgequant.backends.artifact import Artifact
from edgequant.backends.base import Backend
from edgequant.backends.inspection import LayerOutputs, match_layers
from edgequant.errors import ArtifactError

_LAYER_OPS = {"Convolution", "GroupConvolution", "MatMul"}
_ACTIVATIONS = {"Relu", "Clamp"}
_MODULE_RE = re.compile(r"^__module\.([^/]+)/")


def friendly_module(name: str) -> str | None:
    """The PyTorch module name an OpenVINO friendly name starts with, or None.

    Example:
        >>> friendly_module("Multiply_3244") is None
        True
    """
    m = _MODULE_RE.match(name)
    return m.group(1) if m else None


def arith_target() -> str:
    """oneDNN's INT8 class here (``ONEDNN_MAX_CPU_ISA`` honoured)."""
    from edgequant.hw.cpu import onednn_int8_class

    return onednn_int8_class()


def _single_consumer(output: Any) -> Any:
    users = list(output.get_target_inputs())
    return users[0].get_node() if len(users) == 1 else None


def _tap(op: Any) -> tuple[Any, str | None]:
    """The output to expose for a layer op, and the module name its bias/BN ``Add`` carries."""
    out, alias = op.output(0), None
    nxt = _single_consumer(out)
    if nxt is not None and nxt.get_type_name() == "Add":
        alias = friendly_module(nxt.get_friendly_name())
        out, nxt = nxt.output(0), _single_consumer(nxt.output(0))
    if nxt is not None and nxt.get_type_name() in _ACTIVATIONS:
        out, nxt = nxt.output(0), _single_consumer(nxt.output(0))
    if nxt is not None and nxt.get_type_name() == "FakeQuantize":
        out = nxt.output(0)
    return out, alias


def op_modules(model: Any, bn_to_conv: dict[str, str] | None = None) -> dict[str, str]:
    """Each conv/linear op of an ``ov.Model`` → the PyTorch module it computes: its own name, or
    (where OpenVINO folded a BatchNorm into it and renamed it ``Multiply_…``) the conv the BN of
    its bias ``Add`` belonged to (``bn_to_conv``). Ops that name no module are left out.

    Example:
        >>> op_modules(ov_model, {"_bn0": "_conv_stem"})  # doctest: +SKIP
        {'Multiply_12325': '_conv_stem', ...}
    """
    names = bn_to_conv or {}
    out: dict[str, str] = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() not in _LAYER_OPS:
            continue
        fname = op.get_friendly_name()
        found = friendly_module(fname) or _tap(op)[1]
        if found is not None:
            out[fname] = names.get(found, found)
    return out


def layer_outputs(
    backend: Backend, artifact: Artifact, batch: np.ndarray, names: Iterable[str] | None = None
) -> LayerOutputs:
    """Each matched layer's tensor on ``batch`` as OpenVINO computes it (module docstring);
    bound as ``OpenVinoBackend.layer_outputs``."""
    from edgequant.backends.openvino.session import ov_error

    backend.require()
    core: Any = backend.core()  # type: ignore[attr-defined]
    model = core.read_model(str(artifact.path))

    def layer(op: Any) -> tuple[str, list[str | None], tuple[Any, str]]:
        out, alias = _tap(op)
        fname = op.get_friendly_name()
        return fname, [friendly_module(fname), alias], (out, fname)

    ops = model.get_ordered_ops()
    taps, unmatched = match_layers(
        (layer(op) for op in ops if op.get_type_name() in _LAYER_OPS), names
    )
    ports = model.add_outputs([out for out, _ in taps.values()]) if taps else []
    hint = artifact.metadata.get("inference_precision_hint") or "f32"
    config = {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": hint}
    try:
        compiled = core.compile_model(model, "CPU", config)
        result = compiled.create_infer_request().infer(
            {0: np.ascontiguousarray(batch, dtype=np.float32)}
        )
    except Exception as e:  # OpenVINO raises RuntimeError with banners
        raise ArtifactError(f"OpenVINO failed on the debug model: {ov_error(e)}") from None
    values = list(result.values())  # in the order of model.outputs
    index = {o.get_node().get_friendly_name(): i for i, o in enumerate(model.outputs)}
    out = LayerOutputs(
        arith_target=arith_target(),
        unmatched=unmatched,
        notes=["OpenVINO: each layer's output after bias/BN, fused activation and FakeQuantize"],
    )
    for port, (name, (_, fname)) in zip(ports, taps.items(), strict=True):
        out[name] = np.asarray(values[index[port.get_node().get_friendly_name()]], np.float32)
        out.sources[name] = fname if friendly_module(fname) == name else f"{fname} via {name}"
    return out


__all__ = ["arith_target", "friendly_module", "layer_outputs", "op_modules"]
