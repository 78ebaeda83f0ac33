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
from edgequant.models.program_graph import as_modules, free_batch

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
