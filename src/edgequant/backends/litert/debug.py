"""Per-layer outputs of a LiteRT artifact: an interpreter that preserves all tensors.

The ``.tflite`` file is loaded with ``experimental_preserve_all_tensors=True`` and run one sample
at a time; the output tensor of each ``CONV_2D``/``DEPTHWISE_CONV_2D``/``FULLY_CONNECTED`` (its
fused activation included: int8, requantized) is read back and dequantized with its own scale
and zero point, NHWC → NCHW. The XNNPACK delegate is turned off here (tensors inside a delegated
subgraph are not preserved), so the int8 kernels are TFLite's builtin ones; XNNPACK's int8
arithmetic is exact on x86 too (it widens to int16 first), so the sim's prediction is the same.

**Names**: the converter names a tensor by the module scopes it came from,
``pkg.Net/torch.nn.modules.container.Sequential_features/torch.nn.modules.conv.Conv2d_0;1``, fused
ops joined by ``;;``; each scope is ``<class>_<attribute>``, see :func:`module_names`.

Example:
    >>> module_names("m.Net/torch.nn.modules.activation.ReLU_relu1;;m.Net/torch.nn.modules.conv.Conv2d_conv1;1")
    ['relu1', 'conv1']
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import numpy as np

from edgequant.backends.artifact import Artifact
from edgequant.backends.base import Backend
from edgequant.backends.inspection import LayerOutputs, match_layers
from edgequant.errors import ArtifactError, condense_error

_LAYER_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}


#: ``<dotted module path>.<Class>_<attribute>``: the class name starts upper case, has no "_"
_SCOPE_RE = re.compile(r"^(?:[A-Za-z_]\w*\.)*[A-Z][A-Za-z0-9]*_(.+)$")


def _attribute(scope: str) -> str:
    """``torch.nn.modules.conv.Conv2d__conv_stem`` → ``_conv_stem``."""
    m = _SCOPE_RE.match(scope)
    return m.group(1) if m else scope


def module_names(tensor_name: str) -> list[str]:
    """Every module path a converter tensor name carries (fused ops give several).

    Example:
        >>> module_names("m.Net/torch.nn.modules.container.Sequential_features/torch.nn.modules.conv.Conv2d_features.0")
        ['features.0']
    """
    names = []
    for part in tensor_name.split(";;"):
        scopes = part.split(";")[0].split("/")[1:]
        if not scopes:
            continue
        name = _attribute(scopes[0])
        for s in scopes[1:]:
            a = _attribute(s)
            name = a if a.startswith(name + ".") else f"{name}.{a}"
        names.append(name)
    return names


def arith_target() -> str:
    """TFLite's and XNNPACK's int8 kernels on x86 and ARM: exact int32 accumulation."""
    return "exact"


def _dequantize(t: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    scale, zp = detail["quantization"]
    x = t.astype(np.float32)
    if scale:
        x = (x - np.float32(zp)) * np.float32(scale)
    return np.transpose(x, (0, 3, 1, 2)) if x.ndim == 4 else x


def _interpreter(backend: Backend, artifact: Artifact) -> Any:
    """The artifact's interpreter, every tensor kept, builtin kernels (the runtime required)."""
    backend.require()
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    path = artifact.path
    try:
        it = Interpreter(
            model_path=str(path),
            experimental_preserve_all_tensors=True,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        it.allocate_tensors()
    except Exception as e:  # the interpreter raises ValueError/RuntimeError
        raise ArtifactError(f"LiteRT cannot load {path}: {condense_error(e)}") from None
    return it


def layer_outputs(
    backend: Backend, artifact: Artifact, batch: np.ndarray, names: Iterable[str] | None = None
) -> LayerOutputs:
    """Each matched layer's tensor on ``batch`` as LiteRT computes it (module docstring);
    bound as ``LiteRtBackend.layer_outputs``."""
    it = _interpreter(backend, artifact)
    details = {d["index"]: d for d in it.get_tensor_details()}

    def layer(op: dict[str, Any]) -> tuple[str, list[str], tuple[int, str]]:
        index = int(op["outputs"][0])
        tname = str(details[index]["name"])
        weights = str(details[int(op["inputs"][1])]["name"]) if len(op["inputs"]) > 1 else ""
        cands = module_names(tname) + module_names(weights)  # the output may be the graph's
        return tname, cands, (index, f"{op['op_name']} {tname.split(';;')[-1].split('/')[-1]}")

    ops = it._get_ops_details()
    taps, unmatched = match_layers((layer(op) for op in ops if op["op_name"] in _LAYER_OPS), names)
    inp = it.get_input_details()[0]
    rows: dict[str, list[np.ndarray]] = {n: [] for n in taps}
    for sample in np.ascontiguousarray(batch, dtype=np.float32):
        x = sample[None]
        scale, zp = inp["quantization"]
        if np.dtype(inp["dtype"]) != np.float32 and scale:
            info = np.iinfo(inp["dtype"])
            x = np.clip(np.round(x / scale) + zp, info.min, info.max).astype(inp["dtype"])
        it.set_tensor(inp["index"], x.reshape(inp["shape"]))
        it.invoke()
        for name, (index, _) in taps.items():
            rows[name].append(_dequantize(it.get_tensor(index), details[index]))
    out = LayerOutputs(
        arith_target=arith_target(),
        unmatched=unmatched,
        notes=[
            "LiteRT: each layer's int8 output (preserved tensors; builtin kernels, no delegate)"
        ],
    )
    for name, (_, tname) in taps.items():
        out[name] = np.concatenate(rows[name])
        out.sources[name] = tname
    return out


__all__ = ["arith_target", "layer_outputs", "module_names"]
