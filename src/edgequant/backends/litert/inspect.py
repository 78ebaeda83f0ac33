"""Read a .tflite flatbuffer: which ops run in integer precision, which in float, and why.

The interpreter is opened without the default delegates so its op list is the flatbuffer's
own (XNNPACK would otherwise fold everything into one DELEGATE node). An op computes in int8
when its activation input is int8; a float op is explained by what feeds it: a DEQUANTIZE on
the weights (weight-only), float weights (not quantized by the recipe), or a float activation
next to int8 weights (dynamic range: quantized at run time, which XNNPACK runs in integer).

Example:
    >>> report = inspect_tflite(Path("model.tflite"), backend="litert", scheme="w8a8")  # doctest: +SKIP
    >>> report.summary()                                                                # doctest: +SKIP
    '4/4 convs in integer precision'
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgequant.backends.base import InspectReport, OpInfo
from edgequant.backends.litert.config import WEIGHT_OPS
from edgequant.errors import ArtifactError, condense_error
from edgequant.hw.cpu import PAIR_SATURATING, cpu_flags, cpu_profile
from edgequant.quant.scheme import Scheme

_NAMES = {
    "int8": "int8",
    "uint8": "uint8",
    "int16": "int16",
    "int32": "int32",
    "float32": "fp32",
    "float16": "fp16",
    "int4": "int4",
}


def _interpreter(path: Path) -> Any:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    try:
        # no allocate_tensors(): reading the graph needs no kernels, and the reference kernels
        # refuse some models XNNPACK runs fine (e.g. degenerate scales of random weights)
        it = Interpreter(
            model_path=str(path),
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
    except (ValueError, RuntimeError) as e:
        raise ArtifactError(
            f"LiteRT cannot read {path}: {condense_error(e)}; delete it and rebuild"
        ) from None
    return it


def _dtype(detail: dict[str, Any]) -> str:
    name = np.dtype(detail["dtype"]).name
    return _NAMES.get(name, name)


def _read_model(source: Path | bytes) -> Any:
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as fb

    data = source.read_bytes() if isinstance(source, Path) else source
    try:
        return fb.read_model(bytearray(data))
    except Exception as e:  # flatbuffers raises assorted errors on a damaged file
        raise ArtifactError(
            f"{source if isinstance(source, Path) else 'model'} is not a valid .tflite "
            f"({condense_error(e)}); delete it and rebuild"
        ) from None


def _type_name(code: int) -> str:
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as fb

    name = str(fb.TENSOR_CODE_TO_TYPE[code]).lower()
    return _NAMES.get(name, name)


def weight_bytes(source: Path | bytes) -> tuple[int, dict[str, int]]:
    """Bytes of constant tensors (weights, biases, folded constants), total and by dtype.

    Example:
        >>> weight_bytes(Path("model.tflite"))   # doctest: +SKIP
        (25933312, {'int8': 25500000, 'int32': 433312})
    """
    model = _read_model(source)
    total = 0
    by_type: Counter[str] = Counter()
    seen: set[int] = set()
    for sg in model.subgraphs:
        for t in sg.tensors:
            buf = model.buffers[t.buffer]
            n = (
                int(buf.size)
                if getattr(buf, "offset", 0)
                else (0 if buf.data is None else len(buf.data))
            )
            if n == 0 or t.buffer in seen:
                continue
            seen.add(t.buffer)
            total += n
            by_type[_type_name(t.type)] += n
    return total, dict(by_type)


def tensor_summary(path: Path) -> dict[str, Any]:
    """I/O dtypes and quantization, weight bytes by dtype: the metadata a built artifact records.

    Example:
        >>> tensor_summary(Path("model.tflite"))["input_dtype"]   # doctest: +SKIP
        'int8'
    """
    it = _interpreter(path)
    inp, outputs = it.get_input_details()[0], it.get_output_details()
    out = outputs[0]  # the one the session returns
    total, by_type = weight_bytes(path)

    def quant(d: dict[str, Any]) -> dict[str, float] | None:
        scale, zero = d["quantization"]
        return {"scale": float(scale), "zero_point": int(zero)} if scale else None

    return {
        "input_dtype": _dtype(inp),
        "output_dtype": _dtype(out),
        "input_quantization": quant(inp),
        "output_quantization": quant(out),
        "input_shape": [int(v) for v in inp["shape"]],
        "weight_bytes": total,
        "weight_bytes_by_dtype": by_type,
        **({"outputs": [str(d["name"]) for d in outputs]} if len(outputs) > 1 else {}),
    }


def inspect_tflite(path: Path, *, backend: str, scheme: str) -> InspectReport:
    """Per-op precision of a .tflite with the reason for every op that stays float."""
    it = _interpreter(path)
    tensors = {int(d["index"]): d for d in it.get_tensor_details()}
    # the interpreter shows int4 tensors as int8; the flatbuffer has the stored type
    stored = [_type_name(t.type) for t in _read_model(path).subgraphs[0].tensors]
    ops = it._get_ops_details()  # private, but the only API listing a model's ops
    producer = {int(o): op for op in ops for o in op["outputs"]}
    report = InspectReport(artifact=str(path), backend=backend, scheme=scheme)
    counts: Counter[str] = Counter()
    for op in ops:
        kind = str(op["op_name"])
        counts[kind] += 1
        ins = [int(i) for i in op["inputs"] if int(i) >= 0]
        if not ins:
            continue
        act = _dtype(tensors[ins[0]])
        if kind in WEIGHT_OPS and len(ins) > 1:
            w = ins[1]
            wdt, feeder = stored[w], producer.get(w)
            if act in ("int8", "uint8", "int16"):
                prec, reason = (act if wdt == act else f"{act}x{wdt}"), ""
                if act == "int16":
                    reason = "16-bit activations (slow reference kernels)"
            elif feeder is not None and feeder["op_name"] == "DEQUANTIZE":
                src = stored[int(feeder["inputs"][0])]
                prec, reason = (
                    "fp32",
                    f"DEQUANTIZE feeds it ({src} weights expanded to float"
                    + (": weight-only)" if src.startswith("int") else ")"),
                )
            elif wdt.startswith("int"):
                prec, reason = f"{wdt}-dynamic", ""
            else:
                prec, reason = (
                    act,
                    f"float input tensor and {wdt} weights (not quantized by the recipe)",
                )
        else:
            prec, reason = act, ""
        name = tensors[int(op["outputs"][0])]["name"] if len(op["outputs"]) else kind
        report.ops.append(OpInfo(name=str(name), op_type=kind, precision=prec, reason=reason))
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    report.notes.append(
        f"input {_dtype(inp)} {inp['shape'].tolist()}, output {_dtype(out)} {out['shape'].tolist()}"
    )
    report.notes.append("ops: " + ", ".join(f"{n} × {k}" for k, n in counts.most_common()))
    if counts.get("QUANTIZE") or counts.get("DEQUANTIZE"):
        report.notes.append(
            f"{counts.get('QUANTIZE', 0)} QUANTIZE / {counts.get('DEQUANTIZE', 0)} DEQUANTIZE ops convert "
            "between float and integer inside the graph"
        )
    dyn = sum(1 for o in report.ops if o.precision.endswith("-dynamic"))
    if dyn:
        report.notes.append(f"{dyn} ops quantize their float input at run time (dynamic range)")
    cls = cpu_profile().int8_class
    static = [o for o in report.ops if o.precision == "int8"]
    if static and cls in PAIR_SATURATING:
        from edgequant.backends.int8_table import class_config

        report.notes.append(class_config("litert", cls)["reason"])
    return report


def outputs_have_batch(it: Any, n: int) -> bool:
    """Whether every output of the allocated interpreter ``it`` has batch ``n``.

    A RESHAPE that bakes in batch 1 next to a -1 (BlazeFace's ``[1, -1, 16]``) resizes and
    allocates without complaint but folds the batch into another axis (and a CONCAT after it
    interleaves the samples): such a graph is not resizable even though allocation succeeded.

    Example:
        >>> outputs_have_batch(interpreter, 2)   # doctest: +SKIP
        False
    """
    return all(len(d["shape"]) > 0 and int(d["shape"][0]) == n for d in it.get_output_details())


def _batch_resizable(path: Path) -> bool:
    """Whether the model runs at batch 2 as well as 1 (XNNPACK re-plans the resized graph)."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        it = Interpreter(model_path=str(path), num_threads=1)
        shape = [int(d) for d in it.get_input_details()[0]["shape"]]
        it.resize_tensor_input(it.get_input_details()[0]["index"], [2, *shape[1:]])
        it.allocate_tensors()
    except (ValueError, RuntimeError):
        return False
    return outputs_have_batch(it, 2)


def _choice(what: str, choice: str, reason: str) -> dict[str, str]:
    return {"what": what, "choice": choice, "reason": reason}


def _batch_choice(resizable: bool) -> dict[str, str]:
    if resizable:
        return _choice(
            "batch",
            "converted at batch 1, resized at load",
            "the converter needs a static shape; resize_tensor_input serves other batch sizes",
        )
    return _choice(
        "batch",
        "fixed batch 1",
        "the graph bakes batch 1 into a RESHAPE (it refuses batch 2, or folds it into "
        "another axis); larger batches run one sample at a time",
    )


def _static_choices(vnni: bool) -> list[dict[str, str]]:
    from edgequant.backends.int8_table import class_config

    cls = cpu_profile().int8_class
    on_cpu = (
        " (VNNI dot products on this CPU)" if vnni else " (no VNNI on this CPU: smaller speed-up)"
    )
    return [
        _choice(
            "kernels",
            "static INT8, int8 I/O, XNNPACK QS8",
            "integer convs end to end is LiteRT's fast CPU path" + on_cpu,
        ),
        _choice(
            "int16 pair saturation",
            "no remedy needed",
            f"litert on {cls}: " + class_config("litert", cls)["reason"],
        ),
    ]


#: executed precision and the kernels' choice of the non-static schemes, by kind
_KERNELS = {
    "dynamic": (
        "i8-dynamic",
        "dynamic range (XNNPACK QD8)",
        "activations quantized per batch at run time; float I/O",
    ),
    "weight-only": (
        "f32",
        "DEQUANTIZE + fp32 convs",
        "weight-only: smaller file, integer weights expanded to fp32, fp32 compute",
    ),
    "fp16": (
        "f32",
        "fp16 weights, fp32 compute",
        "XNNPACK expands fp16 weights to fp32 at load; no fp16 arithmetic on CPU by default",
    ),
}


def _kernel_choices(scheme: Scheme, vnni: bool) -> tuple[str, list[dict[str, str]]]:
    """The executed precision of ``scheme`` and the kernel choices that explain it."""
    if scheme.is_static:
        return "i8", _static_choices(vnni)
    kinds = {
        "dynamic": scheme.is_dynamic,
        "weight-only": scheme.is_weight_only,
        "fp16": scheme.float_dtype == "fp16",
    }
    kind = next((k for k, applies in kinds.items() if applies), None)
    if kind is None:
        return "f32", []
    precision, choice, reason = _KERNELS[kind]
    return precision, [_choice("kernels", choice, reason)]


def describe(path: Path, scheme: Scheme) -> dict[str, Any]:
    """I/O dtypes, weight bytes, executed precision and the choices made, for artifact.json.

    Example:
        >>> describe(Path("model.tflite"), get_scheme("w8a8"))["executed_precision"]  # doctest: +SKIP
        'i8'
    """
    info = tensor_summary(path)
    resizable = _batch_resizable(path)
    flags = cpu_flags()
    vnni = "avx512_vnni" in flags or "avx_vnni" in flags
    precision, kernels = _kernel_choices(scheme, vnni)
    choices = [_batch_choice(resizable), *kernels]
    if scheme.weights is not None and scheme.weights.bits == 4:
        choices.append(
            _choice(
                "depthwise weights",
                "int8",
                "ai-edge-quantizer has no int4 depthwise kernel; CONV_2D/FULLY_CONNECTED get int4",
            )
        )
    report = inspect_tflite(path, backend="litert", scheme=scheme.name)
    return {
        **info,
        "executed_precision": precision,
        "batch_resizable": resizable,
        "choices": choices,
        "inspect_summary": report.summary(),
        "cpu_vnni": vnni,
    }


__all__ = ["inspect_tflite", "tensor_summary", "weight_bytes"]
