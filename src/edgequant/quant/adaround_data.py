"""Calibration data for AdaRound (:mod:`edgequant.quant.adaround`): sampled layer inputs and
fp32 targets, the scheme's simulator as the source of quantized inputs, fused activations.

Example:
    >>> import torch, torch.nn as nn
    >>> rows = _rows(nn.Conv2d(2, 4, 3), torch.randn(1, 2, 5, 5), torch.tensor([[0, 8]]))
    >>> tuple(rows.shape)   # 2 positions, 1 group, 2*3*3 taps
    (2, 1, 18)
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgequant.errors import UnsupportedError, ValidationError
from edgequant.quant.scheme import Scheme

if TYPE_CHECKING:
    from edgequant.quant.adaround import AdaRoundConfig, WeightGrid


# --- sampled layer inputs (im2col rows) ----------------------------------------------------
def _rows(layer: nn.Module, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """im2col rows of ``x`` at output positions ``pos`` (N, P): (N*P, in/g * k*k) per group
    layout ``(rows, groups, K)``."""
    if isinstance(layer, nn.Linear):
        flat = x.reshape(x.shape[0], -1, x.shape[-1])
        return flat[torch.arange(flat.shape[0])[:, None], pos].reshape(-1, 1, x.shape[-1])
    c: nn.Conv2d = layer  # type: ignore[assignment]
    if isinstance(c.padding, str) or c.padding_mode != "zeros":
        raise ValidationError(f"adaround: conv padding {c.padding!r}/{c.padding_mode} unsupported")
    cols = F.unfold(x, c.kernel_size, c.dilation, c.padding, c.stride)  # (N, C*k*k, L)
    picked = cols.gather(2, pos[:, None, :].expand(-1, cols.shape[1], -1))
    return picked.permute(0, 2, 1).reshape(-1, c.groups, cols.shape[1] // c.groups)


def _outputs_at(y: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Layer outputs (N, O, ...) or (N, ..., O) at positions ``pos`` -> (N*P, O)."""
    if y.dim() == 4:
        flat = y.reshape(y.shape[0], y.shape[1], -1)
        return (
            flat.gather(2, pos[:, None, :].expand(-1, y.shape[1], -1))
            .permute(0, 2, 1)
            .reshape(-1, y.shape[1])
        )
    flat = y.reshape(y.shape[0], -1, y.shape[-1])
    return flat[torch.arange(flat.shape[0])[:, None], pos].reshape(-1, y.shape[-1])


def _positions(n_out: int, n_img: int, per_img: int, gen: torch.Generator) -> torch.Tensor:
    per = min(per_img, n_out)
    return torch.stack([torch.randperm(n_out, generator=gen)[:per] for _ in range(n_img)])


class _Stop(Exception):
    pass


def _simulator(
    module: nn.Module,
    scheme: Scheme,
    x: torch.Tensor,
    cfg: AdaRoundConfig,
    float_layers: Iterable[str] = (),
) -> tuple[nn.Module | None, dict[str, Callable[[torch.Tensor], torch.Tensor]]]:
    """The scheme's calibrated simulator of ``module`` (source of ``x̂``; None when
    ``quant_inputs`` is off) and, per layer, the activation the runtime fuses after it.
    ``float_layers`` (those the runtime computes in float, with no grid) stay float in it, so
    the layers after them learn on the inputs the runtime gives them. A model ``torch.fx``
    cannot trace falls back to float inputs and pre-activation outputs."""
    from edgequant.errors import ModelError
    from edgequant.quant import simulate  # it imports fake_quant, as this module does

    if not (cfg.quant_inputs or cfg.through_activation):
        return None, {}
    try:
        gm = simulate.quantize_module(
            module, scheme, x, batch_size=cfg.batch_size, skip_layers=float_layers
        )
    except ModelError:  # untraceable: the float model's inputs, outputs before activations
        return None, {}
    acts = fused_activations(gm) if cfg.through_activation else {}
    return (gm if cfg.quant_inputs else None), acts


def fused_activations(
    gm: torch.fx.GraphModule,
) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """Per quantized layer of the simulator ``gm``, the activation the runtime fuses after it."""
    from edgequant.quant import simulate

    acts: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
    for node in gm.graph.nodes:
        layer = simulate.node_module(gm, node)
        users = list(node.users)
        if not isinstance(layer, simulate.QuantLayer) or len(users) != 1:
            continue
        if (fn := _activation_of(gm, users[0])) is not None:
            acts[str(node.target)] = fn
    return acts


