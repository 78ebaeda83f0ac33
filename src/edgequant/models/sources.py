"""Model sources beyond the zoo: ``.pt2`` programs, ``package.module:factory`` entry points,
float or quantized ``.tflite`` files and OpenVINO IR (``.xml`` + ``.bin``).

- ``.pt2`` (a ``torch.export`` ExportedProgram) is read with ``torch.export.load``, which
  deserialises a graph and tensors, never pickled code; ``program.module()`` is an ordinary
  ``nn.Module``, so the model runs on every runtime as the zoo does.
- ``pkg.mod:factory`` imports ``pkg.mod`` (code the user names on purpose) and calls
  ``factory()``, which must return an ``nn.Module``; ``weights=`` loads a state_dict into it.
- ``.tflite`` and ``.xml`` stay files that the runtimes reading them natively use as they are
  (``Model.source_path``); the others report n/a with the reason.

The input spec comes from the file where it holds one (``.pt2``'s example input, the tflite or
IR input), else from ``input_options`` (``--input-shape`` ...); without mean/std the ImageNet
convention is assumed and recorded as such.

Example:
    >>> import torch, tempfile, os
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(5))
    >>> _ = net(torch.zeros(1, 3, 16, 16))
    >>> p = os.path.join(tempfile.mkdtemp(), "net.pt2")
    >>> torch.export.save(torch.export.export(net.eval(), (torch.zeros(1, 3, 16, 16),)), p)
    >>> m = load_pt2(Path(p))
    >>> m.source_format, m.input_spec.shape, m.num_classes
    ('pt2', (3, 16, 16), 5)
"""

from __future__ import annotations

import hashlib
import importlib
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgequant.errors import EdgequantError, ModelError, condense_error
from edgequant.models.base import Model
from edgequant.models.image_input import given_chw, image_chw, image_spec
from edgequant.models.onnx_file import sniff

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

#: ``package.module:factory``: dotted module path, a colon, a callable's name
FACTORY = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")


def is_factory(text: str) -> bool:
    """True when ``text`` names a Python entry point ``package.module:factory``.

    Example:
        >>> is_factory("mypkg.nets:build"), is_factory("model.onnx"), is_factory("C:/m.onnx")
        (True, False, False)
    """
    return bool(FACTORY.match(text)) and not Path(text).exists()


def torch_model(
    module: nn.Module,
    *,
    where: str,
    name: str,
    source_format: str,
    chw: tuple[int, int, int],
    options: Mapping[str, Any],
    weights: str | None,
    weights_hash: str,
    info: dict[str, Any],
) -> Model:
    """A Model over an ``nn.Module``: the output probed once on zeros (one tensor, rank ≥ 2)."""
    import torch

    layout = str(options.get("layout", "NCHW")).upper()
    spec, assumed = image_spec(where, chw, layout, options)
    module.eval()
    try:
        with torch.no_grad():
            out = module(torch.zeros((1, *spec.tensor_shape)))
    except Exception as e:
        raise ModelError(
            f"{where}: running the module on one {list(spec.tensor_shape)} sample failed: "
            f"{condense_error(e)}; check --input-shape / --layout"
        ) from None
    if not isinstance(out, torch.Tensor):
        kind = type(out).__name__
        raise ModelError(
            f"{where}: the module returns a {kind}, not one tensor; edgequant runs models with "
            "one output (wrap it to return the tensor you want measured)"
        )
    if out.ndim < 2:
        raise ModelError(f"{where}: the output has shape {list(out.shape)}; it needs a batch axis")
    info = {**info, "output_shape": list(out.shape[1:])}
    if assumed:
        info["preprocessing_assumed"] = True
    if options:
        info["input_options"] = dict(options)
    return Model(
        name=name,
        family=source_format,
        input_spec=spec,
        num_classes=int(out.shape[-1]),
        module=module,
        weights=weights,
        weights_hash=weights_hash,
        info=info,
        source_format=source_format,
    )


# --------------------------------------------------------------------------- .pt2


def load_program(
    path: Path, *, what: str, hint: str, error: type[EdgequantError] = ModelError
) -> torch.export.ExportedProgram:
    """``torch.export.load`` of a ``.pt2`` file; a failure is one ``error`` line ending in ``hint``.

    The file holds a graph and tensors, no pickled code, so reading it runs nothing of the file.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "notes.pt2"
        >>> _ = path.write_text("not a program")
        >>> load_program(path, what="program notes.pt2", hint="re-save it")
        Traceback (most recent call last):
        ...
        edgequant.errors.ModelError: cannot read program notes.pt2: ... (re-save it)
    """
    import torch

    try:
        return torch.export.load(str(path))
    except Exception as e:
        raise error(f"cannot read {what}: {condense_error(e)} ({hint})") from None


def load_pt2(path: Path, options: Mapping[str, Any] | None = None) -> Model:
    """A ``torch.export`` program (``.pt2``) as a Model; no pickled code is executed.

    Example:
        >>> load_pt2(Path("net.pt2")).module is not None   # doctest: +SKIP
        True
    """
    from edgequant.models.loader import file_hash

    opts = dict(options or {})
    where = f"program {path}"
    if not path.is_file():
        raise ModelError(f"{where} does not exist")
    looks = sniff(path)
    if looks is not None and not looks.startswith("a zip"):
        raise ModelError(f"cannot read {where}: the file looks like {looks}, not a .pt2 program")
    program = load_program(path, what=where, hint="save it with torch.export.save")
    dims = _example_dims(program)
    if len(dims) != 1:
        raise ModelError(
            f"{where} takes {len(dims)} inputs; edgequant runs models with one image input"
        )
    layout = str(opts.get("layout", "NCHW")).upper()
    chw = image_chw(where, dims[0], layout, opts)
    return torch_model(
        _program_module(program),
        where=where,
        name=path.stem,
        source_format="pt2",
        chw=chw,
        options=opts,
        weights=str(path),
        weights_hash=file_hash(path),
        info={"program": str(path), "torch_export": "torch.export.load"},
    )


