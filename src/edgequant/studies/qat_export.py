"""Export a trained (or PTQ) simulator as an ONNX QDQ model that runtimes execute in INT8.

Every :class:`~edgequant.quant.simulate.ActQuant` becomes a ``QuantizeLinear → DequantizeLinear``
pair with its learned scale / zero-point (uint8 for asymmetric, int8 for symmetric
activations); every weight becomes an integer initializer feeding ``DequantizeLinear`` (per
channel: ``axis=0``). Runtimes fuse ``DQ → Conv → Q`` into their INT8 convolutions (e.g.
``QLinearConv``, U8S8), so the numbers are the simulator's up to requantization rounding. The
file is run through the backend registry (any backend with ``loads_onnx``).

INT4 weights: by default they are stored as **int8 initializers holding values in [-8, 7]** with
the INT4 scale. Checked on the CPU runtimes (2026): a ``DequantizeLinear`` with an *int4*
initializer (opset 21) in front of a Conv is accepted, but not fused into ``QLinearConv`` — the
weight is dequantized to fp32 and a float conv runs — so the int8 container is what runs as
real INT8 (with exactly the INT4 numerics). ``int4_storage=True`` writes true int4 initializers
(opset 21) for runtimes and file sizes that want them.

Only per-tensor/per-channel weights of ≤ 8 bits and 8-bit activations export (QDQ has no
per-block axis before opset 21's ``block_size``, and runtimes run only 8-bit activations).

Example:
    >>> path = export_qdq(result.module, model.input_spec, out_dir / "model.onnx")  # doctest: +SKIP
    >>> run_onnx(path, x).shape                                                   # doctest: +SKIP
    (8, 10)
"""

from __future__ import annotations

import contextlib
import copy
import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgequant.errors import BackendUnavailableError, UnsupportedError
from edgequant.input_spec import InputSpec

if TYPE_CHECKING:
    from edgequant.backends.base import Backend

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def check_exportable(module: Any) -> None:
    """Raise UnsupportedError naming the first quantizer QDQ cannot express."""
    from edgequant.quant.simulate import ActQuant, QuantLayer

    for name, m in module.named_modules():
        if isinstance(m, QuantLayer):
            if m.wq is not None and (
                m.wq.block_size is not None or m.wq.bits > 8 or not m.wq.symmetric
            ):
                raise UnsupportedError(
                    f"layer {name}: {m.wq.bits}-bit {m.wq.granularity} weights do not export to QDQ "
                    "(use symmetric per-tensor/per-channel weights of <= 8 bits)"
                )
            if m.use_winograd:
                raise UnsupportedError(f"layer {name}: Winograd convs exist only in the simulator")
        if isinstance(m, ActQuant) and m.tq is not None and (m.tq.bits != 8 or m.tq.dynamic):
            raise UnsupportedError(
                f"{name}: only static 8-bit activations export to QDQ, got {m.tq}"
            )


def export_qdq(
    module: Any,
    input_spec: InputSpec,
    path: Path | str,
    *,
    int4_storage: bool = False,
    remedy: str = "",
    remedy_layers: Sequence[str] = (),
) -> Path:
    """Write the simulator ``module`` as an ONNX QDQ model; returns the path.

    ``remedy_layers`` (module names) are written so that a CPU whose int8 path saturates int16
    pair sums computes them exactly (see ``edgequant.backends.int8_cpu.plan_qdq``):
    ``remedy="u8u8"``: uint8 weights with zero point 128 (the same grid; ONNX Runtime's MLAS runs
    U8U8 with a widening, exact kernel); ``"float"``: the dequantized weights as f32 (a float conv
    on the quantized input: the same numbers, no integer pair sums).
    """
    import onnx
    import torch

    from edgequant.quant.simulate import ActQuant, QuantLayer

    check_exportable(module)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    gm = copy.deepcopy(module).eval()
    for m in gm.modules():
        if isinstance(m, ActQuant):
            m.export = True
        elif isinstance(m, QuantLayer):
            m.prepare_export()
    example = torch.zeros((1, *input_spec.shape), dtype=torch.float32)
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            gm,
            (example,),
            str(out),
            dynamo=False,
            opset_version=17,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )
    model = onnx.load(str(out))
    int4_bits = {
        i: m.wq.bits
        for i, m in enumerate(x for x in gm.modules() if isinstance(x, QuantLayer))
        if m.wq is not None
    }
    _fold_weight_quantizers(model, int4=int4_storage and any(b <= 4 for b in int4_bits.values()))
    if remedy_layers:
        remedy_weights(model, remedy, remedy_layers)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return out


