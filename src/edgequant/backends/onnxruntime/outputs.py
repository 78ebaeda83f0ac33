"""Float graph outputs for ORT's QDQ models: drop the QuantizeLinear → DequantizeLinear pair that
``quantize_static`` puts in front of each graph output.

ONNX Runtime's quantizer rounds every quantized op's output to 8 bits, the last one included, so
a classifier's logits come back on a 256-step grid: on EfficientNet-Lite0 (Intel Xeon, VNNI) that
alone turned 1% of ImageNet images into ties and cost ~0.5% top-1 agreement with fp32. OpenVINO (NNCF) and PT2E
return the last layer's result in float; this pass makes ORT models do the same (the last
Conv/Gemm reads dequantized inputs and writes float, a negligible share of the compute).

Example:
    >>> import onnx
    >>> from onnx import helper as h, TensorProto as T
    >>> g = h.make_graph(
    ...     [h.make_node("Gemm", ["x", "w"], ["y_q_in"]),
    ...      h.make_node("QuantizeLinear", ["y_q_in", "s", "z"], ["y_q"]),
    ...      h.make_node("DequantizeLinear", ["y_q", "s", "z"], ["y"])],
    ...     "g", [h.make_tensor_value_info("x", T.FLOAT, [1, 2])],
    ...     [h.make_tensor_value_info("y", T.FLOAT, [1, 2])])
    >>> m = h.make_model(g)
    >>> float_outputs(m), [n.op_type for n in m.graph.node], m.graph.node[0].output[0]
    (['y'], ['Gemm'], 'y')
"""

from __future__ import annotations

from typing import Any


def float_outputs(model: Any) -> list[str]:
    """Remove the Q→DQ pair right before each graph output of ``model`` (an ``onnx.ModelProto``,
    edited in place) where the quantized tensor feeds nothing else; returns the outputs made
    float. Initializers the pair used are left (ORT drops unused ones at load)."""
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    outputs = {o.name for o in graph.output}
    done, drop = [], []
    for output in graph.output:
        dq = producer.get(output.name)
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        q = producer.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear" or consumers.get(dq.input[0], 0) != 1:
            continue
        source = producer.get(q.input[0])
        if source is None or consumers.get(q.input[0], 0) != 1 or q.input[0] in outputs:
            continue
        # the op that fed Q now writes the graph output itself
        source.output[list(source.output).index(q.input[0])] = output.name
        drop += [id(q), id(dq)]
        done.append(output.name)
    if drop:
        keep = [n for n in graph.node if id(n) not in drop]
        del graph.node[:]
        graph.node.extend(keep)
    return done


__all__ = ["float_outputs"]
