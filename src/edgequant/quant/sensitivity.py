"""Per-layer sensitivity: which layers lose the most when quantized, and what keeping them in
float buys (mixed precision).

One layer at a time, only that layer is quantized — its weights at the scheme's width and the
activation feeding it — while the rest of the network runs in fp32. The damage is measured on
the model's output: SQNR of the logits against fp32 (dB, higher is better), top-1 agreement with
fp32 and, with labels, top-1 accuracy. :func:`mixed_precision` then quantizes everything except
the K most sensitive layers (their weights *and* their input activations stay float).

Example:
    >>> rows = layer_sensitivity(module, get_scheme("w4a8"), calib, x, labels)   # doctest: +SKIP
    >>> rows[0].name, round(rows[0].sqnr_db, 1)                                 # doctest: +SKIP
    ('conv1', 14.2)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from edgequant.quant.fake_quant import sqnr_db
from edgequant.quant.scheme import Scheme
from edgequant.quant.simulate import ActQuant, QuantLayer, calibrate, node_module, prepare


@dataclass(kw_only=True)
class LayerSensitivity:
    """What quantizing one layer alone does to the model's output."""

    name: str
    kind: str
    params: int
    sqnr_db: float
    agreement_pct: float
    top1_pct: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _logits(module: nn.Module, x: np.ndarray, batch: int = 128) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate(
            [module(torch.from_numpy(x[i : i + batch])).numpy() for i in range(0, len(x), batch)]
        )


def _top1(logits: np.ndarray, labels: np.ndarray | None) -> float | None:
    return None if labels is None else float((logits.argmax(1) == labels).mean() * 100.0)


def _input_quantizers(gm: torch.fx.GraphModule) -> dict[str, str]:
    """QuantLayer name -> name of the ActQuant feeding it (when there is one)."""
    out = {}
    for node in gm.graph.nodes:
        if isinstance(node_module(gm, node), QuantLayer) and node.args:
            src = node.args[0]
            if hasattr(src, "op") and isinstance(node_module(gm, src), ActQuant):  # type: ignore[arg-type]
                out[str(node.target)] = str(src.target)  # type: ignore[union-attr]
    return out


def layer_sensitivity(
    module: nn.Module,
    scheme: Scheme,
    calibration: np.ndarray,
    x: np.ndarray,
    labels: np.ndarray | None = None,
) -> list[LayerSensitivity]:
    """Every conv/linear quantized alone; sorted most sensitive (lowest SQNR) first."""
    gm = prepare(module, scheme)
    if scheme.is_static:
        calibrate(gm, calibration)
    gm.eval()
    layers = {n: m for n, m in gm.named_modules() if isinstance(m, QuantLayer)}
    acts = {n: m for n, m in gm.named_modules() if isinstance(m, ActQuant)}
    feeds = _input_quantizers(gm)
    saved = {n: m.wq for n, m in layers.items()}
    ref = _logits(gm_float(gm, layers, acts), x)
    rows = []
    for name, layer in layers.items():
        for n, m in layers.items():
            m.wq = saved[n] if n == name else None
        for n, a in acts.items():
            a.mode = "quant" if feeds.get(name) == n else "off"
        y = _logits(gm, x)
        rows.append(
            LayerSensitivity(
                name=name,
                kind=type(layer.inner).__name__
                + (" dw" if getattr(layer.inner, "groups", 1) > 1 else ""),
                params=layer.inner.weight.numel(),
                sqnr_db=sqnr_db(torch.from_numpy(ref), torch.from_numpy(y)),
                agreement_pct=float((y.argmax(1) == ref.argmax(1)).mean() * 100.0),
                top1_pct=_top1(y, labels),
            )
        )
    for n, m in layers.items():
        m.wq = saved[n]
    for a in acts.values():
        a.mode = "quant"
    return sorted(rows, key=lambda r: r.sqnr_db)


def gm_float(
    gm: torch.fx.GraphModule, layers: dict[str, QuantLayer], acts: dict[str, ActQuant]
) -> nn.Module:
    """Switch every quantizer of ``gm`` off (weights float, activations pass) and return it."""
    for m in layers.values():
        m.wq = None
    for a in acts.values():
        a.mode = "off"
    return gm


def mixed_precision(
    module: nn.Module, scheme: Scheme, calibration: np.ndarray, keep_float: list[str]
) -> torch.fx.GraphModule:
    """The simulator with ``keep_float`` layers (weights and input activations) left in fp32."""
    gm = prepare(module, scheme, skip_layers=keep_float)
    keep = set(keep_float)
    # activation quantizers whose only consumers stay float are removed: no point quantizing them
    for node in list(gm.graph.nodes):
        if (
            isinstance(node_module(gm, node), ActQuant)
            and node.users
            and all(u.op == "call_module" and str(u.target) in keep for u in node.users)
        ):
            node.replace_all_uses_with(node.args[0])  # type: ignore[arg-type]
            gm.graph.erase_node(node)
    gm.graph.lint()
    gm.recompile()
    if scheme.is_static:
        calibrate(gm, calibration)
    return gm.eval()


__all__ = ["LayerSensitivity", "gm_float", "layer_sensitivity", "mixed_precision"]