def _constants(model: Any) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    consts[node.output[0]] = numpy_helper.to_array(attr.t)
        elif node.op_type == "Identity" and node.input[0] in consts:
            consts[node.output[0]] = consts[node.input[0]]
    return consts


def _fold_weight_quantizers(model: Any, *, int4: bool) -> None:
    """QuantizeLinear(constant weight) → integer initializer; drop the now-unused constants."""
    import onnx
    from onnx import helper, numpy_helper

    consts = _constants(model)
    graph = model.graph
    producers = {o: n for n in graph.node for o in n.output}
    remove = []
    for node in list(graph.node):
        if node.op_type != "QuantizeLinear" or node.input[0] not in consts:
            continue
        w = consts[node.input[0]].astype(np.float32)
        scale = consts[node.input[1]].astype(np.float32)
        zp = consts[node.input[2]] if len(node.input) > 2 else np.zeros_like(scale, dtype=np.int8)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * w.ndim
        if scale.ndim == 1 and scale.size > 1:
            shape[axis] = -1
        info = np.iinfo(zp.dtype)
        q = np.clip(
            np.rint(w / scale.reshape(shape)) + zp.reshape(shape).astype(np.int32),
            info.min,
            info.max,
        )
        name = node.input[0] + "_quantized"
        if int4 and zp.dtype == np.int8 and q.min() >= -8 and q.max() <= 7:
            tensor = helper.make_tensor(
                name, onnx.TensorProto.INT4, q.shape, q.astype(np.int8).reshape(-1).tolist()
            )
            zp_name = node.input[2] + "_int4"
            graph.initializer.append(
                helper.make_tensor(
                    zp_name,
                    onnx.TensorProto.INT4,
                    zp.shape,
                    zp.astype(np.int8).reshape(-1).tolist(),
                )
            )
        else:
            tensor = numpy_helper.from_array(q.astype(zp.dtype), name)
            zp_name = None
        graph.initializer.append(tensor)
        for user in graph.node:
            if user.op_type == "DequantizeLinear" and user.input[0] == node.output[0]:
                user.input[0] = name
                if zp_name is not None:
                    user.input[2] = zp_name
        remove.append(node)
        if node.input[0] in producers:
            remove.append(producers[node.input[0]])
    for node in remove:
        if node in graph.node:
            graph.node.remove(node)
    used = {i for n in graph.node for i in n.input}
    for init in list(graph.initializer):
        if init.name not in used:
            graph.initializer.remove(init)
    if int4:
        for op in model.opset_import:
            if op.domain in ("", "ai.onnx"):
                op.version = 21
        model.ir_version = max(model.ir_version, 10)


