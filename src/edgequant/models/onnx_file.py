"""A user's ``.onnx`` classifier as a :class:`Model`: its input read from the graph.

Dynamic dimensions (``[-1, 3, '?', '?']``, common in models exported by other frameworks) are
resolved by an input shape from the user (``--input-shape``) or the model card; an NHWC input
needs ``layout: NHWC``. Without mean/std the ImageNet convention is assumed and recorded as such.

Example:
    >>> from edgequant.models import load_model
    >>> load_model("cls.onnx", input_options={"input_shape": "1,3,224,224"})  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgequant.errors import ModelError
from edgequant.models.base import Model
from edgequant.models.image_input import image_chw, image_spec


def load_onnx(
    path: Path, options: Mapping[str, Any] | None = None, *, name: str | None = None
) -> Model:
    """Read ``path`` (no external data needed) and build its :class:`Model`.

    ``options`` are :meth:`InputSpec.from_options`'s; ``input_shape`` fills dynamic dims.

    Example:
        >>> load_onnx(Path("cls.onnx"), {"input_shape": "1,3,96,96"}).input_spec.shape  # doctest: +SKIP
        (3, 96, 96)
    """
    from edgequant.models.loader import file_hash

    opts = dict(options or {})
    proto, inputs = _read_graph(path)
    graph = proto.graph
    dims = _dims(inputs[0])
    layout = str(opts.get("layout", "NCHW")).upper()
    where = f"ONNX model {path}"
    if layout not in ("NCHW", "NHWC"):
        raise ModelError(f"{where}: layout must be NCHW or NHWC, got {layout!r}")
    c, h, w = image_chw(where, dims, layout, opts, what=f"input {inputs[0].name!r}")
    out_dims = _dims(graph.output[0])
    if not out_dims or not isinstance(out_dims[-1], int) or out_dims[-1] < 1:
        # a dense output (detector, segmenter) sized by the input: probe it at the given shape
        out_dims = _probe_output(path, graph.output[0].name, out_dims, (c, h, w), layout)
    spec, is_assumed = image_spec(where, (c, h, w), layout, opts)
    given = dict(options or {})
    info: dict[str, Any] = {
        "preprocessing_assumed": is_assumed,
        "input_name": inputs[0].name,
        "output_name": graph.output[0].name,
        "dynamic_batch": not (isinstance(dims[0], int) and dims[0] > 0),
        "dynamic_dims_resolved": [i for i, d in enumerate(dims[1:], 1) if not isinstance(d, int)],
        "opset": max(
            (o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=None
        ),
    }
    if given:
        info["input_options"] = given
    if is_assumed:
        info["note"] = (
            f"preprocessing assumed: mean {spec.mean}, std {spec.std} on 0-255 pixels, resize "
            f"{spec.resize} + centre crop {h}x{w}"
        )
    from edgequant.models.onnx_opset import upgrade_opset

    info["output_shape"] = out_dims[1:]
    return upgrade_opset(
        Model(
            name=name or path.stem,
            family="onnx",
            input_spec=spec,
            num_classes=int(out_dims[-1]),
            module=None,
            onnx_path=path.resolve(),
            weights=str(path),
            weights_hash=_weights_hash(path, proto, file_hash),
            info=info,
            source_format="onnx",
        )
    )


def _probe_output(
    path: Path, name: str, dims: list[int | str], chw: tuple[int, int, int], layout: str
) -> list[int | str]:
    """The output shape ONNX Runtime gives for one sample, when the file leaves it dynamic."""
    import numpy as np

    c, h, w = chw
    shape = (1, c, h, w) if layout == "NCHW" else (1, h, w, c)
    try:
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        y = sess.run([name], {sess.get_inputs()[0].name: np.zeros(shape, np.float32)})[0]
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ModelError(
            f"ONNX model {path}: output {name!r} has shape {dims}, and running it on a "
            f"{list(shape)} sample to size it failed ({first})"
        ) from None
    if y.ndim < 2:
        raise ModelError(f"ONNX model {path}: output {name!r} has no batch axis ({list(y.shape)})")
    return [d if isinstance(d, int) else int(n) for d, n in zip(dims, y.shape, strict=False)] or [
        int(n) for n in y.shape
    ]


def _weights_hash(path: Path, proto: Any, file_hash: Any) -> str:
    """SHA-1 of the .onnx, combined with each external-data file's: editing either changes it."""
    extra = external_data_files(proto, path.parent)
    if not extra:
        return str(file_hash(path))  # unchanged for single-file models: cache keys stay valid
    h = hashlib.sha1(file_hash(path).encode())
    for f in extra:
        h.update(f"|{f.name}:{file_hash(f)}".encode())
    return h.hexdigest()


def _read_graph(path: Path) -> tuple[Any, list[Any]]:
    """The checked ONNX proto (without external data) and its non-initializer inputs."""
    if not path.is_file():
        raise ModelError(f"ONNX model {path} does not exist")
    try:
        import onnx
    except ImportError as e:
        raise ModelError(
            "reading .onnx models needs the onnx package: pip install 'edgequant[onnxruntime]'"
        ) from e
    try:
        proto = onnx.load(str(path), load_external_data=False)
        missing = [f for f in external_data_files(proto, path.parent) if not f.is_file()]
        if missing:
            raise ModelError(
                f"ONNX model {path} keeps its weights in {missing[0].name}, which is not in "
                f"{path.parent}; put the external data file(s) beside the .onnx"
            )
        # checked by path, so external data resolves beside the model, not in the working folder
        onnx.checker.check_model(str(path))
    except ModelError:
        raise
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        looks = sniff(path)
        hint = f"; the file looks like {looks}" if looks else " (is it a valid .onnx file?)"
        raise ModelError(f"cannot read ONNX model {path}: {first}{hint}") from e
    graph = proto.graph
    init_names = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in init_names]
    if len(inputs) > 1:
        names = ", ".join(repr(i.name) for i in inputs[:4])
        raise ModelError(
            f"ONNX model {path} has {len(inputs)} inputs ({names}); edgequant runs models with "
            "one image input"
        )
    if not graph.node or len(inputs) != 1 or not graph.output:
        raise ModelError(
            f"ONNX model {path} must have one image input and an output "
            f"(found {len(graph.node)} nodes, {len(inputs)} inputs, "
            f"{len(graph.output)} outputs)"
        )
    return proto, inputs


def external_data_files(proto: Any, folder: Path) -> list[Path]:
    """The external-data files an ONNX model's tensors name, relative to its folder, in order."""
    seen: dict[Path, None] = {}
    for tensor in proto.graph.initializer:
        if tensor.data_location == 1:  # onnx.TensorProto.EXTERNAL
            loc = next((e.value for e in tensor.external_data if e.key == "location"), None)
            if loc:
                seen.setdefault(folder / loc, None)
    return list(seen)


def sniff(path: Path) -> str | None:
    """What a file holds judging by its first bytes, when that is not what its suffix says."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return None
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (a PyTorch checkpoint or .pt2 program?)"
    if head[4:8] == b"TFL3":
        return "a TFLite model (.tflite)"
    if head.lstrip().startswith(b"<?xml") or head.lstrip().startswith(b"<net"):
        return "XML (an OpenVINO IR .xml?)"
    if head[:1] == b"\x80":
        return "a Python pickle (a PyTorch checkpoint?)"
    if not head:
        return "an empty file"
    return None


def _dims(value_info: Any) -> list[int | str]:
    """Shape of an ONNX input/output: ints for static dims, the symbol (or "?") for dynamic ones."""
    dims: list[int | str] = []
    for d in value_info.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        else:
            dims.append(d.dim_param or "?")
    return dims
