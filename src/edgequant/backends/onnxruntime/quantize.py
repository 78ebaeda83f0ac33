"""ONNX Runtime artifact builders: each scheme through ORT's own tools.

Used by :class:`edgequant.backends.onnxruntime.OnnxRuntimeBackend`; each builder writes ``dst``
from the exported fp32 ONNX file and fills ``meta`` (``quantizer_options``, ``choices`` with
their reasons). See that module's docstring for the scheme table.

Example:
    >>> meta = {"choices": [], "quantizer_options": {}}
    >>> build_static(fp32, dst, get_scheme("w8a8"), calib, meta, tmp, int8_choice())  # doctest: +SKIP
    >>> meta["quantizer_options"]["activation_type"]                                  # doctest: +SKIP
    'QUInt8'
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from edgequant.backends.onnxruntime.outputs import float_outputs
from edgequant.errors import UnsupportedError, ValidationError, condense_error
from edgequant.quant.scheme import Scheme

_T = TypeVar("_T")
_CALIB_BATCH = 8


def _choice(meta: dict[str, Any], what: str, choice: Any, reason: str) -> None:
    meta["choices"].append({"what": what, "choice": choice, "reason": reason})


def need(value: _T | None, scheme: Scheme) -> _T:
    """``value``, which the scheme's kind guarantees is set (narrows the type without assert)."""
    if value is None:
        raise ValidationError(f"scheme {scheme.name} is missing a part its kind needs")
    return value


def build_float(src: Path, dst: Path, scheme: Scheme, meta: dict[str, Any]) -> None:
    """fp32: the exported file; fp16: ``convert_float_to_float16`` keeping float32 I/O."""
    if scheme.float_dtype == "fp32":
        shutil.copyfile(src, dst)
        return
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    m16 = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(m16, str(dst))
    meta["quantizer_options"] = {
        "tool": "onnxruntime.transformers.float16.convert_float_to_float16",
        "keep_io_types": True,
    }
    _choice(
        meta,
        "fp16 I/O",
        "float32 inputs/outputs",
        "sessions take and return float32 whatever the artifact holds",
    )
    _choice(
        meta,
        "fp16 execution",
        "as ORT decides (see executed_precision)",
        "ORT's x86 CPU provider has no fp16 Conv kernels: it casts fp16 weights back to fp32 at load; "
        "the file is 2x smaller, compute is fp32 (ResNet-50 measured 0.74x fp32 images/s here)",
    )


def build_weight_only(src: Path, dst: Path, scheme: Scheme, meta: dict[str, Any]) -> None:
    """Conv/Gemm/MatMul weights → int8/int4 initializers + ``DequantizeLinear`` (float compute).

    Scales and rounding are ORT's own (``compute_data_quant_params``,
    ``quantize_onnx_initializer``), symmetric, per output channel or per tensor.
    """
    import onnx
    from onnx import TensorProto

    w = need(scheme.weights, scheme)
    model = onnx.load(str(src))
    qtype = TensorProto.INT8 if w.bits == 8 else TensorProto.INT4
    if w.bits == 4:
        from onnx import version_converter

        # int4 DequantizeLinear exists from opset 21 on
        model = version_converter.convert_version(model, 21)
        _choice(meta, "opset", 21, "int4 DequantizeLinear needs opset 21")
    inits = {i.name: i for i in model.graph.initializer}
    consumers: dict[str, int] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers[i] = consumers.get(i, 0) + 1
    nodes: list[Any] = []
    done = 0
    for node in model.graph.node:
        weight = (
            node.input[1]
            if node.op_type in ("Conv", "Gemm", "MatMul") and len(node.input) > 1
            else ""
        )
        if weight in inits and consumers.get(weight, 0) == 1:
            nodes.append(_dequantized_weight(model, node, inits.pop(weight), w, qtype))
            done += 1
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, str(dst))
    meta["quantizer_options"] = {
        "tool": "onnxruntime.quantization.quant_utils (compute_data_quant_params, "
        "quantize_onnx_initializer) + DequantizeLinear",
        "weight_type": f"int{w.bits}",
        "symmetric": True,
        "per_channel": w.granularity == "channel",
        "quantized_weights": done,
    }
    _choice(
        meta,
        "weight-only format",
        "int weights + DequantizeLinear, float Conv",
        "ORT has no weight-only Conv kernel: the file is smaller, weights are dequantized at run time "
        "(expect no speed-up)",
    )


