"""What ONNX Runtime really executes: the graph after its optimizations, op by op.

ORT fuses ``DequantizeLinear → Conv → QuantizeLinear`` into ``QLinearConv`` (int8) only where the
pattern matches; what is left as a float ``Conv`` between Q/DQ pairs is a fallback that costs
speed. :func:`classify_graph` names each Conv/Gemm's precision and, for float ones, the reason.

Example:
    >>> report = classify_graph(onnx.load("optimized.onnx").graph, artifact)   # doctest: +SKIP
    >>> report.summary()                                                        # doctest: +SKIP
    '53/53 convs in integer precision'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgequant.backends.base import Artifact, InspectReport, OpInfo
from edgequant.quant.scheme import Scheme

if TYPE_CHECKING:
    import onnx

_CONV_TYPES = {"Conv", "FusedConv", "QLinearConv", "ConvInteger", "ConvTranspose"}
_GEMM_TYPES = {
    "Gemm",
    "MatMul",
    "QGemm",
    "QLinearMatMul",
    "MatMulInteger",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
    "FusedMatMul",
    "MatMulNBits",
    "FusedGemm",
}
_INT_TYPES = {
    "QLinearConv",
    "ConvInteger",
    "QGemm",
    "QLinearMatMul",
    "MatMulInteger",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
    "MatMulNBits",
}


def classify_graph(graph: onnx.GraphProto, artifact: Artifact) -> InspectReport:
    from onnx import TensorProto

    scheme = artifact.scheme
    producers = {o: n for n in graph.node for o in n.output}
    inits = {i.name: i for i in graph.initializer}
    report = InspectReport(
        artifact=str(artifact.path), backend=artifact.backend, scheme=scheme.name
    )
    for node in graph.node:
        if node.op_type not in _CONV_TYPES | _GEMM_TYPES:
            continue
        name = node.name or node.output[0]
        op = (
            node.op_type
            if node.domain in ("", "ai.onnx")
            else f"{node.domain.split('.')[-1]}.{node.op_type}"
        )
        if node.op_type in _INT_TYPES:
            prec = "int8" if node.op_type not in ("MatMulNBits",) else "int4"
            report.ops.append(OpInfo(name=name, op_type=op, precision=prec))
            continue
        src = [producers.get(i) for i in node.input[:2]]
        dq = [p is not None and p.op_type == "DequantizeLinear" for p in src]
        weight = inits.get(node.input[1]) if len(node.input) > 1 else None
        prec = "fp16" if weight is not None and weight.data_type == TensorProto.FLOAT16 else "fp32"
        if scheme.is_float:
            reason = (
                "no fp16 Conv kernel in ORT's CPU provider: fp16 weights are cast to fp32 at load"
                if scheme.float_dtype == "fp16" and prec == "fp32"
                else f"{scheme.name} scheme"
            )
        elif scheme.is_weight_only:
            reason = "weight-only: integer weights dequantized to float at run time (by design)"
        elif dq[0] and len(dq) > 1 and dq[1]:
            reason = (
                f"QDQ pair left around float {node.op_type} after graph optimization "
                "(no int8 kernel matched)"
            )
        elif len(dq) > 1 and dq[1]:
            reason = "input activation not quantized (no Q/DQ on its input), so no int8 kernel"
        else:
            reason = "not quantized by the quantizer (op excluded or its pattern unsupported)"
        report.ops.append(OpInfo(name=name, op_type=op, precision=prec, reason=reason))
    qdq = sum(
        1
        for n in graph.node
        if n.op_type in ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")
    )
    if qdq and not scheme.is_float:
        report.notes.append(
            f"{qdq} (De)QuantizeLinear nodes remain after optimization (each a float<->int conversion)"
        )
    if scheme.is_dynamic:
        report.notes.append(
            "dynamic: activations are quantized at run time per batch (DynamicQuantizeLinear)"
        )
    from edgequant.backends.int8_cpu import inspect_note

    cpu_note = inspect_note(artifact.metadata)
    if cpu_note:
        report.notes.append(cpu_note)
    return report


def executed_precision(scheme: Scheme, report: InspectReport) -> str:
    convs = report.convs or report.ops
    if not convs:
        return scheme.float_dtype
    ints = [o for o in convs if o.precision.startswith("int")]
    if not ints:
        return "fp16" if all(o.precision == "fp16" for o in convs) else "fp32"
    if len(ints) == len(convs):
        return "int8"
    return f"mixed: int8 {len(ints)}/{len(convs)} convs, rest fp32"


__all__ = ["classify_graph", "executed_precision"]