def _program_module(program: Any) -> nn.Module:
    """``program.module()`` in a plain ``nn.Module`` (``ExportedProgramModule``, the graph in
    ``.program``): an exported graph is fixed in eval mode and refuses ``.eval()``/``.train()``,
    which every backend calls.

    The graph's ``aten`` conv2d / linear / batch_norm calls become ``nn.Conv2d`` / ``nn.Linear`` /
    ``nn.BatchNorm2d`` modules over the same tensors (:func:`as_modules`), so batch-norm folding
    and bias correction find the layers they work on, and ``torch.fx`` traces the wrapper. A
    program exported at a static batch ``b`` runs other batch sizes in chunks of ``b`` (the last
    one zero-padded), never at a batch it was not exported at.
    """
    import torch
    import torch.nn as nn

    class ExportedProgramModule(nn.Module):
        def __init__(self, graph_module: nn.Module, batch: int | None) -> None:
            super().__init__()
            self.program = graph_module
            self.batch = batch  # the batch size the program was exported at (None: dynamic)

        def forward(self, x: Any) -> Any:
            b = self.batch
            if b is None or isinstance(x, torch.fx.Proxy) or x.shape[0] == b:
                return self.program(x)
            n = int(x.shape[0])
            pad = -n % b
            if pad:
                x = torch.cat([x, x.new_zeros((pad, *x.shape[1:]))])
            return torch.cat([self.program(x[i : i + b]) for i in range(0, n + pad, b)])[:n]

        def train(self, mode: bool = True) -> ExportedProgramModule:
            self.training = mode  # the program itself stays as exported
            return self

    dims = _example_dims(program)
    batch = dims[0][0] if dims and dims[0] and dims[0][0] > 0 else None
    graph = as_modules(program.module())
    if batch is not None:
        free_batch(graph, batch)
    return ExportedProgramModule(graph, batch)


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


def _example_dims(program: Any) -> list[list[int]]:
    """The shapes of the program's user inputs (symbolic dims as -1)."""
    import torch

    users = set(program.graph_signature.user_inputs)
    dims: list[list[int]] = []
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in users:
            val = node.meta.get("val")
            shape = getattr(val, "shape", None)
            if shape is None:
                dims.append([])
                continue
            dims.append(
                [int(d) if isinstance(d, int | torch.SymInt) and _static(d) else -1 for d in shape]
            )
    return dims


def _static(d: Any) -> bool:
    try:
        int(d)
    except Exception:
        return False
    return isinstance(d, int)


# --------------------------------------------------------------------------- module:factory


def load_factory(
    text: str, options: Mapping[str, Any] | None = None, *, weights: str | Path | None = None
) -> Model:
    """``package.module:factory`` → the ``nn.Module`` the factory returns (plus ``weights``).

    The input shape comes from ``input_shape`` (option or model card), else from a
    ``input_shape`` attribute of the module, else ``3,224,224`` (recorded as assumed).

    Example:
        >>> load_factory("torch.nn:Identity", {"input_shape": "1,3,8,8"}).num_classes
        8
    """
    import torch.nn as nn

    from edgequant.models.loader import apply_state_dict, read_state_dict, state_dict_hash

    opts = dict(options or {})
    where = f"entry point {text}"
    module_name, _, attr = text.partition(":")
    try:
        mod = importlib.import_module(module_name)
    except Exception as e:
        raise ModelError(
            f"cannot import {module_name} for {where}: {condense_error(e)} "
            f"(is it on PYTHONPATH? sys.path[0] is {sys.path[0] or '.'!r})"
        ) from None
    factory: Any = mod
    for part in attr.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise ModelError(f"{where}: {module_name} has no attribute {attr!r}")
    if not callable(factory):
        raise ModelError(f"{where}: {attr} is a {type(factory).__name__}, not a callable")
    try:
        module = factory()
    except Exception as e:
        raise ModelError(f"{where}: calling {attr}() failed: {condense_error(e)}") from None
    if not isinstance(module, nn.Module):
        raise ModelError(
            f"{where}: {attr}() returned a {type(module).__name__}, not a torch.nn.Module"
        )
    info: dict[str, Any] = {"entry_point": text}
    source = None
    if weights is not None:
        apply_state_dict(module, read_state_dict(weights), what=f"weights {weights}", arch=text)
        source = str(weights)
    else:
        info["note"] = "weights as the factory built them"
    layout = str(opts.get("layout", "NCHW")).upper()
    chw = given_chw(where, opts, layout)
    if chw is None:
        shape = getattr(module, "input_shape", None)
        chw = tuple(shape[-3:]) if shape is not None else (3, 224, 224)  # type: ignore[assignment]
        if shape is None:
            info["input_shape_assumed"] = True
    digest = state_dict_hash(module.state_dict())
    h = hashlib.sha1(f"{text}|{digest}".encode()).hexdigest()
    return torch_model(
        module,
        where=where,
        name=attr.split(".")[-1],
        source_format="factory",
        chw=chw,  # type: ignore[arg-type]
        options=opts,
        weights=source or text,
        weights_hash=h,
        info=info,
    )