def _dequantized_weight(model: Any, node: Any, init: Any, w: Any, qtype: int) -> Any:
    """Replace the weight initializer of ``node`` by ORT-quantized integers; return the
    ``DequantizeLinear`` node that restores it (scales per output channel or per tensor)."""
    from onnx import helper, numpy_helper
    from onnxruntime.quantization.quant_utils import (
        compute_data_quant_params,
        quantize_onnx_initializer,
    )

    weight = init.name
    arr = numpy_helper.to_array(init)
    axis = _output_axis(node, arr.ndim)
    per_channel = w.granularity == "channel"
    chans = (
        [arr.take(c, axis).ravel() for c in range(arr.shape[axis])]
        if per_channel
        else [arr.ravel()]
    )
    params = [compute_data_quant_params(c, qtype, True) for c in chans]
    shape = (-1,) if per_channel else ()
    zp: np.ndarray = np.array([p[0] for p in params]).reshape(shape)
    scale: np.ndarray = np.array([p[1] for p in params], dtype=np.float32).reshape(shape)
    q = quantize_onnx_initializer(
        init,
        qtype,
        zp,
        scale,
        axis=axis if per_channel else None,
        quant_weight_name=f"{weight}_q",
    )
    zp_t = helper.make_tensor(
        f"{weight}_zp", qtype, zp.shape, zp.astype(np.int32).reshape(-1).tolist()
    )
    model.graph.initializer.remove(init)
    model.graph.initializer.extend([q, numpy_helper.from_array(scale, f"{weight}_scale"), zp_t])
    dq = helper.make_node(
        "DequantizeLinear",
        [f"{weight}_q", f"{weight}_scale", f"{weight}_zp"],
        [weight],
        name=f"{weight}_DequantizeLinear",
    )
    if per_channel:
        dq.attribute.append(helper.make_attribute("axis", axis))
    return dq


def _output_axis(node: Any, ndim: int) -> int:
    """The weight axis that indexes output channels (per-channel scales run along it)."""
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    if node.op_type == "MatMul":
        return ndim - 1
    return 0


