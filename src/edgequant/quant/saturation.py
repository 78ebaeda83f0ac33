"""The simulator's int8 layers on the target CPU's arithmetic, and the per-layer saturation report.

:func:`set_arithmetic` gives every static int8 conv/linear of a simulator (``quantize_module``) an
:class:`IntegerPath`: it reads the integer codes of the layer's input from the ActQuant that
quantized it, adds what the arithmetic of :mod:`edgequant.quant.int8_arith` changes (int16 pair
saturation on AVX2 / AVX-512 without VNNI) to the exact output, and counts saturated pairs and the
error energy; :func:`saturation_report` reads them per layer.

Example:
    >>> import torch, torch.nn as nn
    >>> from edgequant.quant.scheme import get_scheme
    >>> from edgequant.quant.simulate import quantize_module
    >>> sim = quantize_module(nn.Sequential(nn.Conv2d(4, 2, 1)), get_scheme("w8a8"),
    ...                       torch.rand(4, 4, 3, 3), arith="avx2")
    >>> _ = sim(torch.rand(1, 4, 3, 3)); [r.name for r in saturation_report(sim)]
    ['0']
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch

from edgequant.hw.cpu import CpuProfile
from edgequant.quant.int8_arith import (
    ARITHMETICS,
    Int8Arithmetic,
    get_arithmetic,
    saturation_correction,
)

if TYPE_CHECKING:
    from edgequant.quant.simulate import ActQuant, QuantLayer


@dataclass(frozen=True, kw_only=True)
class LayerSaturation:
    """One layer's line of the saturation report.

    ``sqnr_db``: the layer output under the arithmetic against the exact int32 one (inf: equal).
    """

    name: str
    kind: str
    pairs: int
    saturated: int
    sqnr_db: float

    @property
    def saturated_pct(self) -> float:
        return 100.0 * self.saturated / self.pairs if self.pairs else 0.0

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "saturated_pct": self.saturated_pct}


class IntegerPath:
    """Hook a :class:`~edgequant.quant.simulate.QuantLayer` calls with its exact output: adds what
    the arithmetic changes, from the integer codes of its input (``source``: the ActQuant that
    quantized it), and counts saturated pairs and the error energy for the report."""

    def __init__(self, arith: Int8Arithmetic, source: ActQuant) -> None:
        self.arith = arith
        self.source = source
        self.reset()

    def reset(self) -> None:
        self.pairs = 0
        self.saturated = 0
        self.signal = 0.0
        self.noise = 0.0

    def __call__(self, layer: QuantLayer, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        src = self.source
        tq = src.tq
        if tq is None or src.mode != "quant" or not self.arith.saturating:
            return y
        from edgequant.quant.fake_quant import round_half_even

        s, zp = src.scale.float(), int(src.zero_point)
        shift = 128 if tq.qmin < 0 else 0

        def to_codes(v: torch.Tensor) -> torch.Tensor:
            return torch.clamp(round_half_even(v / s) + zp, tq.qmin, tq.qmax) + shift

        with torch.no_grad():
            wscale = layer.weight_scale.float()
            w = round_half_even(layer.quantized_weight().detach().float() / wscale)
            inner: Any = layer.inner
            out_ch = w.shape[0]
            conv: dict[str, Any] = {}
            if isinstance(inner, torch.nn.Linear):
                x4, w4 = x.detach().reshape(-1, w.shape[1], 1, 1), w[:, :, None, None]
            else:
                x4, w4 = x.detach(), w
                conv = {
                    "stride": tuple(inner.stride),
                    "padding": tuple(inner.padding),
                    "dilation": tuple(inner.dilation),
                    "groups": int(inner.groups),
                }
            corr, n = saturation_correction(
                x4, w4, pad_code=zp + shift, arith=self.arith, to_codes=to_codes, **conv
            )
            self.pairs += n.pairs
            self.saturated += n.saturated
            self.signal += float(torch.linalg.vector_norm(y.detach().float()) ** 2)
            if n.saturated == 0:
                return y
            scale = (s * wscale.reshape(-1).expand(out_ch)).reshape(1, out_ch, 1, 1)
            delta = (corr * scale).reshape(y.shape)
            self.noise += float(torch.linalg.vector_norm(delta) ** 2)
        return y + delta


def _eligible(layer: torch.nn.Module) -> bool:
    wq = getattr(layer, "wq", None)
    inner = getattr(layer, "inner", None)
    if isinstance(inner, torch.nn.Conv2d) and (
        isinstance(inner.padding, str) or inner.padding_mode != "zeros"
    ):
        return False  # "same"/"valid" or reflect padding: not modelled, stays exact
    return (
        wq is not None
        and wq.bits <= 8
        and wq.symmetric
        and wq.block_size is None
        and not getattr(layer, "use_winograd", False)
        and getattr(layer, "dynamic_input", None) is None
    )


def set_arithmetic(
    gm: torch.fx.GraphModule,
    target: str | CpuProfile | Int8Arithmetic | None,
    *,
    exact_layers: Iterable[str] = (),
) -> int:
    """Make the simulator's int8 convs/linears compute with ``target``'s arithmetic (a name, an
    INT8 class, a CPU profile, ``host``); returns how many layers got the integer path. Layers that
    are not static w8a8 with symmetric weights (4-bit blocks, Winograd, dynamic, float) keep theirs;
    ``exact_layers`` (module names) get the exact arithmetic (a remedy: a saturation-free path).

    Example:
        >>> import torch, torch.nn as nn
        >>> from edgequant.quant.scheme import get_scheme
        >>> from edgequant.quant.simulate import quantize_module
        >>> sim = quantize_module(nn.Sequential(nn.Conv2d(4, 2, 1)), get_scheme("w8a8"),
        ...                       torch.rand(4, 4, 3, 3))
        >>> set_arithmetic(sim, "avx2")
        1
    """
    from edgequant.quant.graph import _is_passthrough, node_module
    from edgequant.quant.simulate import ActQuant, QuantLayer

    arith = get_arithmetic(target)
    keep_exact = set(exact_layers)
    count = 0
    for node in gm.graph.nodes:
        layer = node_module(gm, node)
        if not isinstance(layer, QuantLayer):
            continue
        layer.arith = None
        src = node.args[0] if node.args else None
        while (
            isinstance(src, torch.fx.Node) and src.op != "placeholder" and _is_passthrough(gm, src)
        ):
            src = src.args[0] if src.args else None
        source = node_module(gm, src) if isinstance(src, torch.fx.Node) else None
        aq = source if isinstance(source, ActQuant) else None
        if aq is None or aq.tq is None or aq.tq.dynamic or aq.tq.bits != 8 or not _eligible(layer):
            continue
        layer.arith = IntegerPath(ARITHMETICS["exact"] if node.target in keep_exact else arith, aq)
        count += 1
    return count


def saturation_report(gm: torch.nn.Module, *, reset: bool = False) -> list[LayerSaturation]:
    """Per layer with an integer path: pairs summed, pairs saturated, SQNR against exact, over
    every forward since the last reset (``reset=True`` clears the counters after reading).

    Example:
        >>> saturation_report(torch.nn.Sequential())
        []
    """
    from edgequant.quant.simulate import QuantLayer

    rows = []
    for name, m in gm.named_modules():
        path = getattr(m, "arith", None) if isinstance(m, QuantLayer) else None
        if not isinstance(path, IntegerPath):
            continue
        inner = m.inner
        kind = (
            "linear"
            if isinstance(inner, torch.nn.Linear)
            else ("depthwise" if inner.groups > 1 and inner.groups == inner.in_channels else "conv")
        )
        if kind != "linear":
            kind += f" {inner.kernel_size[0]}x{inner.kernel_size[1]}"
        sqnr = (
            math.inf if path.noise == 0 else 10 * math.log10(max(path.signal, 1e-300) / path.noise)
        )
        rows.append(
            LayerSaturation(
                name=name, kind=kind, pairs=path.pairs, saturated=path.saturated, sqnr_db=sqnr
            )
        )
        if reset:
            path.reset()
    return rows


def format_saturation_report(rows: list[LayerSaturation], top: int | None = None) -> str:
    """A plain-text table of the report, worst layers first (``top`` of them).

    Example:
        >>> print(format_saturation_report([LayerSaturation(name="c1", kind="conv 1x1", pairs=10,
        ...                                                 saturated=1, sqnr_db=30.0)]))
        layer  kind      saturated pairs  SQNR vs exact
        c1     conv 1x1  10.0000 %        30.0 dB
    """
    ordered = sorted(rows, key=lambda r: (-r.saturated_pct, r.sqnr_db))[:top]
    table = [("layer", "kind", "saturated pairs", "SQNR vs exact")] + [
        (
            r.name,
            r.kind,
            f"{r.saturated_pct:.4f} %",
            "exact" if math.isinf(r.sqnr_db) else f"{r.sqnr_db:.1f} dB",
        )
        for r in ordered
    ]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(wd) for cell, wd in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


__all__ = [
    "IntegerPath",
    "LayerSaturation",
    "format_saturation_report",
    "saturation_report",
    "set_arithmetic",
]
