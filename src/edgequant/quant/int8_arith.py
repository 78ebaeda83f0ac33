"""The target CPU's integer arithmetic for int8 convs and linears, exactly, on any machine.

What the kernels do (read in the sources; the capped run in ``tests/quant/test_capped_isa.py``
measures the oneDNN case on this machine):

* **VNNI / AMX / ARM sdot** (``vpdpbusd``, ``tdpbusd``, ``sdot``): four u8×s8 products summed
  straight into int32 — exact. So is ARM without dotprod (``smlal`` widens to int16 products, int32
  sums) and XNNPACK's x86 path (``qs8`` gemm/dwconv ``avx2`` kernels sign-extend int8 to int16 with
  ``vpmovsxbw`` then ``vpmaddwd`` into int32: no saturation, about fp32 speed).
* **oneDNN without VNNI** (PyTorch, OpenVINO; ``jit_uni_x8s8s32x_conv_kernel``, ``brgconv`` on
  ``avx512_core``): ``vpbroadcastd`` four consecutive input channels of one kernel tap,
  ``vpmaddubsw`` sums the pairs (ic 0,1) and (ic 2,3) of u8×s8 products in **saturating int16**,
  ``vpmaddwd`` with ones adds the two pairs into int32. Pairs never cross taps; input channels are
  padded to a multiple of 4 with zeros. The *raw* u8 codes are multiplied (the source zero point is
  compensated afterwards, ``zp·Σw``), and padded taps are skipped and compensated, so they never
  saturate. **Depthwise** (``compute_ker_dw``) zero-extends u8 and sign-extends s8 to int32 lanes
  and uses ``vpmaddwd``: exact. A **signed** (s8) source is shifted by +128 and the weights are
  scaled by 0.5 on reorder (``wei_adj_scale``), which avoids saturation at the cost of one weight
  bit; that variant is not modelled here (edgequant's schemes give u8 activations).
  (github.com/uxlfoundation/oneDNN ``src/cpu/x64/jit_uni_x8s8s32x_conv_kernel.cpp``; issues #518,
  #717; "Nuances of int8 computations" in the oneDNN guide.)
* **MLAS** (ONNX Runtime) U8S8 ``QGemm``/``QLinearConv`` on AVX2: the same ``vpmaddubsw`` +
  ``vpmaddwd`` pair along the packed K dimension (ORT PR #24220 adds a saturation checker to
  ``ConvSymKernelAvx2`` for exactly this); the im2col K order is (kh, kw, c) with c fastest and the
  padding filled with the zero point, so with an odd channel count pairs cross taps
  (``pairing="flat"``). Its depthwise kernel (``qdwconv_avx2.cpp``) widens to int16 with the zero
  points subtracted and uses ``vpmaddwd``: exact. ``reduce_range`` (7-bit weights) is ORT's remedy.
* ``ONEDNN_MAX_CPU_ISA`` caps oneDNN's dispatch, measured on an AVX-512 VNNI Xeon: PyTorch's
  bundled oneDNN runs ``jit_uni_int8:avx2`` (AVX2), ``brg_conv_fwd:avx512_core`` (AVX512_CORE),
  ``brg_conv_fwd:avx2_vnni`` (AVX2_VNNI), and OpenVINO's fork ``jit_avx2_I8`` instead of
  ``brgconv_avx512_I8``; each is bit-exact with its class's arithmetic here. ``ATEN_CPU_CAPABILITY``
  only picks ATen's own vectorised kernels (default/avx2/avx512), not oneDNN's or FBGEMM's. MLAS
  and XNNPACK dispatch on CPUID and cannot be capped; under qemu-user with an AVX2 CPU model
  (:mod:`edgequant.hw.emulate`) MLAS's U8S8 QLinearConv is bit-exact with ``pmaddubsw-mlas``
  (odd channel counts included, where pairs cross taps) and its U8U8 kernel with ``exact``
  (``tests/quant/test_emulated_isa.py``).

So the arithmetics are ``exact`` and ``pmaddubsw`` (oneDNN layout) / ``pmaddubsw-mlas`` (flat
layout); :func:`get_arithmetic` maps a CPU's INT8 class to one. :func:`int8_conv2d` is the integer
reference; :func:`saturation_correction` is the vectorised part the simulator adds to its exact
(fake-quant) output: only weight pairs that *can* overflow on the observed input range are summed.
:mod:`edgequant.quant.saturation` puts it into the simulator and reports it per layer.

Example:
    >>> import torch
    >>> x = torch.full((1, 2, 1, 1), 250.0)               # u8 codes, zero point 0
    >>> w = torch.tensor([[[[127.0]], [[120.0]]]])         # one output, two input channels
    >>> int(int8_conv2d(x, w, 0, arith="exact")), int(int8_conv2d(x, w, 0, arith="pmaddubsw"))
    (61750, 32767)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from edgequant.errors import ValidationError
from edgequant.hw.cpu import INT8_CLASSES, PAIR_SATURATING, CpuProfile, cpu_profile

INT16_MIN, INT16_MAX = -32768, 32767
#: elements of one pair-sum block held in memory at once (float32: 64 MiB)
_CHUNK = 1 << 24


@dataclass(frozen=True, kw_only=True)
class Int8Arithmetic:
    """How a kernel family accumulates u8 × s8 products.

    ``pairing``: ``channel`` (adjacent input channels of one tap; oneDNN) or ``flat`` (adjacent
    entries of the (kh, kw, c) im2col row; MLAS). ``pad``: the u8 code padded taps multiply in the
    pair sums (``zero``: skipped, oneDNN; ``zp``: the zero point, MLAS).

    Example:
        >>> get_arithmetic("avx2").saturating, get_arithmetic("avx512-vnni").name
        (True, 'exact')
    """

    name: str
    saturating: bool
    pairing: str = "channel"
    pad: str = "zero"
    depthwise_saturates: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if self.pairing not in ("channel", "flat") or self.pad not in ("zero", "zp"):
            raise ValidationError(
                f"arithmetic {self.name}: pairing must be channel|flat and pad zero|zp"
            )


ARITHMETICS: dict[str, Int8Arithmetic] = {
    "exact": Int8Arithmetic(
        name="exact", saturating=False, description="int32 accumulation (VNNI, AMX, sdot, XNNPACK)"
    ),
    "pmaddubsw": Int8Arithmetic(
        name="pmaddubsw",
        saturating=True,
        description="oneDNN without VNNI: u8xs8 pairs of adjacent input channels in saturating int16",
    ),
    "pmaddubsw-mlas": Int8Arithmetic(
        name="pmaddubsw-mlas",
        saturating=True,
        pairing="flat",
        pad="zp",
        description="MLAS U8S8 without VNNI: adjacent (kh, kw, c) im2col entries in saturating int16",
    ),
}


def arithmetic_for_class(int8_class: str) -> str:
    """The arithmetic oneDNN/MLAS int8 kernels use on a CPU of this INT8 class.

    Example:
        >>> arithmetic_for_class("avx512"), arithmetic_for_class("arm-dotprod")
        ('pmaddubsw', 'exact')
    """
    if int8_class not in INT8_CLASSES:
        raise ValidationError(
            f"unknown INT8 class {int8_class!r}; use one of {', '.join(INT8_CLASSES)}"
        )
    return "pmaddubsw" if int8_class in PAIR_SATURATING else "exact"


def get_arithmetic(target: str | CpuProfile | Int8Arithmetic | None = None) -> Int8Arithmetic:
    """An arithmetic by name, by INT8 class (``avx2``, ``avx512-vnni``...), by CPU profile, or
    ``host``/``None`` for this machine's CPU.

    Example:
        >>> get_arithmetic("pmaddubsw").pairing, get_arithmetic("avx-vnni").name
        ('channel', 'exact')
    """
    if isinstance(target, Int8Arithmetic):
        return target
    if target is None or target == "host":
        target = cpu_profile()
    if isinstance(target, CpuProfile):
        return ARITHMETICS[arithmetic_for_class(target.int8_class)]
    if target in ARITHMETICS:
        return ARITHMETICS[target]
    if target in INT8_CLASSES:
        return ARITHMETICS[arithmetic_for_class(target)]
    raise ValidationError(
        f"unknown int8 arithmetic or CPU class {target!r}; use one of "
        f"{', '.join([*ARITHMETICS, *INT8_CLASSES, 'host'])}"
    )


# --- the pair layout -------------------------------------------------------------------------
def pair_layout(in_per_group: int, taps: int, pairing: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(channel, tap) of the two members of every pair of one output's reduction, shape (P, 2)
    each; -1 marks a zero pad member (channel counts are padded to pairs).

    Example:
        >>> c, t = pair_layout(3, 1, "channel")
        >>> c.tolist(), t.tolist()
        ([[0, 1], [2, -1]], [[0, 0], [0, -1]])
    """
    if pairing == "channel":
        cpad = in_per_group + in_per_group % 2
        c = torch.arange(cpad).repeat(taps)
        t = torch.arange(taps).repeat_interleave(cpad)
        c = torch.where(c < in_per_group, c, -1)
        t = torch.where(c >= 0, t, -1)
    else:  # flat: (tap, channel) with channel fastest, padded at the end
        c = torch.arange(in_per_group).repeat(taps)
        t = torch.arange(taps).repeat_interleave(in_per_group)
        if c.numel() % 2:
            c, t = torch.cat([c, c.new_tensor([-1])]), torch.cat([t, t.new_tensor([-1])])
    return c.reshape(-1, 2), t.reshape(-1, 2)


