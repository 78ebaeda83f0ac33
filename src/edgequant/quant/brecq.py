"""Block reconstruction (BRECQ, Li et al. 2021): AdaRound's learnt rounding, judged on a block.

Layer-wise AdaRound (:mod:`edgequant.quant.adaround`) makes each conv's *own* output match; the
errors that are left add up along a block (an inverted residual: expand → depthwise → project,
the skip added), and at 4 bits a depthwise conv alone can cost the logits 6–16 dB. BRECQ learns
the rounding of **every layer of a block at once**, on the block's output:

* the network is cut where **one tensor** alone carries everything forward (no skip open): the
  pieces between cuts are grouped into blocks by the module that owns their layers
  (``_blocks.3.*``, ``layer2.1.*``; at most ``max_block_layers`` layers), so a residual block
  or an inverted residual block is one block whatever the model calls it;
* per block, ``V`` of each layer as in AdaRound (``w̃ = s·clamp(floor(w/s) + h(V))``), learnt
  with Adam on ``‖block(x̂; W̃) − block(x; W)‖² / ‖block(x̂; W_rtn) − block(x; W)‖²`` + the
  rounding regulariser, on mini-batches of whole feature maps: ``x̂`` is the block's input in
  the simulator (activations fake-quantized as the runtime will — straight-through inside the
  block — earlier blocks already rounded), ``x`` its fp32 input;
* at the end ``h ≥ ½`` rounds up, and the block keeps nearest rounding if the learnt one is not
  better on all calibration images.

The weights handed back are on each layer's :class:`~edgequant.quant.adaround.WeightGrid`, as
layer-wise AdaRound's are, so the runtime's quantizer reproduces them.

Example:
    >>> import torch, torch.nn as nn
    >>> from edgequant.quant.adaround import AdaRoundConfig, adaround_module
    >>> from edgequant.quant.scheme import get_scheme
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 1)).eval()
    >>> cfg = AdaRoundConfig(iterations=20, method="brecq")
    >>> out, stats = adaround_module(net, get_scheme("w4a8"), torch.randn(8, 3, 10, 10),
    ...                              config=cfg)
    >>> [s.layer for s in stats]
    ['0', '2']
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import torch
import torch.fx as fx
import torch.nn as nn

from edgequant.errors import ValidationError
from edgequant.quant.simulate import ActQuant, QuantLayer

if TYPE_CHECKING:
    from edgequant.quant.adaround import AdaRoundConfig, LayerStats, WeightGrid
    from edgequant.quant.scheme import Scheme


#: Adam's step size for the biases learnt with a block's rounding (``correct_bias``)
BIAS_LR = 1e-3


@dataclass(frozen=True)
class Block:
    """A run of graph nodes fed by one tensor (``source``) and leaving one (``output``), and the
    names of the quantized layers it holds."""

    nodes: tuple[fx.Node, ...]
    source: fx.Node
    output: fx.Node
    layers: tuple[str, ...]


def _quant_layer(gm: fx.GraphModule, node: fx.Node) -> str | None:
    if node.op == "call_module" and isinstance(gm.get_submodule(str(node.target)), QuantLayer):
        return str(node.target)
    return None


def _pieces(gm: fx.GraphModule) -> Iterator[tuple[fx.Node, list[fx.Node]]]:
    """``(source, nodes)``: the graph cut after every node where one value alone is live."""
    nodes = [n for n in gm.graph.nodes if n.op not in ("get_attr", "output")]
    pos = {n: i for i, n in enumerate(nodes)}
    last = {n: max((pos.get(u, len(nodes)) for u in n.users), default=pos[n]) for n in nodes}
    source, run = nodes[0], []  # the first node is the (single) placeholder
    open_until: dict[fx.Node, int] = {source: last[source]}
    for i, node in enumerate(nodes[1:], start=1):
        run.append(node)
        open_until = {n: e for n, e in open_until.items() if e > i}
        if last[node] > i:
            open_until[node] = last[node]
        if list(open_until) == [node]:
            yield source, run
            source, run = node, []
    if run:
        yield source, run


def blocks(gm: fx.GraphModule, max_layers: int = 4) -> list[Block]:
    """The simulator's graph as :class:`Block` s (see the module doc); a graph with more than
    one input cannot be cut and gives ``[]``.

    Example:
        >>> from edgequant.quant.simulate import quantize_module
        >>> from edgequant.quant.scheme import get_scheme
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 2, 1)).eval()
        >>> sim = quantize_module(net, get_scheme("w8a8"), torch.randn(2, 3, 4, 4))
        >>> [b.layers for b in blocks(sim)]
        [('0', '2')]
    """
    if sum(n.op == "placeholder" for n in gm.graph.nodes) != 1:
        return []
    out: list[Block] = []
    cur: list[tuple[fx.Node, list[fx.Node], list[str]]] = []

    def close() -> None:
        if cur:
            layers = tuple(name for *_, names in cur for name in names)
            nodes = tuple(n for _, ns, _ in cur for n in ns)
            out.append(Block(nodes, cur[0][0], nodes[-1], layers))
            cur.clear()

    owner: str | None = None
    for source, nodes in _pieces(gm):
        names = [n for node in nodes if (n := _quant_layer(gm, node)) is not None]
        if names:
            mine = names[0].rsplit(".", 1)[0] if "." in names[0] else ""
            held = sum(len(c[2]) for c in cur)
            if cur and (mine != owner or held + len(names) > max_layers) and held:
                close()
            owner = mine
        cur.append((source, nodes, names))
    close()
    return out


def block_module(gm: fx.GraphModule, block: Block) -> fx.GraphModule:
    """The block as a module of one input, sharing ``gm``'s submodules."""
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {block.source: graph.placeholder("x")}

    def arg(a: fx.Node) -> fx.Node:
        if a not in env:  # a constant fetched before the block (get_attr)
            env[a] = graph.node_copy(a, arg)
        return env[a]

    for node in block.nodes:
        env[node] = graph.node_copy(node, arg)
    graph.output(env[block.output])
    return fx.GraphModule(gm, graph)


