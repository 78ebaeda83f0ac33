"""AdaRound: learnt up/down rounding of every weight (Nagel et al. 2020, "Up or Down?").

Round-to-nearest is not the best rounding for a layer's *output*: rounding some weights the
"wrong" way can cancel the errors of others on real inputs. AdaRound learns, per conv/linear
layer and on calibration inputs, whether each weight goes to ``floor(w/s)`` or ``floor(w/s)+1``:

* ``w̃ = s · clamp(floor(w/s) + h(V), qmin, qmax)`` with the rectified sigmoid
  ``h(V) = clip(sigmoid(V)·(ζ−γ) + γ, 0, 1)``, ``ζ = 1.1``, ``γ = −0.1``; ``V`` starts where
  ``h(V)`` equals the fractional part (``w̃ = w``);
* loss = ``‖W̃ x̂ − W x‖² / ‖W_rtn x̂ − W x‖²`` (the layer's output on the calibration data,
  relative to round-to-nearest) + ``λ · mean(1 − |2h − 1|^β)``, the regulariser off for the first
  20 % of the iterations, then ``β`` annealed from 20 to 2 so every ``h`` is pushed to 0 or 1;
* ``x`` is the layer's input in the fp32 model, ``x̂`` its input in the model whose *preceding*
  layers are already rounded (layer by layer, in execution order), so later layers correct the
  errors of earlier ones;
* positions are sampled: a pool of im2col rows per layer, a mini-batch of them per Adam step
  (vectorised over groups, so depthwise convs cost a multiply-add);
* at the end ``h ≥ ½`` rounds up; an output channel whose learnt rounding is not better than
  nearest on the pool keeps nearest (channels are independent terms of the loss); then each
  channel's bias takes its mean output error where that lowers the channel's MSE.

The grid is the **target runtime's**: :class:`WeightGrid` holds bits, granularity and the scale
rule its quantizer applies (default: symmetric restricted range, ``max|w| / (2^(b−1)−1)`` per
channel, as the simulator, TFLite, TensorRT, NNCF and ONNX Runtime's symmetric weights compute).
The returned weights are **on that grid** (``w = s · integer``, the largest ``|w|`` of each
channel kept at ``±qmax``), so the runtime's own quantizer, recomputing the scale from them,
reproduces them bit for bit (checked: a rule that cannot is an error).

Example:
    >>> import torch, torch.nn as nn
    >>> from edgequant.quant.scheme import get_scheme
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 1)).eval()
    >>> out, stats = adaround_module(net, get_scheme("w4a8"), torch.randn(16, 3, 12, 12),
    ...                              config=AdaRoundConfig(iterations=50))
    >>> len(stats), stats[0].layer
    (2, '0')
    >>> from edgequant.quant.fake_quant import fake_quant_weight, weight_qparams
    >>> w, tq = out[0].weight, get_scheme("w4a8").weights   # the simulator's own quantizer:
    >>> bool(torch.equal(fake_quant_weight(w, *weight_qparams(w, tq), tq), w))   # identity
    True
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypedDict, Unpack, cast

import numpy as np
import torch
import torch.nn as nn

from edgequant.console import progress_bar
from edgequant.errors import ValidationError
from edgequant.quant.adaround_data import (
    _batch_rows,
    _inputs,
    _simulator,
    _targets,
    sweep,
    traced,
)
from edgequant.quant.fake_quant import weight_qparams
from edgequant.quant.layer_bits import layer_weight_quants
from edgequant.quant.scheme import Scheme, TensorQuant

ZETA = 1.1
GAMMA = -0.1
ScaleRule = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True, kw_only=True)
class AdaRoundConfig:
    """Optimisation settings. ``pool_rows``: sampled im2col rows kept per layer (capped by
    ``pool_floats`` / row length); ``augment_images``: random crops/flips of the calibration
    images (:func:`edgequant.data.augment.crops_and_flips`, at most 3 per image) are added until
    there are about that many images (rows to learn on only: the simulator's activation ranges,
    like the runtime's, are calibrated on the originals). None for these three: :func:`settled`
    (more rows and images for ``adaround``, whose learnt rounding otherwise fits its 100 or 200
    images better than unseen ones); ``batch_rows``: rows per Adam step; ``reg``: λ;
    ``quant_inputs``: take ``x̂`` from the scheme's simulator (activations fake-quantized as the
    runtime will, earlier layers rounded) instead of the float model; ``through_activation``:
    reconstruct ``f(W̃x̂)`` with the ReLU/ReLU6/clip the runtime fuses after the layer;
    ``cache_activations``: one node-by-node pass of the graph instead of a partial forward per
    layer (same inputs, O(L) instead of O(L²) work; needs a ``torch.fx``-traceable model);
    ``correct_bias``: after rounding, shift each channel's bias by its mean output error on the
    rows where that lowers the channel's MSE (empirical bias correction; the bias stays float);
    ``clip_search``: first narrow each channel's weight range where round-to-nearest's output
    error on the rows says so (:func:`_clip_search`; the largest kept weight then sets the
    runtime's scale); None: on with ``adaround`` and ``brecq`` on grids of 4 bits or fewer, off
    otherwise.
    Measured on EfficientNet-Lite0, each half of 200 dev images calibrating for the other (Intel
    Xeon, amx-int8): w4a8 AdaRound in the simulator drop 3.5 / agreement 93.0% with it, 4.5 /
    89.5% without; w4a8 GPTQ 5.5 points with it, 3.5 without (GPTQ pushes a clipped weight's
    whole error onto the columns after it); ``w8a8-ada`` on the four runtimes agreement 97.0–97.5%
    with it, 97.5–98.5% without; ``method``: ``adaround`` (learnt
    rounding, the loss above) or ``gptq`` (one-pass error feedback through the inverse Hessian,
    :mod:`edgequant.quant.gptq`: seconds, no SGD; the iteration settings are then unused) or
    ``brecq`` (the rounding of every layer of a block learnt together on the block's output,
    :mod:`edgequant.quant.brecq`; ``block_images`` whole images a step, ``max_block_layers``
    layers at most a block, biases learnt with ``correct_bias``).

    Example:
        >>> AdaRoundConfig().iterations
        300
    """

    iterations: int = 300
    batch_rows: int = 512
    pool_rows: int | None = None
    pool_floats: int | None = None
    augment_images: int | None = None
    lr: float = 3e-2
    reg: float = 0.1
    warmup: float = 0.2
    beta: tuple[float, float] = (20.0, 2.0)
    max_images: int = 256
    batch_size: int = 32
    seed: int = 0
    quant_inputs: bool = True
    through_activation: bool = True
    cache_activations: bool = True
    correct_bias: bool = True
    clip_search: bool | None = None
    method: str = "adaround"
    block_images: int = 8
    max_block_layers: int = 4


#: ``(pool_rows, pool_floats, augment_images)`` of the learnt per-layer rounding (``adaround``)
#: and of the other methods (``gptq``, ``brecq``: kept as they were measured). A rounding learnt
#: on 100 images fits them better than unseen ones; more rows and crops/flips narrow the gap.
#: Measured on EfficientNet-Lite0, each half of 200 dev images calibrating for the other (Intel
#: Xeon, amx-int8), against 4,096 rows of the originals: w4a8 (first and last layers at 8 bits)
#: logits SQNR on the unseen half 8.2 → 8.94–8.96 dB, drop 2.0 → 1.0–1.5, agreement 91.0 →
#: 93.0% (a rounding learnt on 100 images reproduced their own logits at 21 dB); ``w8a8-ada``
#: in the simulator 24.29 → 24.43 dB (agreement 97.5 → 98.0%) and on the four runtimes +0.15 to
#: +0.25 dB each (side by side in one run). Cost: ~1.3× (8 bits) to ~3× (4 bits) the time,
#: ~4.5 GB resident instead of ~1 GB for 100 calibration images.
POOL_ADAROUND = (65_536, 200_000_000, 400)
POOL_OTHER_METHODS = (4096, 24_000_000, 0)
#: images smaller than this (a side, in pixels) are not augmented
MIN_AUGMENTED_SIDE = 32


def settled(config: AdaRoundConfig) -> AdaRoundConfig:
    """``config`` with ``pool_rows``, ``pool_floats`` and ``augment_images`` decided: what the
    caller set, else :data:`POOL_ADAROUND` for the learnt per-layer rounding (``adaround``), else
    :data:`POOL_OTHER_METHODS` (``gptq`` and ``brecq`` keep the settings they were measured with).

    Example:
        >>> settled(AdaRoundConfig()).augment_images
        400
        >>> settled(AdaRoundConfig(pool_rows=10)).pool_rows
        10
        >>> settled(AdaRoundConfig(method="gptq")).augment_images
        0
    """
    rows, floats, images = POOL_ADAROUND if config.method == "adaround" else POOL_OTHER_METHODS
    return replace(
        config,
        pool_rows=rows if config.pool_rows is None else config.pool_rows,
        pool_floats=floats if config.pool_floats is None else config.pool_floats,
        augment_images=images if config.augment_images is None else config.augment_images,
    )


def defaults_signature() -> str:
    """The library defaults :func:`settled` and :func:`with_augmented` apply, as text (part of
    the disk cache's key: a release that changes them must not reuse older roundings).

    Example:
        >>> "65536" in defaults_signature()
        True
    """
    return repr((POOL_ADAROUND, POOL_OTHER_METHODS, MIN_AUGMENTED_SIDE))


def with_augmented(x: torch.Tensor, images: int, seed: int) -> torch.Tensor:
    """``x`` followed by random crops/flips of its images (at most 3 per image) up to about
    ``images`` in all; ``x`` unchanged when it is not a batch of images of at least
    :data:`MIN_AUGMENTED_SIDE` pixels a side (a crop of an 8×8 digit is another digit), or is
    already that big.

    Example:
        >>> with_augmented(torch.zeros(2, 3, 32, 32), 8, 0).shape[0]
        8
        >>> with_augmented(torch.zeros(2, 1, 8, 8), 8, 0).shape[0]
        2
        >>> with_augmented(torch.zeros(2, 5), 8, 0).shape[0]
        2
    """
    copies = min(3, images // max(1, x.shape[0]) - 1)
    if x.dim() != 4 or copies < 1 or min(x.shape[2:]) < MIN_AUGMENTED_SIDE:
        return x
    from edgequant.data.augment import crops_and_flips

    extra = crops_and_flips(x.numpy(), copies, seed=seed)
    return torch.cat([x, torch.from_numpy(extra)])


@dataclass(frozen=True, kw_only=True)
class WeightGrid:
    """The integer grid a runtime puts a weight on: symmetric, ``bits``, ``granularity``
    (``channel``, ``tensor`` or ``block:N``) and ``scale_rule(weight) -> scale`` (broadcastable to
    the weight; ``None``: ``max|w|/qmax`` at the granularity, the simulator's own rule).

    Example:
        >>> g = WeightGrid.from_tensor_quant(TensorQuant(bits=4, granularity="channel"))
        >>> g.qmax, g.granularity
        (7, 'channel')
    """

    bits: int = 8
    granularity: str = "channel"
    scale_rule: ScaleRule | None = None

    @classmethod
    def from_tensor_quant(cls, tq: TensorQuant) -> WeightGrid:
        if not tq.symmetric:
            raise ValidationError(
                "adaround needs symmetric weights (every built-in scheme has them); set "
                "weights.symmetric: true"
            )
        return cls(bits=tq.bits, granularity=tq.granularity)

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1

    def tensor_quant(self) -> TensorQuant:
        return TensorQuant(bits=self.bits, symmetric=True, granularity=self.granularity)

    def scale(self, w: torch.Tensor) -> torch.Tensor:
        """The scale the runtime computes for ``w``, expanded to ``w``'s shape."""
        if self.scale_rule is not None:
            return torch.broadcast_to(self.scale_rule(w.detach()).float(), w.shape).clone()
        s, _ = weight_qparams(w.detach(), self.tensor_quant())
        return _expand(s, w, self.tensor_quant().block_size)


@dataclass(frozen=True)
class LayerStats:
    """What AdaRound did to one layer: output MSE (on its pooled calibration rows, relative to
    nothing) with nearest and with the learnt rounding, share of weights rounded differently."""

    layer: str
    mse_nearest: float
    mse_adaround: float
    flipped_pct: float
    kept_nearest: bool


def _expand(s: torch.Tensor, w: torch.Tensor, block: int | None) -> torch.Tensor:
    if block is None:
        return torch.broadcast_to(s, w.shape).clone()
    out_ch, in_ch = w.shape[0], w.shape[1]
    per_in = s.reshape(out_ch, -1).repeat_interleave(block, dim=1)[:, :in_ch]
    return per_in.reshape(out_ch, in_ch, *([1] * (w.dim() - 2))).expand(w.shape).clone()


def rectified_sigmoid(v: torch.Tensor) -> torch.Tensor:
    """``clip(sigmoid(v)·(ζ−γ) + γ, 0, 1)``.

    Example:
        >>> rectified_sigmoid(torch.tensor([-10.0, 0.0, 10.0]))
        tensor([0.0000, 0.5000, 1.0000])
    """
    return torch.clamp(torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def _fixed_point_scale(s: torch.Tensor, qmax: int) -> torch.Tensor:
    """Nudge ``s`` (≤ a few ulps) so ``fl(fl(s·qmax)/qmax) == s``: then a quantizer recomputing
    ``max|w|/qmax`` from ``w = s·q`` finds ``s`` again, exactly."""
    for _ in range(4):
        nxt = (s * qmax) / qmax
        if torch.equal(nxt, s):
            break
        s = nxt
    return s


def clipped(w: torch.Tensor, clip: torch.Tensor) -> torch.Tensor:
    """``w`` clamped to ``[-clip, clip]`` (``clip`` broadcastable to ``w``).

    Example:
        >>> clipped(torch.tensor([0.5, -1.0, 0.25]), torch.tensor(0.75)).tolist()
        [0.5, -0.75, 0.25]
    """
    return torch.maximum(torch.minimum(w, clip), -clip)


def on_grid(
    w: torch.Tensor, grid: WeightGrid, clip: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(scale, floor codes, pinned)`` of ``w`` on ``grid``: ``pinned`` marks the elements at
    ``±qmax`` (the per-group maxima, which keep the scale reproducible and are not learnt).
    With ``clip`` (broadcastable to ``w``) the scale is the one the runtime computes for ``w``
    clamped to ``±clip``, and every element beyond it is pinned at ``±qmax``: the weights
    handed over then have ``clip`` as their largest magnitude and the runtime finds that scale.

    Example:
        >>> s, fl, pin = on_grid(torch.tensor([[0.5, -1.0, 0.26]]), WeightGrid(bits=4))
        >>> fl.tolist(), pin.tolist()
        ([[3.0, -7.0, 1.0]], [[False, True, False]])
        >>> s, fl, pin = on_grid(torch.tensor([[0.5, -1.0, 0.26]]), WeightGrid(bits=4),
        ...                      clip=torch.tensor([[0.7]]))
        >>> fl.tolist(), pin.tolist()
        ([[5.0, -7.0, 2.0]], [[False, True, False]])
    """
    w = w.detach().float()
    s = grid.scale(w if clip is None else clipped(w, clip))
    if grid.scale_rule is None:
        s = _fixed_point_scale(s, grid.qmax)
    ratio = w / s
    pinned = ratio.abs() >= grid.qmax - 1e-3
    floor = torch.floor(ratio)
    floor = torch.where(pinned, torch.sign(ratio) * grid.qmax, floor)
    return s, torch.clamp(floor, -grid.qmax, grid.qmax), pinned


def _nearest(
    w: torch.Tensor, s: torch.Tensor, floor: torch.Tensor, pinned: torch.Tensor, qmax: int
) -> torch.Tensor:
    up = (w / s - floor) >= 0.5
    return torch.where(pinned, floor, torch.clamp(floor + up.float(), -qmax, qmax))


def _layer_matrix(layer: nn.Module, w: torch.Tensor) -> torch.Tensor:
    """Weight as (groups, O/g, K)."""
    g = layer.groups if isinstance(layer, nn.Conv2d) else 1
    return w.reshape(g, w.shape[0] // g, -1)


def _apply(rows: torch.Tensor, wm: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    if wm.shape[0] == 1:
        y = rows[:, 0] @ wm[0].T
    elif wm.shape[1] == 1:  # depthwise
        y = (rows * wm[:, 0][None]).sum(2)
    else:
        y = torch.einsum("rgk,gok->rgo", rows, wm).reshape(rows.shape[0], -1)
    return y if bias is None else y + bias


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


# --- the optimisation of one layer -----------------------------------------------------------
Act = Callable[[torch.Tensor], torch.Tensor]


def _learn_v(
    layer: nn.Module,
    rows: torch.Tensor,
    target: torch.Tensor,
    grid_codes: tuple[torch.Tensor, torch.Tensor, torch.Tensor, int],
    bias: torch.Tensor | None,
    config: AdaRoundConfig,
    f: Act,
) -> torch.Tensor:
    """Adam on ``V`` (the loss of the module doc) from ``(scale, floor, pinned, qmax)``;
    returns the final ``V``."""
    s, floor, pinned, qmax = grid_codes
    w = cast(torch.Tensor, layer.weight).detach().float()
    rest = (w / s - floor).clamp(0.0, 1.0)
    p = ((rest - GAMMA) / (ZETA - GAMMA)).clamp(1e-4, 1 - 1e-4)
    v = torch.log(p / (1 - p)).requires_grad_(True)
    learn = (~pinned).float()
    nearest = _nearest(w, s, floor, pinned, qmax)
    with torch.no_grad():
        y = f(_apply(rows, _layer_matrix(layer, nearest * s), bias))
        norm = max(float(((y - target) ** 2).mean()), 1e-20)
    m1, m2 = torch.zeros_like(v), torch.zeros_like(v)  # Adam moments (no torch.optim import)
    gen = torch.Generator().manual_seed(config.seed)
    n_rows, warm = rows.shape[0], int(config.warmup * config.iterations)
    for it in range(config.iterations):
        idx = (
            torch.randint(0, n_rows, (config.batch_rows,), generator=gen)
            if n_rows > config.batch_rows
            else slice(None)
        )
        h = rectified_sigmoid(v)
        q = torch.clamp(floor + h * learn, -qmax, qmax)
        y = f(_apply(rows[idx], _layer_matrix(layer, q * s), bias))
        loss = ((y - target[idx]) ** 2).mean() / norm
        if it >= warm:
            frac = (it - warm) / max(1, config.iterations - warm)
            beta = config.beta[0] + (config.beta[1] - config.beta[0]) * frac
            reg = ((1 - (2 * h - 1).abs().pow(beta)) * learn).sum() / learn.sum().clamp(min=1)
            loss = loss + config.reg * reg
        (grad,) = torch.autograd.grad(loss, v)
        with torch.no_grad():
            m1.mul_(0.9).add_(grad, alpha=0.1)
            m2.mul_(0.999).addcmul_(grad, grad, value=0.001)
            step = config.lr * math.sqrt(1 - 0.999 ** (it + 1)) / (1 - 0.9 ** (it + 1))
            v.sub_(step * m1 / (m2.sqrt() + 1e-8))
    return v.detach()


def round_layer(
    layer: nn.Module,
    rows: torch.Tensor,
    target: torch.Tensor,
    grid: WeightGrid,
    config: AdaRoundConfig,
    name: str = "",
    act: Act | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, LayerStats]:
    """The learnt on-grid weight of ``layer`` for input rows ``rows`` (R, g, K) and fp32 output
    ``target`` (R, O) (before ``act``, the activation fused after the layer, which both sides go
    through), its bias (shifted by the mean error with ``config.correct_bias``; None when the
    layer has none) and its :class:`LayerStats`."""
    f: Act = act if act is not None else _identity
    post = f(target)
    weight, b = cast(torch.Tensor, layer.weight), cast("torch.Tensor | None", layer.bias)
    w = weight.detach().float()
    bias = None if b is None else b.detach().float()
    search = clip_searched(config, grid)
    clip = _clip_search(layer, w, rows, post, grid, bias, f) if search else None
    s, floor, pinned = on_grid(w, grid, clip)
    w_near = _nearest(w, s, floor, pinned, grid.qmax) * s
    if config.method == "gptq":
        w_hard = _gptq_weight(layer, w, rows, s, pinned, grid.qmax)
    else:
        v = _learn_v(layer, rows, post, (s, floor, pinned, grid.qmax), bias, config, f)
        hard = torch.where(
            pinned, floor, torch.clamp(floor + (v >= 0).float(), -grid.qmax, grid.qmax)
        )
        w_hard = hard * s
    with torch.no_grad():  # per output channel: channels do not interact in the loss
        near_ch = ((f(_apply(rows, _layer_matrix(layer, w_near), bias)) - post) ** 2).mean(0)
        y_ada = _apply(rows, _layer_matrix(layer, w_hard), bias)
    ada_ch = ((f(y_ada) - post) ** 2).mean(0)
    better = ada_ch < near_ch  # a channel whose learnt rounding is not better keeps nearest
    w_q = torch.where(better.reshape(-1, *([1] * (w.dim() - 1))), w_hard, w_near)
    ch_mse = torch.where(better, ada_ch, near_ch)
    new_bias = bias
    if config.correct_bias:
        new_bias, ch_mse = _shift_bias(rows, target, layer, w_q, bias, ch_mse, f)
    stats = LayerStats(
        layer=name,
        mse_nearest=float(near_ch.mean()),
        mse_adaround=float(ch_mse.mean()),
        flipped_pct=100.0 * float((w_q != w_near).float().mean()),
        kept_nearest=not bool(better.any()),
    )
    out_bias = None if new_bias is None or b is None else new_bias.to(b.dtype)
    return w_q.to(weight.dtype), out_bias, stats


def clip_searched(config: AdaRoundConfig, grid: WeightGrid) -> bool:
    """Whether ``grid``'s layers get :func:`_clip_search` (``config.clip_search``; None: with the
    learnt roundings on grids of 4 bits or fewer).

    Example:
        >>> clip_searched(AdaRoundConfig(), WeightGrid(bits=4)), clip_searched(
        ...     AdaRoundConfig(method="gptq"), WeightGrid(bits=4))
        (True, False)
    """
    if config.clip_search is not None:
        return config.clip_search
    return config.method in ("adaround", "brecq") and grid.bits <= 4


#: the weight ranges :func:`_clip_search` tries, as shares of each channel's largest |w|
CLIP_RATIOS = tuple(1.0 - 0.025 * i for i in range(21))


def _clip_search(
    layer: nn.Module,
    w: torch.Tensor,
    rows: torch.Tensor,
    post: torch.Tensor,
    grid: WeightGrid,
    bias: torch.Tensor | None,
    f: Act,
) -> torch.Tensor | None:
    """Per output channel (per tensor on a per-tensor grid), the clipping of the weight range
    to a share of ``max|w|`` (:data:`CLIP_RATIOS`, 1 included) whose round-to-nearest weight
    gives the lowest output error on ``rows`` (through ``f``): a narrower range rounds the bulk
    of the weights finer at the price of the few largest, which at 4 bits often wins. Returns the
    clip broadcastable to ``w``, or None (block grids keep the full range)."""
    if grid.granularity not in ("channel", "tensor"):
        return None
    per_channel = grid.granularity == "channel"
    shape = (-1, *([1] * (w.dim() - 1)))
    amax = w.abs().reshape(w.shape[0], -1).amax(1) if per_channel else w.abs().amax()[None]
    best_err: torch.Tensor | None = None
    best = amax.clone()
    with torch.no_grad():
        for r in CLIP_RATIOS:
            clip = (amax * r).reshape(shape) if per_channel else (amax * r).reshape(())
            s, floor, pinned = on_grid(w, grid, clip)
            wq = _nearest(w, s, floor, pinned, grid.qmax) * s
            err = ((f(_apply(rows, _layer_matrix(layer, wq), bias)) - post) ** 2).mean(0)
            err = err if per_channel else err.mean()[None]
            if best_err is None:
                best_err = err
                continue
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best = torch.where(better, amax * r, best)
    if bool((best == amax).all()):
        return None
    return best.reshape(shape) if per_channel else best.reshape(())


def _gptq_weight(
    layer: nn.Module,
    w: torch.Tensor,
    rows: torch.Tensor,
    s: torch.Tensor,
    pinned: torch.Tensor,
    qmax: int,
) -> torch.Tensor:
    """GPTQ's on-grid weight (:mod:`edgequant.quant.gptq`) on ``w``'s scales ``s``."""
    from edgequant.quant.gptq import gptq_codes

    wm, sm, pm = (_layer_matrix(layer, t) for t in (w, torch.broadcast_to(s, w.shape), pinned))
    return gptq_codes(rows, wm, sm, pm, qmax).reshape(w.shape) * s


def _shift_bias(
    rows: torch.Tensor,
    target: torch.Tensor,
    layer: nn.Module,
    w_q: torch.Tensor,
    bias: torch.Tensor | None,
    ch_mse: torch.Tensor,
    f: Act,
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Empirical bias correction after rounding: add each channel's mean output error (before
    the activation) to its bias where that lowers the channel's MSE; ``(bias, channel MSE)``."""
    if bias is None:
        return None, ch_mse
    with torch.no_grad():
        y = _apply(rows, _layer_matrix(layer, w_q), bias)
        delta = (target - y).mean(0)
        shifted = ((f(y + delta) - f(target)) ** 2).mean(0)
    keep = shifted < ch_mse
    return bias + torch.where(keep, delta, 0.0), torch.where(keep, shifted, ch_mse)


def _check_reproduced(w: torch.Tensor, grid: WeightGrid, name: str) -> None:
    s = grid.scale(w)
    again = torch.clamp(torch.round(w / s), -grid.qmax, grid.qmax) * s
    if not torch.equal(again, w):
        raise ValidationError(
            f"adaround: layer {name}: the grid's scale rule does not reproduce its own on-grid "
            "weights (a rule like max|w|/127.5 shrinks them); use a restricted-range rule "
            "max|w|/qmax"
        )


# --- the whole model, layer by layer -------------------------------------------------------
GridFor = Callable[[str, nn.Module], WeightGrid | None]


class AdaRoundOptions(TypedDict, total=False):
    """The keyword options of :func:`adaround_module` and :func:`apply_adaround`: ``grid`` (a
    :class:`WeightGrid`, or ``(layer name, layer) -> WeightGrid | None`` so a runtime can give
    each layer its own grid, e.g. 7-bit where its kernels would saturate; None leaves that layer
    alone; default: the scheme's weight quantizer, restricted symmetric range) and ``config``."""

    grid: WeightGrid | GridFor | None
    config: AdaRoundConfig | None


def _grids(
    module: nn.Module,
    layers: dict[str, nn.Module],
    scheme: Scheme,
    grid: WeightGrid | GridFor | None,
) -> dict[str, WeightGrid]:
    if scheme.weights is None:
        raise ValidationError(f"adaround needs integer weights; scheme {scheme.name} has none")
    if isinstance(grid, WeightGrid):
        return dict.fromkeys(layers, grid)
    if grid is None:  # the scheme's own grid, each layer at its ``layer_bits``
        quants = layer_weight_quants(module, scheme)
        return {n: WeightGrid.from_tensor_quant(quants.get(n, scheme.weights)) for n in layers}
    return {n: g for n, m in layers.items() if (g := grid(n, m)) is not None}


def adaround_module(
    module: nn.Module,
    scheme: Scheme,
    calibration: np.ndarray | torch.Tensor,
    **options: Unpack[AdaRoundOptions],
) -> tuple[nn.Module, list[LayerStats]]:
    """A copy of ``module`` whose conv/linear weights are AdaRound-ed onto the grid (see
    :class:`AdaRoundOptions`), and per-layer stats in execution order. BN must already be folded
    (:func:`apply_adaround` does it). With ``config.cache_activations`` (default) the inputs come
    from one node-by-node pass of the simulator (the same values as one partial forward per
    layer, at the cost of one forward).
    """
    cfg = options.get("config") or AdaRoundConfig()
    x = torch.as_tensor(np.asarray(calibration, dtype=np.float32))[: cfg.max_images]
    if x.shape[0] == 0:
        raise ValidationError("adaround needs calibration data; the calibration set is empty")
    torch.manual_seed(cfg.seed)
    ref = copy.deepcopy(module).eval()
    out = copy.deepcopy(module).eval()
    layers: dict[str, nn.Module] = {
        n: m for n, m in ref.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)
    }
    grids = _grids(ref, layers, scheme, options.get("grid"))
    cfg = settled(cfg)
    fixed = _exported_batch(module)
    if fixed:  # a program exported at a static batch runs whole batches of that size only
        cfg = replace(cfg, batch_size=fixed)
        x = x[: max(fixed, len(x) - len(x) % fixed)]
    originals = x  # what the runtime calibrates its activation ranges on
    x = with_augmented(x, cast(int, cfg.augment_images), cfg.seed)
    if fixed:
        x = x[: len(x) - len(x) % fixed]
    # layers with no grid (the runtime computes them in float) stay float in the simulator too
    float_layers = [n for n in layers if n not in grids]
    if cfg.method == "brecq":
        from edgequant.quant.brecq import round_blocks

        stats_list = round_blocks(out, scheme, x, grids, cfg, float_layers)
        for st in stats_list:
            _check_reproduced(
                cast(torch.Tensor, out.get_submodule(st.layer).weight), grids[st.layer], st.layer
            )
        return out, stats_list
    order, pos, targets = _targets(ref, layers, grids, x, cfg)
    # the simulator's activation ranges from the originals, as the runtime's: crops and flips
    # only add rows (on EfficientNet-Lite0 they widened 10 of 60 min/max ranges by 5-19%)
    sim, acts = _simulator(out, scheme, originals, cfg, float_layers)
    stats: dict[str, LayerStats] = {}

    def learn(name: str, inputs: list[torch.Tensor]) -> None:
        layer = out.get_submodule(name)
        rows = _batch_rows(layer, inputs, pos[name])
        layer_cfg = replace(cfg, seed=cfg.seed + order.index(name))
        tgt = torch.cat(targets.pop(name))
        new_w, new_b, stats[name] = round_layer(
            layer, rows, tgt, grids[name], layer_cfg, name, acts.get(name)
        )
        _check_reproduced(new_w, grids[name], name)
        copies = [layer] if sim is None else [layer, sim.get_submodule(f"{name}.inner")]
        with torch.no_grad():
            for mod in copies:
                cast(torch.Tensor, mod.weight).copy_(new_w)
                if new_b is not None:
                    cast(torch.Tensor, mod.bias).copy_(new_b)
        if sim is not None:  # the simulator's weight scale follows the new weights
            refresh = getattr(sim.get_submodule(name), "refresh_weight_qparams", None)
            if refresh is not None:
                refresh()

    gm = traced(out, sim) if cfg.cache_activations else None
    with progress_bar(len(order), desc=f"{cfg.method}: {len(x)} images", unit="layer") as bar:

        def learn_one(name: str, inputs: list[torch.Tensor]) -> None:
            learn(name, inputs)
            bar.update(1)

        if gm is not None:
            sweep(gm, x, cfg.batch_size, set(order), learn_one)
        model = gm if gm is not None else sim if sim is not None else out
        for name in [n for n in order if n not in stats]:  # uncached (or missed by the graph)
            learn_one(name, _inputs(model, name, x, cfg.batch_size))
    return out, [stats[n] for n in order]


def _exported_batch(module: nn.Module) -> int | None:
    """The static batch a loaded ``.pt2`` program was exported at (its wrapper's ``batch``,
    :func:`edgequant.models.sources._program_module`); None for an ordinary module."""
    batch = getattr(module, "batch", None) if hasattr(module, "program") else None
    return batch if isinstance(batch, int) and batch > 0 else None


def apply_adaround(
    module: nn.Module,
    scheme: Scheme,
    calibration: np.ndarray | torch.Tensor,
    **options: Unpack[AdaRoundOptions],
) -> nn.Module:
    """BN folded, then every conv/linear AdaRound-ed onto the runtime's grid (see module doc).

    This is what a backend calls in front of its own quantizer when its grid differs from the
    scheme's default (pass ``grid``); :func:`~edgequant.quant.transforms.apply_techniques` calls
    it for the ``adaround`` technique with the default grid.

    Example:
        >>> import torch, torch.nn as nn
        >>> from edgequant.quant.scheme import get_scheme
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
        >>> out = apply_adaround(net, get_scheme("w8a8"), torch.randn(4, 3, 8, 8),
        ...                      config=AdaRoundConfig(iterations=10))
        >>> type(out[1]).__name__
        'Identity'
    """
    from edgequant.quant.bn_fold import fold_batchnorm

    folded, _ = fold_batchnorm(module)
    return adaround_module(folded, scheme, calibration, **options)[0]


__all__ = [
    "AdaRoundConfig",
    "AdaRoundOptions",
    "GridFor",
    "LayerStats",
    "WeightGrid",
    "adaround_module",
    "apply_adaround",
    "clip_searched",
    "defaults_signature",
    "on_grid",
    "rectified_sigmoid",
    "round_layer",
    "settled",
    "with_augmented",
]
