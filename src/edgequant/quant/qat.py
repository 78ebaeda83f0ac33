"""Quantization-aware training (Krishnamoorthi 2018; Jacob et al. 2018).

The recipe:

* start from the PTQ simulator of the scheme (same quant points, calibrated ranges);
* every conv followed by batch norm becomes a :class:`QATConvBn`: the BN is **folded into the
  conv weights during training** — ``W·γ/σ`` is fake-quantized, the conv output is divided back
  by ``γ/σ`` and batch-normalised with the *batch* statistics (so BN keeps training), exactly
  what the folded inference graph computes once BN is frozen;
* after ``freeze_bn_after_steps`` the BN running statistics are frozen and the conv computes
  the folded graph (``conv(x, q(W·γ/σ)) + β − γμ/σ``) — training then sees inference numerics;
* activation ranges follow an exponential moving average of the batch min/max until
  ``freeze_observers_after_steps``, then stay fixed;
* gradients flow through rounding by the straight-through estimator;
* with ``distill`` the loss is the KL divergence to the fp32 model's softened outputs, so
  unlabeled images suffice.

Example:
    >>> from edgequant.quant.scheme import get_scheme, QATConfig
    >>> result = run_qat(model, get_scheme("w4a8"), train_set,
    ...                  config=QATConfig(epochs=2, lr=1e-3))          # doctest: +SKIP
    >>> result.module(torch.from_numpy(x)).shape                        # doctest: +SKIP
    torch.Size([8, 10])
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from edgequant.data.base import Dataset
from edgequant.errors import ValidationError
from edgequant.quant.bn_fold import conv_bn_pairs
from edgequant.quant.fake_quant import fake_quant_weight, weight_qparams
from edgequant.quant.layer_bits import layer_weight_quants
from edgequant.quant.observers import EmaObserver
from edgequant.quant.scheme import QATConfig, Scheme, TensorQuant
from edgequant.quant.simulate import ActQuant, QuantLayer, calibrate, prepare


class QATConvBn(nn.Module):
    """Conv2d + BatchNorm2d trained with BN folded into the fake-quantized weights."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d, weights: TensorQuant | None) -> None:
        super().__init__()
        self.conv = conv
        self.bn = bn
        self.wq = weights
        self.bn_frozen = False

    def _factor(self) -> torch.Tensor:
        var = (
            self.bn.running_var
            if self.bn.running_var is not None
            else torch.ones(self.bn.num_features)
        )
        gamma = self.bn.weight if self.bn.weight is not None else torch.ones_like(var)
        return gamma / torch.sqrt(var + self.bn.eps)

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) of the folded conv with the running statistics."""
        s = self._factor()
        w = self.conv.weight * s.reshape(-1, 1, 1, 1)
        mean = self.bn.running_mean if self.bn.running_mean is not None else torch.zeros_like(s)
        beta = self.bn.bias if self.bn.bias is not None else torch.zeros_like(s)
        b = self.conv.bias if self.conv.bias is not None else torch.zeros_like(s)
        return w, beta + (b - mean) * s

    def _qweight(self, w: torch.Tensor) -> torch.Tensor:
        if self.wq is None:
            return w
        s, z = weight_qparams(w, self.wq)
        return fake_quant_weight(w, s, z, self.wq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        w, b = self.folded()
        y = F.conv2d(x, self._qweight(w), None, c.stride, c.padding, c.dilation, c.groups)
        if self.training and not self.bn_frozen:
            # undo the fold, then BN with batch statistics (it keeps learning its statistics)
            y = y / self._factor().reshape(1, -1, 1, 1)
            if c.bias is not None:
                y = y + c.bias.reshape(1, -1, 1, 1)
            return self.bn(y)
        return y + b.reshape(1, -1, 1, 1)

    def to_quant_layer(self) -> QuantLayer:
        """The folded conv as a :class:`QuantLayer` with frozen weight qparams (for export)."""
        conv = copy.deepcopy(self.conv)
        with torch.no_grad():
            w, b = self.folded()
            conv.weight.copy_(w)
            conv.bias = nn.Parameter(b.detach().clone())
        return QuantLayer(conv, self.wq)


@dataclass(kw_only=True)
class QATResult:
    """The trained simulator (eval mode, frozen) and how training went."""

    module: fx.GraphModule
    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)


def prepare_qat(module: nn.Module, scheme: Scheme, calibration: np.ndarray) -> fx.GraphModule:
    """The QAT graph: conv+BN pairs as :class:`QATConvBn`, the rest as the PTQ simulator, calibrated."""
    if scheme.weights is None:
        raise ValidationError(f"QAT needs a scheme with integer weights; {scheme.name} has none")
    if scheme.is_dynamic:
        raise ValidationError(f"QAT trains static ranges; {scheme.name} has dynamic activations")
    pairs = dict(conv_bn_pairs(module))
    bns = {bn: conv for conv, bn in pairs.items()}
    weight_quants = layer_weight_quants(module, scheme)  # scheme.layer_bits, layer by layer

    def factory(name: str, mod: nn.Module) -> nn.Module | None:
        if name in pairs:
            bn = module.get_submodule(pairs[name])
            wq = weight_quants.get(name, scheme.weights)
            return QATConvBn(copy.deepcopy(mod), copy.deepcopy(bn), wq)  # type: ignore[arg-type]
        if name in bns:
            return nn.Identity()
        return None

    gm = prepare(module, scheme, layer_factory=factory, fold_bn=False)
    # an Identity where a BN was is not a compute op: drop the quant point after it ...
    calibrate(gm, calibration)
    for m in gm.modules():
        if isinstance(m, QuantLayer):
            m.track_weight = True  # weights change while training: follow their range
    return gm


def _start_ema(gm: nn.Module) -> None:
    for m in gm.modules():
        if isinstance(m, ActQuant) and m.tq is not None:
            obs = EmaObserver()
            obs.lo = float((m.tq.qmin - m.zero_point) * m.scale)
            obs.hi = float((m.tq.qmax - m.zero_point) * m.scale)
            obs.count = 1
            m.observer = obs
            m.mode = "qat"


def freeze_observers(gm: nn.Module) -> None:
    for m in gm.modules():
        if isinstance(m, ActQuant) and m.mode == "qat":
            m.freeze()


def freeze_bn(gm: nn.Module) -> None:
    for m in gm.modules():
        if isinstance(m, QATConvBn):
            m.bn_frozen = True
            m.bn.eval()


def finalize(gm: fx.GraphModule) -> fx.GraphModule:
    """Freeze everything and replace each QATConvBn by its folded QuantLayer (eval mode)."""
    freeze_observers(gm)
    freeze_bn(gm)
    for name, m in list(gm.named_modules()):
        if isinstance(m, QATConvBn):
            parent_name, _, attr = name.rpartition(".")
            parent = gm.get_submodule(parent_name) if parent_name else gm
            setattr(parent, attr, m.to_quant_layer())
        elif isinstance(m, QuantLayer):
            m.track_weight = False
            m.refresh_weight_qparams()
    return gm.eval()


def _loss(
    out: torch.Tensor, x: torch.Tensor, teacher: nn.Module | None, labels: np.ndarray | None
) -> torch.Tensor:
    """Distillation from the fp32 teacher (temperature 2), else cross-entropy on the labels."""
    if teacher is not None:
        with torch.no_grad():
            t = F.softmax(teacher(x) / 2.0, dim=1)
        return F.kl_div(F.log_softmax(out / 2.0, dim=1), t, reduction="batchmean") * 4.0
    assert labels is not None  # run_qat refuses unlabelled data without distillation
    return F.cross_entropy(out, torch.from_numpy(labels))


def run_qat(
    module: nn.Module,
    scheme: Scheme,
    train: Dataset,
    *,
    config: QATConfig | None = None,
    calibration: np.ndarray | None = None,
    seed: int = 0,
    progress: bool = False,
) -> QATResult:
    """Quantization-aware training of ``module`` under ``scheme`` on ``train``.

    Labels are used unless ``config.distill`` (then the fp32 module is the teacher, so the
    dataset may be unlabeled).
    """
    cfg = config or scheme.qat or QATConfig()
    labels = train.labels
    if not cfg.distill and labels is None:
        raise ValidationError(
            f"{train.spec} has no labels: use --distill to learn from the fp32 model"
        )
    if len(train) == 0:
        raise ValidationError("the QAT training set is empty")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x_all = train.load_all()
    calib = calibration if calibration is not None else x_all[rng.permutation(len(x_all))[:256]]
    gm = prepare_qat(module, scheme, calib)
    teacher = copy.deepcopy(module).eval() if cfg.distill else None
    _start_ema(gm)
    gm.train()
    opt = torch.optim.Adam([p for p in gm.parameters() if p.requires_grad], lr=cfg.lr)
    steps_per_epoch = (len(x_all) + cfg.batch_size - 1) // cfg.batch_size
    total = cfg.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, total))
    losses: list[float] = []
    step = 0
    t0 = time.perf_counter()
    from edgequant.console import progress as progress_bar

    batches = [
        order[i : i + cfg.batch_size]
        for order in (rng.permutation(len(x_all)) for _ in range(cfg.epochs))
        for i in range(0, len(order), cfg.batch_size)
    ]
    for idx in progress_bar(
        batches, desc=f"QAT {scheme.name}", total=total, disable=None if progress else True
    ):
        if step == cfg.freeze_bn_after_steps:
            freeze_bn(gm)
        if step == cfg.freeze_observers_after_steps:
            freeze_observers(gm)
        x = torch.from_numpy(x_all[idx])
        loss = _loss(gm(x), x, teacher, None if labels is None else np.asarray(labels)[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        step += 1
    gm = finalize(gm)
    return QATResult(
        module=gm,
        steps=step,
        seconds=time.perf_counter() - t0,
        losses=losses,
        config={
            "epochs": cfg.epochs,
            "lr": cfg.lr,
            "batch_size": cfg.batch_size,
            "freeze_bn_after_steps": cfg.freeze_bn_after_steps,
            "freeze_observers_after_steps": cfg.freeze_observers_after_steps,
            "distill": cfg.distill,
        },
    )


__all__ = [
    "QATConvBn",
    "QATResult",
    "finalize",
    "freeze_bn",
    "freeze_observers",
    "prepare_qat",
    "run_qat",
]
