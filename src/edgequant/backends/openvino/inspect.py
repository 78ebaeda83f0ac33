"""Reading an OpenVINO model back: executed precisions, weight bytes, the "why no speedup" report.

The CPU plugin decides per node what it really executes; that decision is only visible in the
*runtime* model of a compiled model (``compiled.get_runtime_model()``), whose nodes carry
``rt_info["layerType"]`` (e.g. ``Convolution``, ``FullyConnected``), ``rt_info["runtimePrecision"]``
(``u8``/``i8`` for integer kernels, ``f32``/``bf16``/``f16`` for float ones) and
``rt_info["originalLayersNames"]`` (the IR nodes fused into it). This module reads those, and the
IR itself, so :class:`~edgequant.backends.openvino.backend.OpenVinoBackend` can say what was executed
and why a convolution stayed in float.

No function here imports OpenVINO at module level; the objects passed in are OpenVINO's.

Example:
    >>> import openvino as ov                                       # doctest: +SKIP
    >>> compiled = ov.Core().compile_model("model.xml", "CPU")      # doctest: +SKIP
    >>> runtime_precisions(compiled)                                # doctest: +SKIP
    {'Convolution': {'u8': 53}, 'FullyConnected': {'u8': 1}, ...}
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from edgequant.backends.base import OpInfo

#: runtime-model layer types that are the heavy compute of a CNN
COMPUTE_LAYER_TYPES = ("Convolution", "Deconvolution", "FullyConnected", "MatMul")
#: IR op types that own a weight on input port 1
WEIGHTED_IR_TYPES = (
    "Convolution",
    "GroupConvolution",
    "ConvolutionBackpropData",
    "GroupConvolutionBackpropData",
    "MatMul",
)
INT_PRECISIONS = ("u8", "i8", "u4", "i4")
# IR ops a weight flows through between its Constant and the conv/matmul (decompression chains)
_WEIGHT_PATH_TYPES = (
    "Constant",
    "Convert",
    "Multiply",
    "Subtract",
    "Reshape",
    "FakeQuantize",
    "Transpose",
    "Unsqueeze",
    "Squeeze",
)


def _rt(node: Any, key: str) -> str:
    info = node.get_rt_info()
    if key not in info:
        return ""
    return str(info[key].astype(str))


def compute_precision(node: Any) -> str:
    """What a runtime-model node computes in: the kernel's suffix (``brgconv_avx512_I8`` → ``i8``,
    ``brgconv_avx512_1x1_bf16`` → ``bf16``), else its ``runtimePrecision``.

    ``runtimePrecision`` alone misleads: a conv with fp16-stored weights reports ``f16`` while its
    kernel decompresses them and computes in f32 on a CPU without FP16 arithmetic.
    """
    kernel = _rt(node, "primitiveType")
    suffix = kernel.rsplit("_", 1)[-1].lower() if "_" in kernel else ""
    if suffix in ("i8", "u8"):
        return "i8"
    if suffix in ("f32", "bf16", "f16", "i4", "u4"):
        return suffix
    prec = _rt(node, "runtimePrecision")
    return "i8" if prec == "u8" else prec


def runtime_precisions(compiled: Any) -> dict[str, dict[str, int]]:
    """``{layerType: {compute precision: count}}`` for the compute layers of a compiled model."""
    out: dict[str, Counter[str]] = {}
    for node in compiled.get_runtime_model().get_ordered_ops():
        kind = _rt(node, "layerType")
        if kind in COMPUTE_LAYER_TYPES:
            out.setdefault(kind, Counter())[compute_precision(node)] += 1
    return {k: dict(v) for k, v in out.items()}


def executed_precision(compiled: Any, hint: str) -> str:
    """One word for what the compute layers run in: ``i8`` when most of them run integer
    kernels, else the float precision the plugin chose (``f32``, ``bf16``, ``f16``).

    ``hint`` is the compiled model's INFERENCE_PRECISION_HINT, used when no compute layer exists.
    """
    counts: Counter[str] = Counter()
    for per_prec in runtime_precisions(compiled).values():
        counts.update(per_prec)
    if not counts:
        return hint
    n_int = sum(n for p, n in counts.items() if p in INT_PRECISIONS)
    if n_int * 2 >= sum(counts.values()):
        return "i8"
    floats = Counter({p: n for p, n in counts.items() if p not in INT_PRECISIONS})
    return floats.most_common(1)[0][0]


def precision_hint(compiled: Any) -> str:
    """The compiled model's INFERENCE_PRECISION_HINT as a short name (``f32``, ``bf16``, ``f16``)."""
    value = compiled.get_property("INFERENCE_PRECISION_HINT")
    return (
        str(getattr(value, "type_name", None) or value)
        .replace("float32", "f32")
        .replace("bfloat16", "bf16")
        .replace("float16", "f16")
    )


