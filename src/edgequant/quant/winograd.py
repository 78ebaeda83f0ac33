"""INT8 Winograd F(2×2, 3×3) for 3×3 stride-1 convolutions, with low-bit transformed operands.

Winograd computes a 2×2 output tile from a 4×4 input tile with 16 element-wise multiplies per
(input, output) channel pair instead of 36 (2×2 outputs × 9 taps): 2.25× fewer multiplies.

    U = G g Gᵀ        (weights, 3×3 → 4×4, once)
    V = Bᵀ d B        (each 4×4 input tile)
    Y = Aᵀ [Σ_c U ⊙ V] A

The quantized variant (as in the "unified INT8" papers) quantizes the *transformed* operands:

* ``U`` to INT4, symmetric, **one scale per (output channel, tap)** — the 16 taps of ``G g Gᵀ``
  have very different ranges (the centre taps sum 4 weights, the corners are single weights), so
  a per-tap scale costs 16 floats per channel and saves most of the INT4 error.
* ``V`` to INT6, symmetric, **one scale per tap, computed from the batch** (dynamic): the input
  transform of int8 activations spans ±4× the int8 range, so a static int8 grid would not fit.
* ``Σ_c U_q ⊙ V_q`` is a sum of integer products (exact in float32 here: |U_q V_q| ≤ 8·32 and
  the channel sums stay far below 2²⁴), rescaled by ``s_U · s_V`` per tap before ``Aᵀ · A``.

Example:
    >>> import torch
    >>> x, w = torch.randn(1, 2, 6, 6), torch.randn(3, 2, 3, 3)
    >>> ref = torch.nn.functional.conv2d(x, w, padding=1)
    >>> bool(torch.allclose(winograd_conv2d(x, w, None, padding=1), ref, atol=1e-4))
    True
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgequant.quant.fake_quant import fake_quant, qparams_from_range
from edgequant.quant.scheme import TensorQuant

_BT = torch.tensor([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=torch.float32)
_G = torch.tensor([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=torch.float32)
_AT = torch.tensor([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=torch.float32)

#: bits of the transformed weights and inputs (the papers' INT4 / INT6 choice)
WEIGHT_BITS = 4
INPUT_BITS = 6


def eligible(conv: nn.Module) -> bool:
    """True for a 3×3, stride-1, dilation-1, ungrouped Conv2d (what F(2×2,3×3) covers)."""
    return (
        isinstance(conv, nn.Conv2d)
        and conv.kernel_size == (3, 3)
        and conv.stride == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and isinstance(conv.padding, tuple)
        and conv.padding_mode == "zeros"
    )


def transform_weight(w: torch.Tensor) -> torch.Tensor:
    """``G g Gᵀ`` for every (out, in) kernel: (O, I, 3, 3) → (O, I, 4, 4)."""
    g = _G.to(w.dtype)
    return torch.einsum("ik,ockl,jl->ocij", g, w, g)


def _tiles(x: torch.Tensor, padding: tuple[int, int]) -> tuple[torch.Tensor, int, int, int, int]:
    """Overlapping 4×4 input tiles with stride 2: (N, C, 4, 4, T) plus tile grid and out size."""
    n, c, h, w = x.shape
    ph, pw = padding
    out_h, out_w = h + 2 * ph - 2, w + 2 * pw - 2
    th, tw = (out_h + 1) // 2, (out_w + 1) // 2
    # pad so that 2*t + 2 input rows/cols exist (extra zeros only feed cropped outputs)
    xp = F.pad(x, (pw, 2 * tw + 2 - w - pw, ph, 2 * th + 2 - h - ph))
    cols = F.unfold(xp, kernel_size=4, stride=2)  # (N, C*16, T)
    return cols.reshape(n, c, 4, 4, th * tw), th, tw, out_h, out_w


def winograd_conv2d(
    x: torch.Tensor,
    w: torch.Tensor,
    bias: torch.Tensor | None,
    padding: int | tuple[int, int] = 1,
    *,
    quantized: bool = False,
    weight_bits: int = WEIGHT_BITS,
    input_bits: int = INPUT_BITS,
) -> torch.Tensor:
    """3×3 stride-1 convolution by Winograd F(2×2,3×3); ``quantized`` uses INT4 U / INT6 V.

    Exact (to float rounding) when not quantized.
    """
    pad = (padding, padding) if isinstance(padding, int) else (int(padding[0]), int(padding[1]))
    bt, at = _BT.to(x.dtype), _AT.to(x.dtype)
    d, th, tw, out_h, out_w = _tiles(x, pad)
    v = torch.einsum("ik,nckle,jl->ncije", bt, d, bt)  # Bᵀ d B
    u = transform_weight(w)
    if quantized:
        wq = TensorQuant(bits=weight_bits, symmetric=True)
        amax_u = u.detach().abs().amax(dim=1, keepdim=True)  # per (out channel, tap)
        su, zu = qparams_from_range(-amax_u, amax_u, wq)
        u = fake_quant(u, su, zu, wq.qmin, wq.qmax)
        iq = TensorQuant(bits=input_bits, symmetric=True)
        amax_v = v.detach().abs().amax(dim=(0, 1, 4), keepdim=True)  # per tap, this batch
        sv, zv = qparams_from_range(-amax_v, amax_v, iq)
        v = fake_quant(v, sv, zv, iq.qmin, iq.qmax)
    m = torch.einsum("ncije,ocij->noije", v, u)  # the 16 element-wise products, summed over c
    y = torch.einsum("ik,nokle,jl->noije", at, m, at)  # (N, O, 2, 2, T)
    n, o = y.shape[0], y.shape[1]
    y = y.reshape(n, o, 2, 2, th, tw).permute(0, 1, 4, 2, 5, 3).reshape(n, o, 2 * th, 2 * tw)
    y = y[:, :, :out_h, :out_w]
    if bias is not None:
        y = y + bias.reshape(1, -1, 1, 1)
    return y.contiguous()


def multiply_counts(conv: nn.Conv2d, out_hw: tuple[int, int]) -> tuple[int, int]:
    """(direct, winograd) multiplies of one image through this conv.

    Example:
        >>> c = nn.Conv2d(8, 8, 3, padding=1)
        >>> d, w = multiply_counts(c, (8, 8))
        >>> d / w
        2.25
    """
    oh, ow = out_hw
    cin, cout = conv.in_channels // conv.groups, conv.out_channels
    direct = oh * ow * cout * cin * 9
    tiles = ((oh + 1) // 2) * ((ow + 1) // 2)
    return direct, tiles * 16 * cout * cin


__all__ = [
    "INPUT_BITS",
    "WEIGHT_BITS",
    "eligible",
    "multiply_counts",
    "transform_weight",
    "winograd_conv2d",
]