def remedy_weights(model: Any, remedy: str, layers: Sequence[str]) -> list[str]:
    """Rewrite the int8 weights of ``layers``' Conv/Gemm nodes (``remedy`` ``u8u8`` or ``float``,
    see :func:`export_qdq`); returns the node names changed.

    Example:
        >>> remedy_weights(onnx.load("m.onnx"), "u8u8", ["conv1"])   # doctest: +SKIP
        ['/conv1/Conv']
    """
    from onnx import numpy_helper

    if remedy not in ("u8u8", "float"):
        raise UnsupportedError(f"unknown QDQ remedy {remedy!r} (u8u8 or float)")
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consts = _constants(model)
    producers = {o: n for n in graph.node for o in n.output}
    wanted = set(layers)
    done = []
    for node in list(graph.node):
        parts = node.name.strip("/").split("/")
        owner = ".".join(parts[:-1])
        if node.op_type not in ("Conv", "Gemm") or not (
            owner in wanted or any(owner.startswith(f"{w}.") for w in wanted)
        ):
            continue
        dq = producers.get(node.input[1]) if len(node.input) > 1 else None
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
            continue
        q = numpy_helper.to_array(inits[dq.input[0]])
        if q.dtype != np.int8:
            continue
        if remedy == "u8u8":
            zp = consts.get(dq.input[2]) if len(dq.input) > 2 else None
            zp_shape = () if zp is None else zp.shape
            qname, zname = dq.output[0] + "_u8", dq.output[0] + "_zp_u8"
            graph.initializer.append(
                numpy_helper.from_array((q.astype(np.int16) + 128).astype(np.uint8), qname)
            )
            graph.initializer.append(
                numpy_helper.from_array(np.full(zp_shape, 128, dtype=np.uint8), zname)
            )
            dq.input[0] = qname
            if len(dq.input) > 2:
                dq.input[2] = zname
            else:
                dq.input.append(zname)
        else:
            scale = consts[dq.input[1]].astype(np.float32)
            axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
            shape = [1] * q.ndim
            if scale.ndim == 1 and scale.size > 1:
                shape[axis] = -1
            w = (q.astype(np.float32) * scale.reshape(shape)).astype(np.float32)
            fname = dq.output[0] + "_f32"
            graph.initializer.append(numpy_helper.from_array(w, fname))
            node.input[1] = fname
            graph.node.remove(dq)
        done.append(node.name)
    used = {i for n in graph.node for i in n.input}
    for init in list(graph.initializer):
        if init.name not in used:
            graph.initializer.remove(init)
    return done


def onnx_backend(backend: str | None = None) -> Backend:
    """The backend that runs exported QDQ files: ``backend`` if given, else the first registered
    one that loads plain ONNX files (``Backend.loads_onnx``) and is available here.

    Example:
        >>> onnx_backend().loads_onnx   # doctest: +SKIP
        True
    """
    from edgequant.backends import backend_names, get_backend

    if backend is not None:
        be = get_backend(backend)
        if not be.loads_onnx:
            names = [n for n in backend_names() if get_backend(n).loads_onnx]
            raise UnsupportedError(
                f"QAT export runs on {' or '.join(names)}, not {backend!r} (it loads no ONNX files)"
            )
        be.require()
        return be
    able = [get_backend(n) for n in backend_names() if get_backend(n).loads_onnx]
    for candidate in able:
        if candidate.available():
            return candidate
    hints = "; ".join(f"{c.name}: {c.unavailable_reason()}" for c in able)
    raise BackendUnavailableError(f"no backend that runs ONNX files is available ({hints})")


def run_onnx(
    path: Path | str,
    x: np.ndarray,
    *,
    backend: str | None = None,
    threads: int = 2,
    batch_size: int = 64,
) -> np.ndarray:
    """Logits of an ONNX file run by a real runtime (see :func:`onnx_backend` for which).

    Example:
        >>> run_onnx(path, x).shape   # doctest: +SKIP
        (8, 10)
    """
    with onnx_backend(backend).load_onnx(path, threads) as sess:
        outs = [sess.run(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    return np.concatenate(outs).astype(np.float32)


def int8_ops(path: Path | str, *, backend: str | None = None) -> dict[str, int]:
    """Conv/matmul op counts of the graph the runtime really runs (``QLinearConv`` = real INT8).

    Read from the backend's own ``inspect`` of the file (after its graph optimizations).

    Example:
        >>> int8_ops(path)   # doctest: +SKIP
        {'QLinearConv': 5, 'QGemm': 1}
    """
    from edgequant.quant.scheme import get_scheme

    be = onnx_backend(backend)
    report = be.inspect(be.onnx_artifact(path, get_scheme("w8a8")))
    counts: dict[str, int] = {}
    for op in report.ops:
        kind = op.op_type.rsplit(".", 1)[-1]  # "microsoft.QLinearConv" -> "QLinearConv"
        counts[kind] = counts.get(kind, 0) + 1
    return counts


__all__ = [
    "check_exportable",
    "export_qdq",
    "int8_ops",
    "onnx_backend",
    "remedy_weights",
    "run_onnx",
]