def float_twin(gm: fx.GraphModule) -> fx.GraphModule:
    """A copy of the simulator that computes in fp32 (no activation or weight quantization)."""
    twin = copy.deepcopy(gm)
    for mod in twin.modules():
        if isinstance(mod, ActQuant):
            mod.mode = "off"
        elif isinstance(mod, QuantLayer):
            mod.wq, mod.arith, mod.dynamic_input = None, None, None
            mod.float_dtype = "fp32"
    return twin


def _run(mod: nn.Module, xs: list[torch.Tensor]) -> list[torch.Tensor]:
    with torch.no_grad():
        return [mod(x) for x in xs]


def _mse(mod: nn.Module, xs: list[torch.Tensor], ts: list[torch.Tensor]) -> float:
    with torch.no_grad():
        tot = sum(float(((mod(x) - t) ** 2).sum()) for x, t in zip(xs, ts, strict=True))
    return tot / max(1, sum(t.numel() for t in ts))


class _Soft:
    """One layer's learnable rounding: ``V``, its grid codes and the soft / hard weights."""

    def __init__(
        self, layer: QuantLayer, grid: WeightGrid, clip: torch.Tensor | None = None
    ) -> None:
        from edgequant.quant.adaround import GAMMA, ZETA, _nearest, on_grid

        w = cast(torch.Tensor, layer.inner.weight).detach().float()
        self.layer, self.qmax = layer, grid.qmax
        bias = cast("torch.Tensor | None", layer.inner.bias)
        self.bias = None if bias is None else bias.detach().clone()
        self.s, self.floor, pinned = on_grid(w, grid, clip)
        self.learn = (~pinned).float()
        rest = (w / self.s - self.floor).clamp(0.0, 1.0)
        p = ((rest - GAMMA) / (ZETA - GAMMA)).clamp(1e-4, 1 - 1e-4)
        self.v = torch.log(p / (1 - p)).requires_grad_(True)
        self.nearest = _nearest(w, self.s, self.floor, pinned, grid.qmax) * self.s

    def soft(self) -> torch.Tensor:
        from edgequant.quant.adaround import rectified_sigmoid

        h = rectified_sigmoid(self.v)
        return torch.clamp(self.floor + h * self.learn, -self.qmax, self.qmax) * self.s

    def hard(self) -> torch.Tensor:
        up = (self.v.detach() >= 0).float() * self.learn
        return torch.clamp(self.floor + up, -self.qmax, self.qmax) * self.s

    def reg(self, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
        from edgequant.quant.adaround import rectified_sigmoid

        h = rectified_sigmoid(self.v)
        return ((1 - (2 * h - 1).abs().pow(beta)) * self.learn).sum(), self.learn.sum()

    def set_bias(self, b: torch.Tensor | None) -> None:
        if b is not None and self.layer.inner.bias is not None:
            with torch.no_grad():
                cast(torch.Tensor, self.layer.inner.bias).copy_(b)

    def use(self, weight: Callable[[], torch.Tensor] | torch.Tensor) -> None:
        """Make the simulator's layer compute with ``weight`` (a tensor on the grid: set it)."""
        if callable(weight):
            self.layer.weight_override = weight
            return
        self.layer.weight_override = None
        with torch.no_grad():
            cast(torch.Tensor, self.layer.inner.weight).copy_(weight)
        self.layer.refresh_weight_qparams()


def _clips(
    sim: fx.GraphModule,
    twin: fx.GraphModule,
    blk: tuple[nn.Module, nn.Module],
    names: list[str],
    grids: dict[str, WeightGrid],
    data: tuple[torch.Tensor, torch.Tensor],
    cfg: AdaRoundConfig,
    acts: dict[str, Callable[[torch.Tensor], torch.Tensor]],
) -> dict[str, torch.Tensor | None]:
    """Per layer of a block, AdaRound's clipping search (:func:`~edgequant.quant.adaround.
    _clip_search`) on sampled rows: the layer's input in the quantized block (``blk[0]`` on
    ``data[0]``), its fp32 output through its fused activation (``acts``) in the float block
    (``blk[1]`` on ``data[1]``)."""
    from edgequant.quant.adaround import _clip_search, clip_searched
    from edgequant.quant.adaround_data import _outputs_at, _rows, pool_positions

    want = [n for n in names if clip_searched(cfg, grids[n])]
    if not want:
        return {}
    seen: dict[str, list[torch.Tensor]] = {n: [] for n in want}
    hooks = [sim.get_submodule(n).register_forward_pre_hook(_grab(seen[n])) for n in want]
    hooks += [twin.get_submodule(n).register_forward_hook(_grab(seen[n], out=True)) for n in want]
    try:
        _run(blk[0], [data[0]])
        _run(blk[1], [data[1]])
    finally:
        for h in hooks:
            h.remove()
    out: dict[str, torch.Tensor | None] = {}
    gen = torch.Generator().manual_seed(cfg.seed)
    for n in want:
        (inp, target), layer = seen[n], cast(QuantLayer, sim.get_submodule(n)).inner
        pos = pool_positions(layer, target, inp.shape[0], cfg, gen)
        rows, post = _rows(layer, inp, pos), _outputs_at(target, pos)
        f = acts.get(n, lambda t: t)
        w = cast(torch.Tensor, layer.weight).detach().float()
        bias = cast("torch.Tensor | None", layer.bias)
        b = None if bias is None else bias.detach().float()
        out[n] = _clip_search(layer, w, rows, f(post), grids[n], b, f)
    return out


def _grab(into: list[torch.Tensor], out: bool = False) -> Callable[..., None]:
    def hook(_m: nn.Module, args: tuple[torch.Tensor, ...], y: object = None) -> None:
        into.append((cast(torch.Tensor, y) if out else args[0]).detach())

    return hook


def _learn(
    mod: nn.Module,
    softs: list[_Soft],
    xs: torch.Tensor,
    ts: torch.Tensor,
    cfg: AdaRoundConfig,
    seed: int,
) -> None:
    """Adam on every layer's ``V`` of the block (``mod``) on the loss of the module doc, and
    with ``cfg.correct_bias`` on the layers' biases too (they stay float in every runtime)."""
    for sf in softs:
        sf.use(sf.nearest)
    norm = max(_mse(mod, list(xs.split(cfg.block_images)), list(ts.split(cfg.block_images))), 1e-20)
    for sf in softs:
        sf.use(sf.soft)
    vs = [sf.v for sf in softs]
    n_v = len(vs)
    if cfg.correct_bias:
        vs += [b.requires_grad_(True) for sf in softs if (b := sf.layer.inner.bias) is not None]
    m1 = [torch.zeros_like(v) for v in vs]
    m2 = [torch.zeros_like(v) for v in vs]
    gen = torch.Generator().manual_seed(seed)
    warm = int(cfg.warmup * cfg.iterations)
    for it in range(cfg.iterations):
        idx = torch.randint(0, xs.shape[0], (min(cfg.block_images, xs.shape[0]),), generator=gen)
        loss = ((mod(xs[idx]) - ts[idx]) ** 2).mean() / norm
        if it >= warm:
            frac = (it - warm) / max(1, cfg.iterations - warm)
            beta = cfg.beta[0] + (cfg.beta[1] - cfg.beta[0]) * frac
            parts = [sf.reg(beta) for sf in softs]
            reg = torch.stack([p[0] for p in parts]).sum() / torch.stack(
                [p[1] for p in parts]
            ).sum().clamp(min=1)
            loss = loss + cfg.reg * reg
        grads = torch.autograd.grad(loss, vs)
        with torch.no_grad():
            step = math.sqrt(1 - 0.999 ** (it + 1)) / (1 - 0.9 ** (it + 1))
            for i, (v, g, a, b) in enumerate(zip(vs, grads, m1, m2, strict=True)):
                a.mul_(0.9).add_(g, alpha=0.1)
                b.mul_(0.999).addcmul_(g, g, value=0.001)
                lr = cfg.lr if i < n_v else BIAS_LR
                v.sub_(lr * step * a / (b.sqrt() + 1e-8))


def reconstruct(
    sim: fx.GraphModule,
    grids: dict[str, WeightGrid],
    x: torch.Tensor,
    cfg: AdaRoundConfig,
) -> dict[str, LayerStats]:
    """Round every layer of ``sim`` (the calibrated simulator) that has a grid, block by block
    (see the module doc), in place: each :class:`QuantLayer`'s ``inner`` weight ends on its grid.
    Returns per-layer stats (the block's output MSE, nearest vs learnt, on each of its layers).
    """
    from edgequant.quant.adaround import LayerStats
    from edgequant.quant.adaround_data import fused_activations

    outputs = [n for n in sim.graph.nodes if n.op == "output"]
    parts = blocks(sim, cfg.max_block_layers)
    if not parts or len(outputs) != 1 or not isinstance(outputs[0].args[0], fx.Node):
        raise ValidationError(
            "brecq needs a model that takes one tensor and returns one; use adaround for this model"
        )
    twin, acts = float_twin(sim), fused_activations(sim)
    xq = [x[i : i + cfg.batch_size] for i in range(0, x.shape[0], cfg.batch_size)]
    xf = list(xq)
    stats: dict[str, LayerStats] = {}
    for k, block in enumerate(parts):
        mod, ref = block_module(sim, block), block_module(twin, block)
        ts = _run(ref, xf)
        names = [n for n in block.layers if n in grids]
        if names:
            few = (xq[0][: cfg.block_images], xf[0][: cfg.block_images])
            clips = _clips(sim, twin, (mod, ref), names, grids, few, cfg, acts)
            softs = [
                _Soft(cast(QuantLayer, sim.get_submodule(n)), grids[n], clips.get(n)) for n in names
            ]
            torch.manual_seed(cfg.seed + k)
            _learn(mod, softs, torch.cat(xq), torch.cat(ts), cfg, cfg.seed + k)
            learnt_bias = [
                None if (b := sf.layer.inner.bias) is None else b.detach().clone() for sf in softs
            ]
            for sf in softs:
                sf.use(sf.hard())
            learnt = _mse(mod, xq, ts)
            for sf in softs:
                sf.use(sf.nearest)
                sf.set_bias(sf.bias)
            near = _mse(mod, xq, ts)
            keep = learnt >= near
            for name, sf, b in zip(names, softs, learnt_bias, strict=True):
                w_q = sf.nearest if keep else sf.hard()
                sf.use(w_q)
                if not keep:
                    sf.set_bias(b)
                stats[name] = LayerStats(
                    layer=name,
                    mse_nearest=near,
                    mse_adaround=min(near, learnt),
                    flipped_pct=100.0 * float((w_q != sf.nearest).float().mean()),
                    kept_nearest=keep,
                )
        xq, xf = _run(mod, xq), ts
    return stats


def round_blocks(
    module: nn.Module,
    scheme: Scheme,
    x: torch.Tensor,
    grids: dict[str, WeightGrid],
    cfg: AdaRoundConfig,
    float_layers: Iterable[str] = (),
) -> list[LayerStats]:
    """Block reconstruction of ``module`` (BN folded) in place: its conv/linear weights that have
    a grid end on it; per-layer stats in execution order. Needs a ``torch.fx``-traceable model.
    ``float_layers`` (those the runtime computes in float, with no grid: a CPU-class remedy) stay
    float in the simulator, so the blocks learn on the inputs the runtime gives them."""
    from edgequant.quant.simulate import quantize_module

    sim = quantize_module(module, scheme, x, batch_size=cfg.batch_size, skip_layers=float_layers)
    stats = reconstruct(sim, grids, x, cfg)
    with torch.no_grad():
        for name in stats:
            src, dst = sim.get_submodule(f"{name}.inner"), module.get_submodule(name)
            cast(torch.Tensor, dst.weight).copy_(cast(torch.Tensor, src.weight))
            if dst.bias is not None:
                cast(torch.Tensor, dst.bias).copy_(cast(torch.Tensor, src.bias))
    return list(stats.values())


__all__ = ["Block", "block_module", "blocks", "float_twin", "reconstruct", "round_blocks"]
