"""An exported program's graph made workable: real ``nn`` layers and a batch that is not baked in.

``torch.export`` writes a model's convs, linears and batch norms as ``aten`` calls on tensors of
plain holder modules; :func:`as_modules` turns them back into ``nn.Conv2d`` / ``nn.Linear`` /
``nn.BatchNorm2d`` over the same tensors (so batch-norm folding and bias correction find them),
and :func:`free_batch` makes reshapes that bake the exported batch in follow the input's.
Used by :mod:`edgequant.models.sources` when it loads a ``.pt2``.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten()).eval()
    >>> gm = as_modules(torch.export.export(net, (torch.zeros(1, 3, 8, 8),)).module())
    >>> type(gm.get_submodule("0")).__name__
    'Conv2d'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    import torch.nn as nn


def free_batch(gm: torch.fx.GraphModule, batch: int) -> int:
    """Make ``view``/``reshape`` calls that bake the exported ``batch`` in as their first size
    (``x.view(x.size(0), -1)`` exported at batch 1 holds ``[1, -1]``) take ``x.size(0)``; returns
    how many. Same values at the exported batch; an exporter tracing the program then writes a
    graph that serves other batch sizes instead of one that breaks on them (a Gemm fed 8 samples
    flattened into one row).

    Example:
        >>> import torch
        >>> class Net(torch.nn.Module):
        ...     def forward(self, x):
        ...         return x.reshape(x.shape[0], -1)
        >>> gm = as_modules(torch.export.export(Net(), (torch.zeros(1, 2, 3),)).module())
        >>> free_batch(gm, 1), tuple(gm(torch.zeros(4, 2, 3)).shape)
        (1, (4, 6))
    """
    import torch

    aten = torch.ops.aten
    shaped = {aten.view.default, aten.reshape.default, aten._unsafe_view.default}
    done = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in shaped or len(node.args) != 2:
            continue
        src, sizes = node.args
        val = src.meta.get("val") if isinstance(src, torch.fx.Node) else None
        lead = getattr(val, "shape", [None])[:1]
        if not (isinstance(sizes, list | tuple) and sizes and sizes[0] == batch == lead[0]):
            continue
        with gm.graph.inserting_before(node):
            n = gm.graph.call_method("size", (src, 0))
        # a Tensor method: TorchScript tracing keeps the size dynamic (through torch.ops it
        # records the traced size as a constant again)
        node.op, node.target = (
            "call_method",
            "view" if node.target == aten.view.default else "reshape",
        )
        node.args = (src, n, *sizes[1:])
        done += 1
    if done:
        gm.recompile()
    return done


def as_modules(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """``gm`` (an exported program's module) with its ``aten`` conv2d / linear / eval batch_norm
    calls as ``nn`` modules named after the module that held their tensors, and the exported
    shape guard dropped (:func:`_program_module` keeps the batch size).

    A call whose tensors are not the whole of one plain leaf module (shared weights, a user
    module calling ``F.conv2d`` on its own parameters) stays a function call.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).eval()
        >>> gm = as_modules(torch.export.export(net, (torch.zeros(1, 3, 8, 8),)).module())
        >>> [type(m).__name__ for _, m in gm.named_children()]
        ['Conv2d', 'BatchNorm2d']
    """
    import torch
    import torch.fx as fx

    aten = torch.ops.aten
    builders = {
        aten.conv2d.default: _conv_from,
        aten.linear.default: _linear_from,
        aten.batch_norm.default: _batch_norm_from,
    }
    for node in list(gm.graph.nodes):
        if node.op == "call_module" and node.target == "_guards_fn" and not node.users:
            gm.graph.erase_node(node)
            continue
        build = builders.get(node.target) if node.op == "call_function" else None
        if build is None or node.kwargs:
            continue
        args = [a.target if isinstance(a, fx.Node) and a.op == "get_attr" else a for a in node.args]
        holder = _sole_holder(gm, [a for a in args[1:] if isinstance(a, str)])
        module = build(gm, node, args) if holder is not None else None
        if holder is None or module is None:
            continue
        parent, _, attr = holder.rpartition(".")
        setattr(gm.get_submodule(parent), attr, module.eval())
        node.op, node.target, node.args = "call_module", holder, (node.args[0],)
    gm.graph.eliminate_dead_code()
    return fx.GraphModule(gm, gm.graph)


def _sole_holder(gm: torch.fx.GraphModule, targets: list[str]) -> str | None:
    """The plain leaf module whose tensors are exactly ``targets`` (``num_batches_tracked``
    aside), else None."""
    import torch.nn as nn

    owners = {t.rpartition(".")[0] for t in targets}
    if len(owners) != 1 or "" in owners:
        return None
    owner = owners.pop()
    mod = gm.get_submodule(owner)
    if type(mod) is not nn.Module or next(mod.children(), None) is not None:
        return None
    held = {n for n, _ in mod.named_parameters(recurse=False)}
    held |= {n for n, _ in mod.named_buffers(recurse=False)} - {"num_batches_tracked"}
    return owner if held == {t.rpartition(".")[2] for t in targets} else None


def _tensor(gm: torch.fx.GraphModule, target: Any, *, parameter: bool = True) -> Any:
    """The parameter (or buffer) ``target`` names; None for None or a tensor of the other kind."""
    import torch.nn as nn

    if not isinstance(target, str):
        return None
    owner, _, name = target.rpartition(".")
    t = getattr(gm.get_submodule(owner), name, None)
    return t if isinstance(t, nn.Parameter) == parameter and t is not None else None


def _pair(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[-1])) if isinstance(v, list | tuple) else (int(v), int(v))


def _conv_from(gm: torch.fx.GraphModule, node: Any, args: list[Any]) -> nn.Module | None:
    """``aten.conv2d(x, w, b, stride, padding, dilation, groups)`` as an ``nn.Conv2d``."""
    import torch.nn as nn

    defaults: list[Any] = [None, 1, 0, 1, 1]  # bias, stride, padding, dilation, groups
    full: list[Any] = [*args, *defaults[len(args) - 2 :]]
    w_t, b_t, stride, padding, dilation, groups = full[1:7]
    w, b = _tensor(gm, w_t), _tensor(gm, b_t)
    if w is None or w.dim() != 4 or isinstance(padding, str) or (b_t is not None and b is None):
        return None
    conv = nn.Conv2d(
        int(w.shape[1]) * int(groups),
        int(w.shape[0]),
        _pair(list(w.shape[2:])),
        _pair(stride),
        _pair(padding),
        _pair(dilation),
        int(groups),
        bias=False,
        device="meta",
    )
    conv.weight, conv.bias = w, b
    return conv


def _linear_from(gm: torch.fx.GraphModule, node: Any, args: list[Any]) -> nn.Module | None:
    """``aten.linear(x, w, b)`` as an ``nn.Linear``."""
    import torch.nn as nn

    w_t, b_t = [*args[1:], None][:2]
    w, b = _tensor(gm, w_t), _tensor(gm, b_t)
    if w is None or w.dim() != 2 or (b_t is not None and b is None):
        return None
    linear = nn.Linear(int(w.shape[1]), int(w.shape[0]), bias=False, device="meta")
    linear.weight, linear.bias = w, b
    return linear


def _batch_norm_from(gm: torch.fx.GraphModule, node: Any, args: list[Any]) -> nn.Module | None:
    """An eval-mode ``aten.batch_norm`` on a 4-d input as an ``nn.BatchNorm2d``."""
    import torch.nn as nn

    if len(args) < 8 or args[5] is not False:
        return None
    val = node.args[0].meta.get("val") if hasattr(node.args[0], "meta") else None
    w, b = _tensor(gm, args[1]), _tensor(gm, args[2])
    mean, var = _tensor(gm, args[3], parameter=False), _tensor(gm, args[4], parameter=False)
    if getattr(val, "ndim", 0) != 4 or mean is None or var is None or (w is None) != (b is None):
        return None
    bn = nn.BatchNorm2d(len(mean), eps=float(args[7]), momentum=args[6], affine=w is not None)
    if w is not None:
        bn.weight, bn.bias = w, b
    bn.running_mean, bn.running_var = mean, var
    return bn


__all__ = ["as_modules", "free_batch"]