@dataclass(frozen=True)
class SaturationCount:
    """Pair sums computed and pair sums that saturated int16 in one call."""

    pairs: int
    saturated: int


def _unfold(
    x: torch.Tensor,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    pad_value: float,
) -> torch.Tensor:
    """(N, C, H, W) -> (N, C * kh * kw, L), row c * K + tap, padded with ``pad_value``."""
    if padding != (0, 0):
        p = (padding[1], padding[1], padding[0], padding[0])
        x = F.pad(x, p, value=pad_value)
    if kernel == (1, 1) and stride == (1, 1):
        return x.reshape(x.shape[0], x.shape[1], -1)
    return F.unfold(x, kernel, dilation=dilation, stride=stride)


def saturation_correction(
    x_raw: torch.Tensor,
    w_codes: torch.Tensor,
    *,
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] = (0, 0),
    dilation: tuple[int, int] = (1, 1),
    groups: int = 1,
    pad_code: float = 0.0,
    arith: str | Int8Arithmetic = "pmaddubsw",
    to_codes: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, SaturationCount]:
    """What int16 pair saturation adds to the exact int32 accumulators of a conv.

    ``x_raw``: (N, C, H, W) u8 codes as the kernel multiplies them (zero point included), or the
    float activation with ``to_codes`` (monotonic: float -> raw codes), which is then applied only
    to the channels that can saturate;
    ``w_codes``: (O, C/groups, kh, kw) s8 codes. Returns the (N, O, Ho, Wo) correction (0 where
    nothing saturates) and the counts. Only weight pairs whose same-sign sum times the observed
    per-channel input maximum can leave int16 are evaluated, so it is cheap when saturation is rare.

    Example:
        >>> x, w = torch.full((1, 2, 1, 1), 255.0), torch.full((1, 2, 1, 1), 127.0)
        >>> corr, n = saturation_correction(x, w)
        >>> int(corr), n.saturated, n.pairs
        (-32003, 1, 1)
    """
    a = get_arithmetic(arith)
    n, c_in, h, w_ = x_raw.shape
    o, cg, kh, kw = w_codes.shape
    k = (kh, kw)
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w_ + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = torch.zeros(n, o, ho * wo, dtype=torch.float32)
    pc, pt = pair_layout(cg, kh * kw, a.pairing)
    total = n * o * ho * wo * pc.shape[0]
    depthwise = groups == c_in and cg == 1 and groups > 1
    if not a.saturating or (depthwise and not a.depthwise_saturates):
        return out.reshape(n, o, ho, wo), SaturationCount(total, 0)
    chan, wv = _pair_weights(w_codes, groups, pc, pt)
    # a pair can overflow only if its largest same-sign sum on the observed inputs does
    xmax = x_raw.float().amax(dim=(0, 2, 3))
    xmax = (xmax if to_codes is None else to_codes(xmax)).clamp(min=0)
    if a.pad == "zp" and padding != (0, 0):
        xmax = torch.maximum(xmax, torch.tensor(float(pad_code)))
    xm = xmax[chan]
    hi = (xm * wv.clamp(min=0)).sum(-1)
    lo = (xm * wv.clamp(max=0)).sum(-1)
    oi, pi = torch.nonzero((hi > INT16_MAX) | (lo < INT16_MIN), as_tuple=True)
    if oi.numel() == 0:
        return out.reshape(n, o, ho, wo), SaturationCount(total, 0)
    # only the input channels of risky pairs are turned into codes and unfolded
    used, local = torch.unique(chan[oi, pi], return_inverse=True)
    rows = local * (kh * kw) + pt[pi].clamp(min=0)  # (R, 2)
    wr = wv[oi, pi]  # (R, 2)
    pad_value = float(pad_code) if a.pad == "zp" else 0.0
    nb = max(1, _CHUNK // max(used.numel() * kh * kw * ho * wo, 1))
    saturated = 0
    for i in range(0, n, nb):
        xs = x_raw[i : i + nb, used].float()
        xs = xs if to_codes is None else to_codes(xs)
        u = _unfold(xs, k, stride, padding, dilation, pad_value)
        saturated += _subtract_excess(out[i : i + nb], u, rows, wr, oi)
    return out.reshape(n, o, ho, wo), SaturationCount(total, saturated)


def _pair_weights(
    w_codes: torch.Tensor, groups: int, pc: torch.Tensor, pt: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Global input channel and weight of both members of each pair, per output channel.

    (O, P, 2) each; a missing member (odd count) has channel 0 and weight 0.
    """
    o, cg, kh, kw = w_codes.shape
    gbase = (torch.arange(o) // (o // groups) * cg)[:, None, None]  # (O, 1, 1)
    chan = torch.where(pc[None] >= 0, gbase + pc[None].clamp(min=0), 0)
    wflat = w_codes.reshape(o, cg, kh * kw).float()
    wv = wflat[torch.arange(o)[:, None, None], pc[None].clamp(min=0), pt[None].clamp(min=0)]
    return chan, torch.where(pc[None] >= 0, wv, 0.0)


def _subtract_excess(
    out: torch.Tensor, u: torch.Tensor, rows: torch.Tensor, wr: torch.Tensor, oi: torch.Tensor
) -> int:
    """Add to ``out`` (N, O, L) what int16 clamping takes off each risky pair's sum; the count.

    ``u``: unfolded input codes (N, rows, L); pair r multiplies rows ``rows[r]`` by ``wr[r]`` into
    output channel ``oi[r]``.
    """
    saturated = 0
    rb = max(1, _CHUNK // (u.shape[0] * u.shape[2]))
    for j in range(0, rows.shape[0], rb):
        r, wj = rows[j : j + rb], wr[j : j + rb]
        s = u[:, r[:, 0]] * wj[None, :, 0, None] + u[:, r[:, 1]] * wj[None, :, 1, None]
        excess = s - s.clamp(INT16_MIN, INT16_MAX)
        saturated += int((excess != 0).sum())
        out.index_add_(1, oi[j : j + rb], -excess)
    return saturated


def int8_conv2d(
    x_codes: torch.Tensor,
    w_codes: torch.Tensor,
    x_zero_point: int,
    *,
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] = (0, 0),
    dilation: tuple[int, int] = (1, 1),
    groups: int = 1,
    arith: str | Int8Arithmetic = "exact",
    signed_input: bool = False,
) -> torch.Tensor:
    """The int32 accumulators ``Σ (x − zp)·w`` of a quantized conv under an arithmetic (int64).

    ``x_codes`` are the activation codes (u8, or s8 with ``signed_input``: the kernels then add 128
    to reach u8 and compensate), zero padding is the real 0.0 (code ``x_zero_point``).

    Example:
        >>> x, w = torch.full((1, 4, 1, 1), 255.0), torch.full((1, 4, 1, 1), 127.0)
        >>> int(int8_conv2d(x, w, 0)), int(int8_conv2d(x, w, 0, arith="pmaddubsw"))
        (129540, 65534)
    """
    a = get_arithmetic(arith)
    xs = x_codes.double() - x_zero_point
    exact = F.conv2d(xs, w_codes.double(), None, stride, padding, dilation, groups)
    if not a.saturating:
        return exact.round().long()
    shift = 128 if signed_input else 0
    corr, _ = saturation_correction(
        x_codes.float() + shift,
        w_codes,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        pad_code=x_zero_point + shift,
        arith=a,
    )
    return (exact + corr.double()).round().long()


def int8_linear(
    x_codes: torch.Tensor,
    w_codes: torch.Tensor,
    x_zero_point: int,
    *,
    arith: str | Int8Arithmetic = "exact",
    signed_input: bool = False,
) -> torch.Tensor:
    """The accumulators ``Σ (x − zp)·w`` of a quantized linear (x: (..., in), w: (out, in)).

    Example:
        >>> int8_linear(torch.tensor([[255.0, 255.0]]), torch.tensor([[127.0, 127.0]]), 0,
        ...             arith="pmaddubsw").tolist()
        [[32767]]
    """
    lead = x_codes.shape[:-1]
    x4 = x_codes.reshape(-1, x_codes.shape[-1], 1, 1)
    acc = int8_conv2d(
        x4, w_codes[:, :, None, None], x_zero_point, arith=arith, signed_input=signed_input
    )
    return acc.reshape(*lead, w_codes.shape[0])


__all__ = [
    "ARITHMETICS",
    "Int8Arithmetic",
    "SaturationCount",
    "arithmetic_for_class",
    "get_arithmetic",
    "int8_conv2d",
    "int8_linear",
    "pair_layout",
    "saturation_correction",
]
