"""The reference fake-quant simulator: wrap a module so it computes what an INT runtime computes.

:func:`quantize_module` traces the fp32 module with ``torch.fx`` and

* replaces every ``Conv2d``/``Linear`` with a :class:`QuantLayer` that fake-quantizes its weight
  at the scheme's bits / symmetry / granularity (optionally by Winograd F(2×2,3×3) with INT4/INT6
  transformed operands for 3×3 stride-1 convs), and, for dynamic schemes, its input per batch;
* inserts an :class:`ActQuant` after every tensor an INT8 runtime would hold in integers — the
  graph input and the output of every compute op (conv, linear, add, concat, pooling, ...),
  taken *after* a following ReLU/ReLU6/clip, which runtimes fuse into the op — but not after ops
  that are exact on integer values (max-pool, flatten, reshape, dropout). This mirrors where
  ONNX Runtime's QDQ format and OpenVINO's FakeQuantize put their (de)quantization;
* calibrates the activation ranges with the scheme's observer, then freezes them as buffers.

For ``fp16``/``bf16`` schemes the same points round tensors (and weights) to that float format.

Example:
    >>> import torch, torch.nn as nn
    >>> from edgequant.quant.scheme import get_scheme
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    >>> _ = net(torch.randn(1, 3, 8, 8)); net = net.eval()
    >>> sim = quantize_module(net, get_scheme("w8a8"), torch.randn(8, 3, 8, 8))
    >>> sim(torch.randn(2, 3, 8, 8)).shape
    torch.Size([2, 2])
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from edgequant.errors import ModelError, ValidationError
from edgequant.quant import winograd
from edgequant.quant.fake_quant import (
    fake_quant,
    fake_quant_weight,
    qparams_from_range,
    weight_qparams,
)
from edgequant.quant.graph import (
    is_activation,
    node_module,
    quant_points,
    trace,
)
from edgequant.quant.layer_bits import layer_weight_quants
from edgequant.quant.observers import Observer, make_observer
from edgequant.quant.scheme import Scheme, TensorQuant

_FLOAT_CAST = {"fp16": torch.float16, "bf16": torch.bfloat16}


# ops whose output on integer-valued input is still on the same grid: no requantization needed
def _float_round(x: torch.Tensor, float_dtype: str) -> torch.Tensor:
    dt = _FLOAT_CAST.get(float_dtype)
    return x if dt is None else x.to(dt).to(x.dtype)


class ActQuant(nn.Module):
    """Fake-quantizes an activation with frozen (calibrated) or dynamic parameters.

    ``mode``: ``observe`` (pass through, feed the observer), ``quant`` (fake-quantize) or
    ``off``. With ``tq=None`` it rounds to ``float_dtype`` instead (fp16/bf16 schemes).
    ``export`` switches to ``torch.fake_quantize_per_tensor_affine`` so ONNX export emits
    QuantizeLinear/DequantizeLinear.
    """

    scale: torch.Tensor
    zero_point: torch.Tensor

    def __init__(self, tq: TensorQuant | None, float_dtype: str = "fp32") -> None:
        super().__init__()
        self.tq = tq
        self.float_dtype = float_dtype
        self.mode = "quant"
        self.export = False
        self.observer: Observer | None = None
        self.register_buffer("scale", torch.tensor(1.0))
        self.register_buffer("zero_point", torch.tensor(0, dtype=torch.int32))

    def freeze(self) -> None:
        """Turn the observed range into scale/zero-point and start quantizing."""
        if self.tq is not None and self.observer is not None:
            s, z = self.observer.qparams(self.tq)
            self.scale.copy_(s)
            self.zero_point.copy_(z)
        self.observer = None
        self.mode = "quant"

    def forward(self, x: Any) -> Any:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or self.mode == "off":
            return x
        if self.mode == "observe":
            if self.observer is not None:
                self.observer.update(x)
            return x
        if self.mode == "qat" and self.observer is not None and self.tq is not None:
            # QAT: ranges follow the observer (EMA of batch min/max) until frozen
            if self.training:
                self.observer.update(x)
            s, z = self.observer.qparams(self.tq)
            self.scale.copy_(s)
            self.zero_point.copy_(z)
        tq = self.tq
        if tq is None:
            return _float_round(x, self.float_dtype)
        if tq.dynamic:
            s, z = qparams_from_range(x.detach().min(), x.detach().max(), tq)
            return fake_quant(x, s, z, tq.qmin, tq.qmax)
        if self.export:
            return torch.fake_quantize_per_tensor_affine(
                x, float(self.scale), int(self.zero_point), tq.qmin, tq.qmax
            )
        return fake_quant(x, self.scale, self.zero_point, tq.qmin, tq.qmax)

    def extra_repr(self) -> str:
        return f"tq={self.tq}, float_dtype={self.float_dtype}, mode={self.mode}"


class QuantLayer(nn.Module):
    """A Conv2d or Linear with fake-quantized weights (and, for dynamic schemes, inputs).

    The original layer is kept as ``self.inner`` (its fp32 weight is the master copy, which QAT
    trains); ``weight_scale``/``weight_zero_point`` are the weight qparams at the scheme's
    granularity. ``winograd`` runs 3×3 stride-1 convs by INT4/INT6 Winograd F(2×2,3×3).
    """

    weight_scale: torch.Tensor
    weight_zero_point: torch.Tensor

    def __init__(
        self,
        inner: nn.Module,
        weights: TensorQuant | None,
        *,
        dynamic_input: TensorQuant | None = None,
        float_dtype: str = "fp32",
        use_winograd: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(inner, nn.Conv2d | nn.Linear):
            raise ModelError(f"QuantLayer wraps Conv2d or Linear, got {type(inner).__name__}")
        self.inner = inner
        self.wq = weights
        self.dynamic_input = dynamic_input
        self.float_dtype = float_dtype
        self.use_winograd = use_winograd and winograd.eligible(inner)
        self.export = False
        self.track_weight = False  # QAT: recompute weight qparams from the live weight
        # block reconstruction (brecq): the weight to compute with while its rounding is learnt
        self.weight_override: Callable[[], torch.Tensor] | None = None
        # saturation.IntegerPath: the target CPU's integer arithmetic (None: exact int32)
        self.arith: Callable[..., torch.Tensor] | None = None
        s, z = (
            weight_qparams(inner.weight, weights)
            if weights is not None
            else (torch.ones(1), torch.zeros(1))
        )
        self.register_buffer("weight_scale", s)
        self.register_buffer("weight_zero_point", z)

    def refresh_weight_qparams(self) -> None:
        """Recompute the weight scale from the current weight (after a transform or training)."""
        if self.wq is not None:
            s, z = weight_qparams(self.inner.weight, self.wq)
            self.weight_scale = s
            self.weight_zero_point = z

    def prepare_export(self) -> None:
        """Precompute the on-grid weight and flat qparams as buffers, so the ONNX exporter sees
        constants feeding one Q/DQ pair (4-bit weights land on the int8 grid exactly)."""
        self.export = True
        if self.wq is None or self.wq.block_size is not None or self.wq.bits > 8:
            return
        with torch.no_grad():
            w = fake_quant_weight(
                self.inner.weight, self.weight_scale, self.weight_zero_point, self.wq
            )
        self.register_buffer("export_weight", w.detach().clone())
        self.register_buffer("export_scale", self.weight_scale.reshape(-1).float().clone())
        self.register_buffer(
            "export_zero_point", self.weight_zero_point.reshape(-1).to(torch.int32).clone()
        )

    def quantized_weight(self) -> torch.Tensor:
        """The weight as the integer runtime sees it (dequantized), used by forward."""
        override = getattr(self, "weight_override", None)  # absent on older pickled sims
        if override is not None:
            return override()
        w = self.inner.weight
        if self.wq is None:
            return _float_round(w, self.float_dtype)
        if self.track_weight:
            self.refresh_weight_qparams()
        if self.export and hasattr(self, "export_weight"):
            # ONNX export: a Q/DQ pair on constants set by prepare_export()
            bufs = dict(self.named_buffers(recurse=False))
            return _export_weight_qdq(
                bufs["export_weight"], bufs["export_scale"], bufs["export_zero_point"]
            )
        return fake_quant_weight(w, self.weight_scale, self.weight_zero_point, self.wq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dynamic_input is not None:
            tq = self.dynamic_input
            s, z = qparams_from_range(x.detach().min(), x.detach().max(), tq)
            x = fake_quant(x, s, z, tq.qmin, tq.qmax)
        w = self.quantized_weight()
        inner = self.inner
        bias = inner.bias if inner.bias is None else _float_round(inner.bias, self.float_dtype)
        if isinstance(inner, nn.Linear):
            y = F.linear(x, w, bias)
        elif self.use_winograd:
            pad = (int(inner.padding[0]), int(inner.padding[1]))  # eligible(): a tuple
            return winograd.winograd_conv2d(x, w, bias, padding=pad, quantized=self.wq is not None)
        else:
            y = F.conv2d(x, w, bias, inner.stride, inner.padding, inner.dilation, inner.groups)
        path = getattr(self, "arith", None)  # absent on sims pickled before it existed
        return y if path is None or self.export else path(self, x, y)

    def extra_repr(self) -> str:
        arith = getattr(getattr(self, "arith", None), "arith", None)
        more = f", arith={arith.name}" if arith is not None else ""
        return f"weights={self.wq}, winograd={self.use_winograd}{more}"


def _export_weight_qdq(w: torch.Tensor, scale: torch.Tensor, zp: torch.Tensor) -> torch.Tensor:
    if scale.numel() == 1:
        return torch.fake_quantize_per_tensor_affine(w, float(scale.reshape(())), 0, -128, 127)
    return torch.fake_quantize_per_channel_affine(w, scale, zp, 0, -128, 127)


def _insert_after(gm: fx.GraphModule, node: fx.Node, name: str, module: nn.Module) -> None:
    gm.add_submodule(name, module)
    with gm.graph.inserting_after(node):
        new = gm.graph.call_module(name, (node,))
    node.replace_all_uses_with(new, delete_user_cb=lambda u: u is not new)


# --- building the simulator -----------------------------------------------------------------
LayerFactory = Callable[[str, nn.Module], nn.Module | None]


def prepare(
    module: nn.Module,
    scheme: Scheme,
    *,
    act_observer: str | None = None,
    layer_factory: LayerFactory | None = None,
    skip_layers: Iterable[str] = (),
    fold_bn: bool = True,
) -> fx.GraphModule:
    """A traced copy of ``module`` with quant layers and activation observers in place.

    BN is folded into the convs first (``fold_bn``), as every runtime's converter does.
    ``skip_layers``: names of Conv2d/Linear modules left in float (mixed precision).
    Each layer's weight bits are the scheme's ``layer_bits`` (:mod:`edgequant.quant.layer_bits`).
    ``layer_factory(name, module)`` may return a replacement for any module (QAT uses it).
    """
    if fold_bn:
        from edgequant.quant.bn_fold import fold_batchnorm  # bn_fold uses this module's tracer

        module = fold_batchnorm(module)[0]
    gm = trace(copy.deepcopy(module).eval())
    weight_quants = layer_weight_quants(gm, scheme)  # scheme.layer_bits, layer by layer
    skip = set(skip_layers)
    use_wino = "winograd" in scheme.techniques
    dyn = scheme.activations if scheme.is_dynamic else None
    for node in list(gm.graph.nodes):
        mod = node_module(gm, node)
        if mod is None:
            continue
        name = str(node.target)
        new: nn.Module | None = layer_factory(name, mod) if layer_factory else None
        if new is None and isinstance(mod, nn.Conv2d | nn.Linear) and name not in skip:
            new = QuantLayer(
                mod,
                weight_quants.get(name, scheme.weights),
                dynamic_input=dyn,
                float_dtype=scheme.float_dtype,
                use_winograd=use_wino,
            )
        if new is not None:
            _set_submodule(gm, name, new)
    _drop_identities(gm)
    static = scheme.activations is not None and not scheme.activations.dynamic
    float_cast = scheme.is_float and scheme.float_dtype != "fp32"
    if static or float_cast:
        method = act_observer or scheme.calibration.method
        for i, node in enumerate(quant_points(gm)):
            aq = ActQuant(scheme.activations if static else None, scheme.float_dtype)
            if static:
                aq.observer = make_observer(method)
                aq.mode = "observe"
            _insert_after(gm, node, f"act_quant_{i}", aq)
    gm.graph.lint()
    gm.recompile()
    return gm


def _drop_identities(gm: fx.GraphModule) -> None:
    """Remove Identity/Dropout nodes (folded BNs leave Identities) so conv → relu is adjacent."""
    for node in list(gm.graph.nodes):
        mod = node_module(gm, node)
        if isinstance(mod, nn.Identity | nn.Dropout) and node.args:
            node.replace_all_uses_with(node.args[0])  # type: ignore[arg-type]
            gm.graph.erase_node(node)


def _set_submodule(gm: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = gm.get_submodule(parent_name) if parent_name else gm
    setattr(parent, attr, new)


def calibrate(gm: nn.Module, calibration: np.ndarray | torch.Tensor, batch_size: int = 32) -> None:
    """Run calibration data through the observers, then freeze every ActQuant."""
    acts = [m for m in gm.modules() if isinstance(m, ActQuant)]
    if not any(a.observer is not None for a in acts):
        return
    x = torch.as_tensor(np.asarray(calibration, dtype=np.float32))
    if x.shape[0] == 0:
        raise ValidationError("calibration set is empty; pass at least one sample")
    with torch.no_grad():
        # one ActQuant at a time would be exact sequential calibration; observing all at once
        # with upstream quantizers still in float is what ORT/NNCF/TensorRT do, and is faster
        for a in acts:
            if a.observer is not None:
                a.mode = "observe"
        for i in range(0, x.shape[0], batch_size):
            gm(x[i : i + batch_size])
    for a in acts:
        if a.observer is not None and a.observer.count == 0:
            a.observer, a.mode = None, "off"  # not on the executed graph (e.g. removed point)
        else:
            a.freeze()


def quantize_module(
    module: nn.Module,
    scheme: Scheme,
    calibration: np.ndarray | torch.Tensor | None,
    *,
    act_observer: str | None = None,
    skip_layers: Iterable[str] = (),
    batch_size: int = 32,
    arith: str | None = None,
) -> fx.GraphModule:
    """The fake-quant simulator of ``module`` under ``scheme``, calibrated; eval mode.

    ``arith``: the integer arithmetic its int8 convs/linears compute with after calibration: an
    arithmetic (``exact``, ``pmaddubsw``, ``pmaddubsw-mlas``), a CPU INT8 class (``avx2``,
    ``avx512-vnni``, ...) or ``host`` (see :mod:`edgequant.quant.saturation`); None: exact.
    """
    gm = prepare(module, scheme, act_observer=act_observer, skip_layers=skip_layers)
    if scheme.is_static:
        if calibration is None:
            raise ValidationError(f"scheme {scheme.name} needs calibration data (pass --calib)")
        calibrate(gm, calibration, batch_size)
    if arith is not None:
        from edgequant.quant.saturation import set_arithmetic  # it imports this module

        set_arithmetic(gm, arith)
    return gm.eval()


def quant_params(gm: nn.Module) -> dict[str, Any]:
    """JSON-able summary of every quantizer: weight scales and activation scale/zero-point."""
    out: dict[str, Any] = {"layers": {}, "activations": {}}
    for name, m in gm.named_modules():
        if isinstance(m, QuantLayer) and m.wq is not None:
            out["layers"][name] = {
                "bits": m.wq.bits,
                "granularity": m.wq.granularity,
                "winograd": m.use_winograd,
                "scale": m.weight_scale.reshape(-1).tolist(),
            }
        elif isinstance(m, ActQuant) and m.tq is not None and not m.tq.dynamic:
            out["activations"][name] = {
                "bits": m.tq.bits,
                "scale": float(m.scale),
                "zero_point": int(m.zero_point),
            }
    return out


def weight_bytes(gm: nn.Module) -> int:
    """Bytes the weights take at their quantized widths (scales included), as a runtime stores them."""
    total = 0.0
    wrapped = {id(m.inner) for m in gm.modules() if isinstance(m, QuantLayer)}
    for m in gm.modules():
        if id(m) in wrapped:
            continue
        if isinstance(m, QuantLayer):
            n = m.inner.weight.numel()
            bits = m.wq.bits if m.wq is not None else (16 if m.float_dtype != "fp32" else 32)
            total += n * bits / 8 + (m.weight_scale.numel() * 4 if m.wq is not None else 0)
            if m.inner.bias is not None:
                total += m.inner.bias.numel() * 4
        elif isinstance(m, nn.Conv2d | nn.Linear | nn.BatchNorm2d):
            total += sum(p.numel() * 4 for p in m.parameters(recurse=False))
    return int(total)


__all__ = [
    "ActQuant",
    "QuantLayer",
    "calibrate",
    "is_activation",
    "prepare",
    "quant_params",
    "quant_points",
    "quantize_module",
    "trace",
    "weight_bytes",
]