def build_dynamic(src: Path, dst: Path, scheme: Scheme, meta: dict[str, Any]) -> None:
    """``quantize_dynamic``: int8 weights, activations quantized at run time (ConvInteger)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    w = need(scheme.weights, scheme)
    opts = {
        "per_channel": w.granularity == "channel",
        "weight_type": "QInt8",
        "reduce_range": False,
    }
    with _quiet_logs():
        try:
            quantize_dynamic(src, dst, per_channel=opts["per_channel"], weight_type=QuantType.QInt8)
        except Exception as e:
            raise UnsupportedError(
                f"onnxruntime quantize_dynamic failed: {condense_error(e)}"
            ) from None
    meta["quantizer_options"] = {"tool": "onnxruntime.quantization.quantize_dynamic", **opts}
    _choice(
        meta,
        "dynamic int8",
        "ConvInteger + DynamicQuantizeLinear",
        "slower than fp32 on CNNs (ResNet-50, 2 threads, Zen 4: 0.28x fp32 images/s; 4-12x slower "
        "reported elsewhere): ORT's ConvInteger has no fused/NCHWc kernel and re-quantizes every "
        "activation at run time; prefer w8a8 for speed",
    )
    meta["warning"] = "w8-dyn on ONNX Runtime is slower than fp32 for CNNs (ConvInteger path)"


class _Reader:
    """ORT calibration data reader over an in-memory array, in equal batches.

    Every batch has the same size (the largest divisor of N up to ``_CALIB_BATCH``): ORT's
    histogram calibrators (entropy, percentile) stack the batches and fail on a ragged last one.
    """

    def __init__(self, x: np.ndarray, input_name: str) -> None:
        self._x, self._name, self._i = x, input_name, 0
        self.batch = max(b for b in range(1, _CALIB_BATCH + 1) if len(x) % b == 0)

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._i >= len(self._x):
            return None
        b = self._x[self._i : self._i + self.batch]
        self._i += self.batch
        return {self._name: b}

    def rewind(self) -> None:
        self._i = 0


def _static_choices(
    meta: dict[str, Any], scheme: Scheme, choice: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """Record the int8 layout's and the calibration's choices; the calibration method and the
    extra options it needs."""
    _choice(
        meta, "activation_type", f"{choice['activation_type']} (weights QInt8)", choice["reason"]
    )
    _choice(
        meta,
        "reduce_range",
        choice["reduce_range"],
        choice.get("reduce_range_reason", choice["reason"]),
    )
    method, extra = _calibration_options(scheme)
    _choice(meta, "calibration", method, extra.pop("_reason"))
    return method, extra


def _pre_process(src: Path, pre: Path, meta: dict[str, Any]) -> Path:
    """``quant_pre_process`` of ``src`` into ``pre``; ``src`` itself when it fails.

    It adds shapes (and folds what the exporter left), which the QDQ quantizer uses to place
    Q/DQ; it is optional, so a failure only costs that (recorded as a choice).
    """
    try:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        with _quiet_logs():
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        if not pre.is_file():
            raise RuntimeError("no output")
        return pre
    except Exception as e:
        _choice(meta, "pre-process", "skipped", f"quant_pre_process failed: {condense_error(e)}")
        return src


def build_static(
    src: Path,
    dst: Path,
    scheme: Scheme,
    calib: np.ndarray,
    meta: dict[str, Any],
    tmp: Path,
    choice: dict[str, Any],
    u8u8_layers: Sequence[str] = (),
) -> None:
    """``quantize_static`` QDQ with the scheme mapped on, in ``choice``'s int8 layout (U8S8 on x86).

    ``u8u8_layers``: module names (``_blocks.0._project_conv``) whose Conv/Gemm get uint8
    weights with zero point 128 (``TensorQuantOverrides``): the same ±127 grid, but MLAS runs
    them with its U8U8 kernel, which widens to int16 and never saturates (the per-layer remedy of
    :mod:`edgequant.backends.int8_cpu` on AVX2 / AVX-512 without VNNI).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    w, a = need(scheme.weights, scheme), need(scheme.activations, scheme)
    method, extra = _static_choices(meta, scheme, choice)
    first = _pre_process(src, tmp / "pre.onnx", meta)
    in_name = onnx.load(str(first), load_external_data=False).graph.input[0].name
    # a user's ONNX file may name its input differently from ours
    reader = _Reader(calib, in_name)
    options: dict[str, Any] = {
        "ActivationSymmetric": a.symmetric,
        "WeightSymmetric": True,
        **extra,
    }
    per_channel = w.granularity == "channel"
    if u8u8_layers:
        overrides, nodes = u8u8_overrides(first, u8u8_layers, per_channel)
        options["TensorQuantOverrides"] = overrides
        meta["u8u8_nodes"] = nodes
    act = QuantType.QUInt8 if choice["activation_type"] == "QUInt8" else QuantType.QInt8
    with _quiet_logs():
        try:
            quantize_static(
                first,
                dst,
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,  # type: ignore[arg-type]
                reduce_range=choice["reduce_range"],
                activation_type=act,
                weight_type=QuantType.QInt8,
                calibrate_method=getattr(CalibrationMethod, method),
                extra_options=options,
            )
        except Exception as e:
            raise UnsupportedError(
                f"onnxruntime quantize_static failed: {condense_error(e)}"
            ) from None
    model = onnx.load(str(dst))
    made_float = float_outputs(model)
    if made_float:
        onnx.save(model, str(dst))
        _choice(
            meta,
            "graph outputs",
            "float (no QuantizeLinear/DequantizeLinear before " + ", ".join(made_float) + ")",
            "quantize_static rounds the last op's output to 8 bits; on EfficientNet-Lite0 that "
            "made 1% of logits tie and cost ~0.5% top-1 agreement with fp32 (OpenVINO and PT2E "
            "return it float too)",
        )
    meta["calibration_samples"] = len(calib)
    meta["quantizer_options"] = {
        "tool": "onnxruntime.quantization.quantize_static",
        "quant_format": "QDQ",
        "per_channel": per_channel,
        "activation_type": choice["activation_type"],
        "weight_type": "QInt8",
        "reduce_range": choice["reduce_range"],
        "calibrate_method": method,
        "extra_options": _jsonable_options(options),
        "calibration_batch": reader.batch,
    }