def _activation_of(gm: nn.Module, node: object) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The fused activation ``node`` computes, as a function of its input (or None)."""
    from edgequant.quant import simulate

    assert isinstance(gm, torch.fx.GraphModule) and isinstance(node, torch.fx.Node)
    if not simulate.is_activation(gm, node):
        return None
    mod = simulate.node_module(gm, node)
    if mod is not None:
        return cast(Callable[[torch.Tensor], torch.Tensor], mod)
    rest = [*node.args[1:], *node.kwargs.values()]
    if node.op != "call_function" or any(isinstance(a, torch.fx.Node) for a in rest):
        return None
    fn, args, kwargs = node.target, node.args[1:], dict(node.kwargs)
    return lambda t: cast(Callable[..., torch.Tensor], fn)(t, *args, **kwargs)


def _targets(
    ref: nn.Module,
    layers: dict[str, nn.Module],
    grids: dict[str, WeightGrid],
    x: torch.Tensor,
    cfg: AdaRoundConfig,
) -> tuple[list[str], dict[str, torch.Tensor], dict[str, list[torch.Tensor]]]:
    """One fp32 pass: execution order, sampled output positions and fp32 outputs there."""
    order: list[str] = []
    pos: dict[str, torch.Tensor] = {}
    targets: dict[str, list[torch.Tensor]] = {}
    start = [0]

    def hook(name: str, idx: int):  # type: ignore[no-untyped-def]
        def fn(mod: nn.Module, args: tuple[torch.Tensor, ...], y: torch.Tensor) -> None:
            if name not in pos:
                order.append(name)
                gen = torch.Generator().manual_seed(cfg.seed * 7919 + idx)
                pos[name] = pool_positions(mod, y, x.shape[0], cfg, gen)
                targets[name] = []
            if len(targets[name]) * cfg.batch_size < start[0] + 1:
                p = pos[name][start[0] : start[0] + y.shape[0]]
                targets[name].append(_outputs_at(y.detach(), p))

        return fn

    handles = [
        m.register_forward_hook(hook(n, i)) for i, (n, m) in enumerate(layers.items()) if n in grids
    ]
    try:
        with torch.no_grad():
            for i in range(0, x.shape[0], cfg.batch_size):
                start[0] = i
                ref(x[i : i + cfg.batch_size])
    finally:
        for h in handles:
            h.remove()
    return order, pos, targets


def pool_positions(
    layer: nn.Module, y: torch.Tensor, n_img: int, cfg: AdaRoundConfig, gen: torch.Generator
) -> torch.Tensor:
    """Output positions (n_img, P) to sample for ``layer`` (output ``y``, any batch of it):
    ``cfg.pool_rows`` rows over the images, fewer where a row is long (``cfg.pool_floats``)."""
    n_out = y[0, 0].numel() if y.dim() == 4 else y[0].numel() // y.shape[-1]
    wt = cast(torch.Tensor, layer.weight)
    row_len = max(wt[0].numel() * _groups(layer), int(wt.shape[0]))
    assert cfg.pool_rows is not None and cfg.pool_floats is not None, "adaround.settled() first"
    rows = max(1, min(cfg.pool_rows, cfg.pool_floats // row_len))
    return _positions(n_out, n_img, math.ceil(rows / n_img), gen)


def _groups(mod: nn.Module) -> int:
    return int(mod.groups) if isinstance(mod, nn.Conv2d) else 1


def _batch_rows(layer: nn.Module, inputs: list[torch.Tensor], pos: torch.Tensor) -> torch.Tensor:
    """im2col rows of ``layer`` for its per-batch inputs, at each image's sampled positions."""
    held = sum(int(inp.shape[0]) for inp in inputs)
    if held != pos.shape[0]:
        raise UnsupportedError(
            f"a layer's input holds {held} samples for "
            f"{pos.shape[0]} images (the model mixes the batch dimension): the rounding is "
            "learnt per sample"
        )
    got, start = [], 0
    for inp in inputs:
        got.append(_rows(layer, inp.detach(), pos[start : start + inp.shape[0]]))
        start += inp.shape[0]
    return torch.cat(got)


def _inputs(model: nn.Module, name: str, x: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Per-batch inputs of module ``name`` of ``model`` (earlier layers already rounded): one
    partial forward per layer (the uncached path)."""
    got: list[torch.Tensor] = []

    def fn(mod: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        got.append(args[0].detach())
        raise _Stop

    handle = model.get_submodule(name).register_forward_pre_hook(fn)
    try:
        with torch.no_grad():
            for i in range(0, x.shape[0], batch_size):
                with contextlib.suppress(_Stop):
                    model(x[i : i + batch_size])
    finally:
        handle.remove()
    return got


def traced(model: nn.Module, sim: nn.Module | None) -> torch.fx.GraphModule | None:
    """The graph the cached sweep interprets: the simulator, else ``model`` traced by
    ``torch.fx`` (sharing its layers), else None (untraceable: the uncached path)."""
    if isinstance(sim, torch.fx.GraphModule):
        return sim
    try:
        return torch.fx.symbolic_trace(model)
    except Exception:  # any tracing failure means: no graph, go uncached
        return None


def sweep(
    gm: torch.fx.GraphModule,
    x: torch.Tensor,
    batch_size: int,
    wanted: set[str],
    visit: Callable[[str, list[torch.Tensor]], None],
) -> None:
    """One pass of ``gm`` over ``x`` (in batches of ``batch_size``), node by node for all batches
    at once: before the first call of each module in ``wanted``, ``visit(name, inputs)`` gets its
    per-batch inputs (and may change its weights, which the rest of the pass then uses). Values
    are freed after their last use, so the cost is one forward instead of one per layer.

    Example:
        >>> net = torch.fx.symbolic_trace(nn.Sequential(nn.Linear(3, 2), nn.ReLU()))
        >>> seen = []
        >>> sweep(net, torch.randn(5, 3), 2, {"0"}, lambda n, xs: seen.append(len(xs)))
        >>> seen
        [3]
    """
    runs = []
    for i in range(0, x.shape[0], batch_size):
        run = torch.fx.Interpreter(gm, garbage_collect_values=False)
        run.args_iter = iter([x[i : i + batch_size]])
        runs.append(run)
    last_use = {a: n for n in gm.graph.nodes for a in n.all_input_nodes}
    for node in gm.graph.nodes:
        if node.op == "output":
            break
        if node.op == "call_module" and node.target in wanted:
            wanted = wanted - {node.target}
            visit(str(node.target), [run.env[node.args[0]] for run in runs])
        for run in runs:
            with torch.no_grad():
                run.env[node] = run.run_node(node)
            for a in node.all_input_nodes:
                if last_use[a] is node:
                    del run.env[a]
