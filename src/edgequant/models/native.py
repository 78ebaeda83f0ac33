"""Models in a runtime's own format: ``.tflite`` flatbuffers and OpenVINO IR (``.xml`` + ``.bin``).

They become a :class:`Model` with ``module=None`` and ``source_path`` set: the runtimes that read
the format natively run (and quantize) the file; the others report n/a with the reason. The input
is read from the file: a ``.tflite`` input ``[1, H, W, C]`` is NHWC (``[1, C, H, W]`` NCHW);
dynamic dims are filled from ``--input-shape``.

Example:
    >>> m = load_tflite(Path("face.tflite"))           # doctest: +SKIP
    >>> m.source_format, m.input_spec.layout            # doctest: +SKIP
    ('tflite', 'NHWC')
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgequant.errors import ModelError, condense_error
from edgequant.models.base import TFLITE, Model
from edgequant.models.image_input import image_chw, image_spec
from edgequant.models.onnx_file import sniff
from edgequant.models.tflite_outputs import first_output_only, needs_rewrite


def _guess_layout(dims: list[int], options: Mapping[str, Any]) -> str:
    if "layout" in options:
        return str(options["layout"]).upper()
    if len(dims) == 4 and dims[3] in (1, 3) and dims[1] not in (1, 3):
        return "NHWC"
    return "NCHW"


def _native_model(
    path: Path,
    fmt: str,
    dims: list[int],
    out_dims: list[int],
    options: Mapping[str, Any],
    weights_hash: str,
    info: dict[str, Any],
) -> Model:
    where = f"{fmt} model {path}"
    opts = dict(options)
    layout = _guess_layout(dims, opts)
    chw = image_chw(where, dims, layout, opts)
    spec, assumed = image_spec(where, chw, layout, opts)
    if not out_dims or out_dims[-1] < 1:
        raise ModelError(f"{where}: the output has shape {out_dims}; its last dim must be static")
    info = {**info, "output_shape": out_dims[1:], "input_shape_in_file": dims}
    if assumed:
        info["preprocessing_assumed"] = True
        info["note"] = f"preprocessing assumed: mean {spec.mean}, std {spec.std} on 0-255 pixels"
    if options:
        info["input_options"] = dict(options)
    return Model(
        name=path.stem,
        family=fmt,
        input_spec=spec,
        num_classes=int(out_dims[-1]),
        weights=str(path),
        weights_hash=weights_hash,
        info=info,
        source_path=path.resolve(),
        source_format=fmt,
    )


def load_tflite(path: Path, options: Mapping[str, Any] | None = None) -> Model:
    """A ``.tflite`` model: float or already quantized (int8/uint8 input), one image input."""
    from edgequant.models.loader import file_hash

    if not path.is_file():
        raise ModelError(f"TFLite model {path} does not exist")
    with open(path, "rb") as f:
        head = f.read(8)
    if head[4:8] != b"TFL3":
        looks = sniff(path)
        what = f"it looks like {looks}" if looks else "it has no TFL3 flatbuffer header"
        raise ModelError(f"cannot read TFLite model {path}: {what}")
    try:
        from ai_edge_litert.interpreter import Interpreter

        interp = Interpreter(model_path=str(path))
        inputs, outputs = interp.get_input_details(), interp.get_output_details()
    except ImportError:
        raise ModelError(
            "reading .tflite models needs ai-edge-litert: pip install ai-edge-litert"
        ) from None
    except Exception as e:
        raise ModelError(f"cannot read TFLite model {path}: {condense_error(e)}") from None
    if len(inputs) != 1:
        names = ", ".join(repr(i["name"]) for i in inputs[:4])
        raise ModelError(
            f"TFLite model {path} has {len(inputs)} inputs ({names}); edgequant runs models "
            "with one image input"
        )
    sig = [int(d) for d in inputs[0].get("shape_signature", inputs[0]["shape"])]
    dtype = getattr(inputs[0]["dtype"], "__name__", str(inputs[0]["dtype"]))
    info: dict[str, Any] = {
        "input_name": inputs[0]["name"],
        "input_dtype": dtype,
        "outputs": len(outputs),
        "quantized": dtype in ("int8", "uint8"),
    }
    out_dims = [int(d) for d in outputs[0]["shape"]]
    model = _native_model(path, TFLITE, sig, out_dims, options or {}, file_hash(path), info)
    signatures = len(interp.get_signature_list())
    if needs_rewrite(len(outputs), signatures):
        from edgequant.models.onnx_opset import _cache_root

        out = _cache_root() / f"{path.stem}-{model.weights_hash[:16]}-out0.tflite"
        _, dropped = first_output_only(path, out)
        model.source_path = out
        model.info["source_original"] = str(path.resolve())
        if not signatures:
            model.info["signature_added"] = "serving_default"
        if dropped:
            model.info["outputs_dropped"] = dropped
            model.info["note_outputs"] = (
                f"{len(outputs)} outputs: the first ({outputs[0]['name']}) is measured"
            )
    return model


def load_ir(path: Path, options: Mapping[str, Any] | None = None) -> Model:
    """An OpenVINO IR (``model.xml`` with ``model.bin`` beside it)."""
    from edgequant.models.loader import file_hash

    if not path.is_file():
        raise ModelError(f"IR model {path} does not exist")
    looks = sniff(path)
    if looks is None or not looks.startswith("XML"):
        what = f"it looks like {looks}" if looks else "it is not XML"
        raise ModelError(f"cannot read IR model {path}: {what}")
    weights = path.with_suffix(".bin")
    if not weights.is_file():
        raise ModelError(
            f"IR model {path} keeps its weights in {weights.name}, which is not in "
            f"{path.parent}; put the .bin beside the .xml"
        )
    try:
        import openvino as ov

        ir = ov.Core().read_model(str(path))
    except ImportError:
        raise ModelError("reading IR models needs openvino: pip install openvino") from None
    except Exception as e:
        raise ModelError(f"cannot read IR model {path}: {condense_error(e)}") from None
    if len(ir.inputs) != 1:
        names = ", ".join(repr(i.get_any_name()) for i in list(ir.inputs)[:4])
        raise ModelError(
            f"IR model {path} has {len(ir.inputs)} inputs ({names}); edgequant runs models "
            "with one image input"
        )
    dims = [d.get_length() if d.is_static else -1 for d in ir.inputs[0].get_partial_shape()]
    out = [d.get_length() if d.is_static else -1 for d in ir.outputs[0].get_partial_shape()]
    h = hashlib.sha1(f"{file_hash(path)}|{file_hash(weights)}".encode()).hexdigest()
    info = {"input_name": ir.inputs[0].get_any_name(), "outputs": len(ir.outputs)}
    return _native_model(path, "ir", dims, out, options or {}, h, info)
