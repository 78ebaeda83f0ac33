"""PyTorch → ONNX export, shared by the ONNX Runtime and OpenVINO backends and by QAT export.

One file (no external data: CNNs are far below ONNX's 2 GB protobuf limit), input ``"input"``
(float32 NCHW), output ``"logits"``, batch dimension dynamic by default.

We use the TorchScript exporter (``dynamo=False``): for plain CNNs it gives the cleanest graph
(BatchNorm folded into Conv, ``GlobalAveragePool``, no version-converter warnings) in about half
the time of the ``torch.export`` exporter, which on torch 2.13 always emits opset 18, fails to
down-convert some ops and prints pages of diagnostics. The ``torch.export`` exporter (needs the
``onnxscript`` package) is used only where torch no longer ships the TorchScript one.

Example:
    >>> from edgequant.models.export import export_onnx   # doctest: +SKIP
    >>> export_onnx(load_model("resnet18"), "/tmp/r18.onnx")  # doctest: +SKIP
    PosixPath('/tmp/r18.onnx')
"""

from __future__ import annotations

import contextlib
import io
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from edgequant.errors import ModelError, UnsupportedError, condense_error

if TYPE_CHECKING:
    from edgequant.models.base import Model

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def export_onnx(
    model: Model, path: Path | str, *, dynamic_batch: bool = True, opset: int = 17
) -> Path:
    """Write ``model`` as a single ONNX file at ``path`` and return the path.

    A model that came from a user's ``.onnx`` file is copied as is. Converter failures raise
    :class:`UnsupportedError` with the converter's message condensed to one line.

    Example:
        >>> p = export_onnx(make_tiny_model(), tmp / "tiny.onnx")   # doctest: +SKIP
        >>> onnx.load(p).graph.input[0].name                         # doctest: +SKIP
        'input'
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if model.onnx_path is not None:
        src = Path(model.onnx_path)
        if not src.is_file():
            raise ModelError(f"ONNX file {src} does not exist")
        if src.resolve() != out.resolve():
            shutil.copyfile(src, out)
        return out
    if model.module is None:
        raise ModelError(
            f"model {model.name!r} has neither a PyTorch module nor an ONNX file to export"
        )

    import torch

    module = model.module.eval()
    example = torch.zeros((1, *model.input_spec.shape), dtype=torch.float32)
    options = _exporter_options(module, dynamic_batch=dynamic_batch)
    try:
        with torch.no_grad(), warnings.catch_warnings(), _quiet():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,  # type: ignore[arg-type]
                (example,),
                str(out),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                **options,  # type: ignore[arg-type]
            )
        _check(out)
    except Exception as e:  # converters raise anything; condensed to one line
        out.unlink(missing_ok=True)
        raise UnsupportedError(
            f"torch.onnx.export cannot convert model {model.name!r}: {condense_error(e)}"
        ) from None
    return out


def _has_torchscript_exporter() -> bool:
    """True while torch still ships the TorchScript exporter (``dynamo=False``)."""
    import inspect

    import torch

    return "dynamo" in inspect.signature(torch.onnx.export).parameters and hasattr(
        torch.onnx, "utils"
    )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Swallow the exporters' chatty stdout (progress ticks, emoji) so --json stays clean."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield None


def _exporter_options(module: object, *, dynamic_batch: bool) -> dict[str, object]:
    """The ``torch.onnx.export`` arguments of the exporter in use (TorchScript where shipped)."""
    import inspect

    import torch

    if _has_torchscript_exporter():
        axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
        return {"dynamic_axes": axes, "do_constant_folding": True, "dynamo": False}
    shapes = None
    if dynamic_batch:
        # dynamic_shapes is keyed by the forward() argument name
        arg = next(iter(inspect.signature(module.forward).parameters))  # type: ignore[attr-defined]
        shapes = {arg: {0: torch.export.Dim("batch")}}
    return {"dynamic_shapes": shapes, "dynamo": True, "external_data": False, "verbose": False}


def onnx_weight_bytes(path: Path | str) -> int:
    """Bytes of all initializers (weights, biases, scales) of an ONNX file, as stored.

    int4 tensors count half a byte per element; the graph structure is not counted.

    Example:
        >>> onnx_weight_bytes("model.onnx")   # doctest: +SKIP
        102101888
    """
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(path), load_external_data=False)
    total = 0
    for init in model.graph.initializer:
        if init.raw_data:
            total += len(init.raw_data)
            continue
        n = 1
        for d in init.dims:
            n *= d
        if init.data_type in (TensorProto.INT4, TensorProto.UINT4):
            total += (n + 1) // 2
        else:
            total += n * helper.tensor_dtype_to_np_dtype(init.data_type).itemsize
    return total


def _check(path: Path) -> None:
    import onnx

    if not path.is_file() or path.stat().st_size == 0:
        raise RuntimeError(f"exporter wrote no file at {path}")
    onnx.checker.check_model(str(path))


__all__ = ["INPUT_NAME", "OUTPUT_NAME", "condense_error", "export_onnx", "onnx_weight_bytes"]
