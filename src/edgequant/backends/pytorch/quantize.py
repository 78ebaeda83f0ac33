"""PT2E INT8 for the PyTorch backend: scheme → ``X86InductorQuantizer`` config, calibrate, convert.

PyTorch's own INT8 path for CPUs is PT2E (``torchao.quantization.pt2e``): export the model,
annotate it with :class:`X86InductorQuantizer`, run observers on calibration data, convert to a
graph of ``quantize/dequantize`` nodes around float ops, and let Inductor's freezing passes
replace each ``dq → conv → q`` pattern by a oneDNN ``qconv`` kernel (u8 activations × s8
weights, VNNI on this CPU). Everything here follows from what those kernels can run:

* ``w8a8`` — the X86 default: per-channel symmetric s8 weights, asymmetric u8 activations,
  ``HistogramObserver`` (L2-optimal range) for activations — with the weights in the restricted
  range ±127 (the default -128..127 divides by 127.5 and clips each channel's largest weight).
* ``w8a8-pt`` — Inductor only lowers convs whose weights are ``dequantize_per_channel``; a
  per-tensor weight would leave every conv in float. We therefore express per-tensor weights as
  per-channel weights that all share one scale (identical numerics, int8 kernels kept).
* ``w8a8-sym`` — oneDNN's ``qconv`` rejects s8 activations at run time ("Input tensor should have
  uint8"), so symmetric int8 activations are stored as u8 with zero point 127 and levels
  0..254, i.e. exactly the signed levels -127..127 — identical numerics, int8 kernels kept.
* ``w8-dyn`` — the quantizer's dynamic mode annotates convs but Inductor lowers only the Linear
  layers; convs stay fp32 (measured: 0 of 4 convs of the test net). So it is n/a for CNNs.

Example:
    >>> from edgequant.quant.scheme import get_scheme
    >>> pt2e_unsupported_reason(get_scheme("w8a8")) is None
    True
    >>> "int8" in (pt2e_unsupported_reason(get_scheme("w4a8")) or "")
    True
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from edgequant.errors import UnsupportedError, condense_error
from edgequant.quant.scheme import Scheme

if TYPE_CHECKING:
    import torch


#: why each scheme the x86 PT2E path cannot execute is n/a (shown in reports)
WEIGHT_ONLY_REASON = (
    "torchao's weight-only int8/int4 configs quantize nn.Linear only and PT2E's "
    "X86InductorQuantizer has no weight-only mode, so a CNN's convolutions would stay fp32"
)
DYNAMIC_REASON = (
    "X86InductorQuantizer's dynamic mode is lowered to int8 kernels for Linear layers only; "
    "Inductor keeps every convolution in fp32 (measured on a conv net: 0 convs lowered)"
)


def pt2e_unsupported_reason(scheme: Scheme) -> str | None:
    """None when the integer scheme maps onto PT2E + Inductor's x86 int8 kernels, else why not.

    Example:
        >>> from edgequant.quant.scheme import get_scheme
        >>> pt2e_unsupported_reason(get_scheme("w8a8-pt")) is None
        True
    """
    w, a = scheme.weights, scheme.activations
    if w is None:
        return None
    if a is None:
        return WEIGHT_ONLY_REASON
    if w.bits != 8 or a.bits != 8:
        return (
            f"oneDNN's quantized conv kernels behind PT2E on x86 take int8 weights and 8-bit "
            f"activations only (scheme has w{w.bits}/a{a.bits})"
        )
    if a.dynamic:
        return DYNAMIC_REASON
    if not w.symmetric:
        return "x86 int8 conv kernels need symmetric weights (zero point 0); asymmetric weights are not lowered"
    if w.granularity not in ("tensor", "channel"):
        return f"weight granularity {w.granularity!r} has no x86 int8 kernel (per-tensor or per-channel only)"
    if a.granularity != "tensor":
        return "activations can only be quantized per tensor by X86InductorQuantizer"
    method = scheme.calibration.method
    if method not in ("default", "minmax", "mse"):
        return (
            f"calibration method {method!r} has no PT2E observer; use default/mse (HistogramObserver) "
            f"or minmax (MinMaxObserver)"
        )
    return None


def quantizer_for(
    scheme: Scheme, seven_bit: Sequence[str] = (), float_modules: Sequence[str] = ()
) -> tuple[Any, dict[str, Any]]:
    """The configured ``X86InductorQuantizer`` for a scheme and the options used (for metadata).

    ``seven_bit``: module names whose weights get -63..63 (``set_module_name_qconfig``);
    ``float_modules``: module names left unquantized (their config None, computed in f32). Both
    are per-layer remedies where oneDNN's pmaddubsw path saturates (see ``backends/int8_cpu``).

    Example:
        >>> from edgequant.quant.scheme import get_scheme
        >>> q, opts = quantizer_for(get_scheme("w8a8"))
        >>> opts["activation_observer"]
        'HistogramObserver'
    """
    import torch
    from torchao.quantization.pt2e.observer import (
        HistogramObserver,
        MinMaxObserver,
        PerChannelMinMaxObserver,
    )
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

    w, a = scheme.weights, scheme.activations
    if w is None or a is None:  # callers check pt2e_unsupported_reason first
        raise ValueError(f"scheme {scheme.name} has no static int8 weights and activations")

    base = xiq.get_default_x86_inductor_quantization_config(is_qat=False, is_dynamic=False)
    act_obs = MinMaxObserver if scheme.calibration.method == "minmax" else HistogramObserver
    act_kwargs: dict[str, Any] = {"eps": 2**-12}
    act = base.input_activation
    opts: dict[str, Any] = {
        "quantizer": "torchao.quantization.pt2e X86InductorQuantizer",
        "base_config": "get_default_x86_inductor_quantization_config(is_qat=False, is_dynamic=False)",
        "reduce_range": False,
        "activation_observer": act_obs.__name__,
        "activation_dtype": "uint8",
        "weight_dtype": "int8",
    }
    if a.symmetric:
        # s8 activations are rejected by oneDNN's qconv at run time; u8 levels 0..254 with zero
        # point 127 hold exactly the symmetric levels -127..127 (the observer needs 0 in range).
        act = dataclasses.replace(
            act, qscheme=torch.per_tensor_symmetric, quant_min=0, quant_max=254
        )
        opts["activation_encoding"] = (
            "symmetric int8 stored as uint8, zero point 127, levels 0..254 (= -127..127)"
        )
    else:
        opts["activation_encoding"] = "asymmetric uint8 0..255 (X86 default)"
    act = dataclasses.replace(act, observer_or_fake_quant_ctr=act_obs.with_args(**act_kwargs))

    # restricted range +-127 (scale = max|w| / 127, as TFLite and NNCF): the default -128..127
    # divides by 127.5 and clips every channel's largest positive weight by half a step, and it
    # must match the quantizer that bias correction assumes (edgequant.quant.fake_quant)
    weight = dataclasses.replace(base.weight, quant_min=-127, quant_max=127)
    opts["weight_range"] = "restricted -127..127 (scale = max|w| / 127)"
    if w.granularity == "tensor":
        weight = dataclasses.replace(
            weight, observer_or_fake_quant_ctr=shared_scale_observer().with_args(eps=2**-12)
        )
        opts["weight_granularity"] = "per-tensor (one scale shared by all output channels)"
    else:
        weight = dataclasses.replace(
            weight, observer_or_fake_quant_ctr=PerChannelMinMaxObserver.with_args(eps=2**-12)
        )
        opts["weight_granularity"] = "per-channel symmetric"
    config = dataclasses.replace(base, input_activation=act, output_activation=act, weight=weight)
    quantizer = xiq.X86InductorQuantizer().set_global(config)
    if seven_bit:
        w7 = dataclasses.replace(weight, quant_min=-63, quant_max=63)
        for name in seven_bit:
            quantizer.set_module_name_qconfig(name, dataclasses.replace(config, weight=w7))
        opts["seven_bit_weights"] = list(seven_bit)
    if float_modules:
        for name in float_modules:
            quantizer.set_module_name_qconfig(name, None)
        opts["float_modules"] = list(float_modules)
    return quantizer, opts


def shared_scale_observer() -> Any:
    """A per-channel observer whose channels all share the largest scale: per-tensor weights.

    Built lazily so that importing this module does not import torchao.

    Example:
        >>> cls = shared_scale_observer()   # doctest: +SKIP
    """
    import torch
    from torchao.quantization.pt2e.observer import PerChannelMinMaxObserver

    class _SharedScale(PerChannelMinMaxObserver):
        def calculate_qparams(self) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
            scale, zero_point = super().calculate_qparams()
            return torch.full_like(scale, float(scale.max())), torch.zeros_like(zero_point)

    return _SharedScale


def program_graph(module: torch.nn.Module) -> torch.nn.Module:
    """The graph of a ``.pt2`` source itself, else ``module``.

    :func:`edgequant.models.sources.load_pt2` wraps ``program.module()`` in a plain module
    (``ExportedProgramModule``, its graph in ``.program``) because an exported graph refuses
    ``.eval()``. Exported again through that wrapper, X86InductorQuantizer annotates none of its
    convs (measured: 0 of 2 in int8); the program's own graph quantizes like a zoo model's.

    Example:
        >>> import torch
        >>> net = torch.nn.Conv2d(3, 4, 3)
        >>> program_graph(net) is net
        True
    """
    import torch

    inner = getattr(module, "program", None)
    if type(module).__name__ == "ExportedProgramModule" and isinstance(inner, torch.fx.GraphModule):
        return inner
    return module


def static_batch_error(batch: int, error: BaseException) -> UnsupportedError:
    """The one line for a ``.pt2`` exported at a static ``batch`` that cannot be re-exported with
    a dynamic one: the loader freed the batch of its reshapes
    (:func:`edgequant.models.program_graph.free_batch`), something else still holds it.

    Example:
        >>> str(static_batch_error(1, ValueError("x")))[:52]
        'the .pt2 program was exported at a static batch of 1'
    """
    return UnsupportedError(
        f"the .pt2 program was exported at a static batch of {batch} and still depends on it "
        f"({condense_error(error)[:160]}); the PyTorch backend re-exports it with a dynamic "
        "batch: export it with dynamic_shapes=({0: torch.export.Dim('batch')},)"
    )


def quantize_pt2e(
    module: torch.nn.Module,
    scheme: Scheme,
    calibration: np.ndarray,
    example: torch.Tensor,
    dynamic_shapes: Any,
    batch_size: int = 32,
    seven_bit: Sequence[str] = (),
    float_modules: Sequence[str] = (),
) -> tuple[torch.fx.GraphModule, dict[str, Any]]:
    """Export → prepare → calibrate → convert. Returns the converted graph and the options used.

    Example:
        >>> gm, opts = quantize_pt2e(net, get_scheme("w8a8"), calib, calib[:2], dyn)  # doctest: +SKIP
    """
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer, opts = quantizer_for(scheme, seven_bit, float_modules)
    source = program_graph(module)
    batch = getattr(module, "batch", None) if source is not module else None
    if source is not module:
        opts["source"] = "the .pt2 program's own graph (not re-exported through a wrapper)"
    try:
        gm = torch.export.export(source, (example,), dynamic_shapes=dynamic_shapes).module()
    except Exception as e:
        if batch is None or dynamic_shapes is None:
            raise
        raise static_batch_error(batch, e) from None
    if batch is not None:
        opts["source"] += f"; exported at batch {batch}, re-exported with a dynamic batch"
    prepared = prepare_pt2e(gm, quantizer)  # type: ignore[arg-type]
    with torch.no_grad():
        for i in range(0, len(calibration), batch_size):
            prepared(torch.from_numpy(np.ascontiguousarray(calibration[i : i + batch_size])))
    converted = convert_pt2e(prepared)
    drop_unused_tensors(converted)
    opts["calibration_samples"] = len(calibration)
    opts["calibration_batch_size"] = batch_size
    return converted, opts


# --- what the graph says ------------------------------------------------------------------------
_CONV_TARGETS = ("conv1d", "conv2d", "conv3d", "convolution")


def _module_path(node: Any) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        path = list(stack.values())[-1][0]
        return str(path) or node.name
    return str(node.name)


def _target_name(node: Any) -> str:
    target = node.target
    return str(getattr(target, "__name__", target))


def _is_dq(node: Any, kind: str) -> bool:
    return getattr(node, "op", "") == "call_function" and _target_name(node).startswith(
        f"dequantize_{kind}"
    )


def analyze_graph(gm: Any, precision: str, float_reason: str = "") -> list[dict[str, str]]:
    """Convs and linears of an (exported or PT2E-converted) graph and their precision.

    A PT2E op runs in int8 when its input comes from ``dequantize_per_tensor`` and its weight from
    ``dequantize_per_channel`` (the pattern Inductor fuses into a oneDNN int8 kernel); an op
    without that pattern was not annotated by the quantizer and stays in float.

    Example:
        >>> analyze_graph(exported.module(), "fp32", "float scheme")[0]["precision"]  # doctest: +SKIP
        'fp32'
    """
    ops: list[dict[str, str]] = []
    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        name = _target_name(node)
        base = name.split(".")[0]
        if base in _CONV_TARGETS:
            op_type = "Conv"
            if base != "conv1d" and len(node.args) > 6 and node.args[6] not in (1, None):
                op_type = "DepthwiseConv" if _is_depthwise(node) else "GroupConv"
        elif base in ("linear", "addmm"):
            op_type = "Linear"
        else:
            continue
        entry = {
            "name": _module_path(node),
            "op_type": op_type,
            "precision": precision,
            "reason": "",
        }
        if precision == "int8":
            args = list(node.args)
            act_q = bool(args) and _is_dq(args[0], "per_tensor")
            w_q = len(args) > 1 and _is_dq(args[1], "per_channel")
            if not (act_q and w_q):
                entry["precision"] = "fp32"
                entry["reason"] = (
                    "no annotation from X86InductorQuantizer"
                    if not (act_q or w_q)
                    else "input or weight not quantized (partial annotation)"
                )
        else:
            entry["reason"] = float_reason
        ops.append(entry)
    return ops


def _is_depthwise(node: Any) -> bool:
    groups = node.args[6]
    weight = node.args[1]
    val = getattr(weight, "meta", {}).get("val")
    shape = getattr(val, "shape", None)
    return bool(shape is not None and len(shape) >= 2 and int(shape[1]) == 1 and int(groups) > 1)


_KERNEL_RE = {
    "int8_conv": re.compile(r"aoti_torch_cpu__qconv\w*\("),
    "int8_linear": re.compile(r"aoti_torch_cpu__qlinear\w*\("),
    "float_conv": re.compile(
        r"aoti_torch_cpu_(?:mkldnn_)?_?convolution\w*\(|mkldnn__convolution\w*\("
    ),
    "float_linear": re.compile(
        r"aoti_torch_cpu_(?:mkldnn_)?_?linear\w*\(|aoti_torch_cpu_addmm\w*\(|mkl_linear\w*\("
    ),
}


def count_kernels(wrapper_sources: Iterable[str]) -> dict[str, int]:
    """Count the compute kernels AOTInductor emitted (int8 vs float convs/linears).

    This is what actually runs: a conv the quantizer annotated but Inductor failed to lower shows
    up here as a float kernel.

    Example:
        >>> count_kernels(["aoti_torch_cpu__qconv_pointwise_tensor(buf0, ...)"])["int8_conv"]
        1
    """
    counts = dict.fromkeys(_KERNEL_RE, 0)
    for src in wrapper_sources:
        for key, rx in _KERNEL_RE.items():
            counts[key] += len(rx.findall(src))
    return counts


def tensor_bytes(tensors: Iterable[Any]) -> int:
    """Bytes of a set of tensors as stored (numel × element size), each counted once.

    Example:
        >>> import torch
        >>> tensor_bytes([torch.zeros(4, dtype=torch.int8), torch.zeros(2)])
        12
    """
    seen: set[int] = set()
    total = 0
    for t in tensors:
        if id(t) in seen:
            continue
        seen.add(id(t))
        total += int(t.numel()) * int(t.element_size())
    return total


def drop_unused_tensors(gm: Any) -> int:
    """Delete the parameters and buffers no graph node reads; returns how many were dropped.

    ``convert_pt2e`` keeps the fp32 weights beside their int8 replacements, and
    ``torch.export`` lifts every tensor of the module: ResNet-50's int8 program was 130 MB
    (the fp32 weights plus the int8 ones) before this, 26 MB after.

    Example:
        >>> drop_unused_tensors(converted)   # doctest: +SKIP
        53
    """
    used = {str(n.target) for n in gm.graph.nodes if n.op == "get_attr"}
    names = [n for n, _ in gm.named_parameters()] + [n for n, _ in gm.named_buffers()]
    dropped = 0
    for name in names:
        if name in used:
            continue
        owner_path, _, attr = name.rpartition(".")
        owner = gm.get_submodule(owner_path) if owner_path else gm
        delattr(owner, attr)
        dropped += 1
    return dropped


def graph_constant_bytes(gm: Any) -> int:
    """Bytes of the tensors a graph actually reads (``get_attr`` nodes): weights, biases, qparams.

    ``convert_pt2e`` leaves the original fp32 weights in the module's state dict although the
    graph no longer uses them (nor does the compiled artifact), so the state dict overcounts.

    Example:
        >>> graph_constant_bytes(converted)  # doctest: +SKIP
        7200
    """
    import torch

    tensors: list[Any] = []
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            obj: Any = gm
            for part in str(node.target).split("."):
                obj = getattr(obj, part, None)
            if isinstance(obj, torch.Tensor):
                tensors.append(obj)
    return tensor_bytes(tensors)


class _CastIO:
    """Builds the wrapper that runs a module in bf16/fp16 but keeps float32 I/O."""

    @staticmethod
    def wrap(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
        import copy

        import torch

        class CastIO(torch.nn.Module):
            def __init__(self, inner: torch.nn.Module) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.inner(x.to(dtype)).float()

        return CastIO(copy.deepcopy(module).to(dtype).eval())