def upstream_constants(node: Any) -> list[Any]:
    """Constants feeding a weight input through decompression ops (Convert, Multiply, ...)."""
    found: list[Any] = []
    stack = [node]
    seen: set[str] = set()
    while stack:
        n = stack.pop()
        if n.get_friendly_name() in seen or n.get_type_name() not in _WEIGHT_PATH_TYPES:
            continue
        seen.add(n.get_friendly_name())
        if n.get_type_name() == "Constant":
            found.append(n)
            continue
        stack.extend(inp.get_source_output().get_node() for inp in n.inputs())
    return found


def weight_bytes(ir_model: Any) -> int:
    """Bytes of the weights of convolutions and matmuls in the IR, with their scales/zero points.

    This is what a quantized scheme shrinks; biases, BN constants and shapes are left out, so
    the ratio to fp32 is not diluted on tiny models.
    """
    total = 0
    counted: set[str] = set()
    for op in ir_model.get_ordered_ops():
        if op.get_type_name() not in WEIGHTED_IR_TYPES or op.get_input_size() < 2:
            continue
        src = op.input(1).get_source_output().get_node()
        for const in upstream_constants(src):
            name = const.get_friendly_name()
            if name not in counted:
                counted.add(name)
                total += int(const.get_byte_size())
    return total


def _has_fake_quantize_input(op: Any) -> bool:
    """True when the op's activation input comes (through reshapes) from a FakeQuantize."""
    n = op.input(0).get_source_output().get_node()
    for _ in range(4):
        if n.get_type_name() == "FakeQuantize":
            return True
        if n.get_type_name() not in ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Convert"):
            return False
        n = n.input(0).get_source_output().get_node()
    return False


def inspect_ops(ir_model: Any, compiled: Any, *, intent: str) -> tuple[list[OpInfo], list[str]]:
    """Per compute layer of the runtime model: its precision and, when float, why.

    ``intent`` is what the scheme meant: ``float``, ``weight-only`` (integer weights, float
    compute) or ``static`` (integer compute). Returns the ops and notes (e.g. fused layers).
    """
    ir_by_name = {op.get_friendly_name(): op for op in ir_model.get_ordered_ops()}
    ops: list[OpInfo] = []
    notes: list[str] = []
    fused = 0
    for node in compiled.get_runtime_model().get_ordered_ops():
        kind = _rt(node, "layerType")
        if kind not in COMPUTE_LAYER_TYPES:
            continue
        prec = compute_precision(node)
        stored = _rt(node, "runtimePrecision")
        originals = [n for n in _rt(node, "originalLayersNames").split(",") if n]
        ir_ops = [ir_by_name[n] for n in originals if n in ir_by_name]
        main = next((o for o in ir_ops if o.get_type_name() in WEIGHTED_IR_TYPES), None)
        op_type = main.get_type_name() if main is not None else kind
        if op_type == "GroupConvolution" and main is not None:
            # groups == channels is a depthwise conv: say so, it is the usual int8 trouble-maker
            shape = main.input(1).get_partial_shape()
            if shape.rank.is_static and shape[1].is_static and shape[1].get_length() == 1:
                op_type = "DepthwiseConvolution"
        if kind == "FullyConnected" and op_type == kind:
            op_type = "MatMul"
        if len(ir_ops) > 1:
            fused += 1
        if prec in INT_PRECISIONS:
            ops.append(
                OpInfo(
                    name=_readable_name(node.get_friendly_name(), originals),
                    op_type=op_type,
                    precision="int8" if prec.endswith("8") else "int4",
                )
            )
            continue
        weights = "" if stored in ("", prec) else f", weights stored {stored}"
        if intent == "float":
            reason = f"float scheme ({prec} kernel{weights})"
        elif intent == "weight-only":
            reason = f"weight-only scheme: {prec} kernel{weights}"
        elif main is not None and not _has_fake_quantize_input(main):
            reason = "no FakeQuantize before it: NNCF left it in float"
        else:
            reason = f"{prec} kernel ({_rt(node, 'primitiveType')}): the CPU plugin has no integer kernel for it here"
        ops.append(
            OpInfo(
                name=_readable_name(node.get_friendly_name(), originals),
                op_type=op_type,
                precision=_float_name(prec),
                reason=reason,
            )
        )
    if fused:
        notes.append(f"{fused} runtime layers fuse several IR ops (e.g. conv + bias + add + relu)")
    return ops, notes


def _readable_name(friendly: str, originals: list[str]) -> str:
    """The PyTorch module paths fused into a runtime layer (``layer1.0.bn1+layer1.0.relu``), or
    the runtime name when the IR kept none (BN folding renames convs to ``Multiply_123``)."""
    paths: list[str] = []
    for name in [friendly, *originals]:
        if name.startswith("__module."):
            path = name[len("__module.") :].split("/", 1)[0]
            if path and path not in paths:
                paths.append(path)
    return "+".join(paths) if paths else friendly


def _float_name(prec: str) -> str:
    return {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}.get(prec, prec or "unknown")