def node_layer(node_name: str) -> str:
    """The PyTorch module path of a node the TorchScript exporter named (``/a.0/b/Conv`` → ``a.0.b``).

    Example:
        >>> node_layer("/_blocks.0/_project_conv/Conv"), node_layer("/0/Conv")
        ('_blocks.0._project_conv', '0')
    """
    parts = node_name.strip("/").split("/")
    return ".".join(parts[:-1]) if len(parts) > 1 else node_name


def u8u8_overrides(
    path: Path, layers: Sequence[str], per_channel: bool
) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """``TensorQuantOverrides`` giving the weights of ``layers``' Conv/Gemm nodes uint8 codes with
    zero point 128 and the int8 restricted scale max|w|/127 (codes 1..255 = -127..127 + 128).

    Returns the overrides and the node names they cover.
    """
    import onnx
    from onnx import numpy_helper
    from onnxruntime.quantization import QuantType

    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    wanted = set(layers)
    overrides: dict[str, list[dict[str, Any]]] = {}
    nodes: list[str] = []
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm") or node_layer(node.name) not in wanted:
            continue
        if len(node.input) < 2 or node.input[1] not in inits:
            continue
        w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
        axis = _output_axis(node, w.ndim)
        absmax = np.abs(np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)).max(1)
        scales = np.maximum(absmax, 1e-12) / np.float32(127)
        if per_channel:
            overrides[node.input[1]] = [
                {
                    "axis": axis,
                    "quant_type": QuantType.QUInt8,
                    "scale": np.float32(s),
                    "zero_point": np.uint8(128),
                }
                for s in scales
            ]
        else:
            overrides[node.input[1]] = [
                {
                    "quant_type": QuantType.QUInt8,
                    "scale": np.float32(scales.max()),
                    "zero_point": np.uint8(128),
                }
            ]
        nodes.append(node.name)
    return overrides, nodes


def _jsonable_options(options: dict[str, Any]) -> dict[str, Any]:
    """extra_options for the metadata: overrides summarised (they hold numpy scalars)."""
    out = {k: v for k, v in options.items() if k != "TensorQuantOverrides"}
    if "TensorQuantOverrides" in options:
        out["TensorQuantOverrides"] = {
            name: "uint8 weights, zero point 128, scale max|w|/127"
            for name in options["TensorQuantOverrides"]
        }
    return out


def _calibration_options(scheme: Scheme) -> tuple[str, dict[str, Any]]:
    """Map the scheme's calibration method onto ORT's CalibrationMethod + extra_options."""
    m = scheme.calibration.method
    if m == "entropy":
        return "Entropy", {"_reason": "scheme asks for entropy (KL) calibration"}
    if m.startswith("percentile"):
        p = scheme.calibration.percentile
        return "Percentile", {"CalibPercentile": p, "_reason": f"scheme asks for percentile {p}"}
    if m == "minmax":
        return "MinMax", {"_reason": "scheme asks for min/max calibration"}
    # default: plain MinMax over all samples, per-channel weights. Measured on EfficientNet-Lite0
    # (pretrained, 50 dev ImageNet images, 2-fold: calibrate on 25, evaluate on the other 25):
    # MinMax 98% top-1 agreement with fp32, no top-1 drop, KL(fp32||int8) 0.0071; percentile
    # 99.999: 94%, 0.0074; percentile 99.99: 96%, -2 points, 0.0085; MinMax+CalibMovingAverage:
    # 96%, 0.0079; entropy: the same as MinMax, 40% slower. The ReLU6 nets of the zoo have bounded
    # activations, so clipping ranges mostly cuts real signal.
    return "MinMax", {
        "_reason": "default: MinMax (measured best top-1 agreement with fp32 on EfficientNet-Lite0 "
        "among MinMax/percentile/entropy/moving-average; bounded ReLU6 activations need no clipping)"
    }


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """Keep ORT's quantizer quiet: it logs a warning per tensor through the root logger and its
    histogram calibrators ``print`` to stdout, which must hold only results (``--json``)."""
    root = logging.getLogger()
    old = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(old)


__all__ = [
    "build_dynamic",
    "build_float",
    "build_static",
    "build_weight_only",
    "need",
    "node_layer",
    "u8u8_overrides",
]
