"""Keep only the first output of a several-output ``.tflite`` (a face detector's boxes + scores,
a landmark model's points + flag): the sessions run one output per model, and edgequant measures
the first one. The graph is unchanged otherwise (the other heads are still computed), so latency
is the model's own; the dropped outputs are recorded by name. A file without a signature (older
converters wrote none) gets one, ``serving_default``: ai-edge-quantizer calibrates through it.

Example:
    >>> out, dropped = first_output_only(Path("face.tflite"), Path("/tmp/face-out0.tflite"))  # doctest: +SKIP
    >>> dropped                                                                               # doctest: +SKIP
    ['classificators']
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgequant.errors import ModelError, condense_error


def first_output_only(src: Path, out: Path) -> tuple[Path, list[str]]:
    """Write ``src`` with its subgraph's outputs cut to the first one into ``out``.

    Returns ``out`` and the names of the outputs dropped.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb

    try:
        model = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(src.read_bytes(), 0))
        sg = model.subgraphs[0]
        keep = int(sg.outputs[0])
        dropped = [_name(sg.tensors[int(i)].name) for i in sg.outputs[1:]]
        sg.outputs = [keep]
        for sig in model.signatureDefs or []:
            sig.outputs = [o for o in (sig.outputs or []) if int(o.tensorIndex) == keep]
        if not model.signatureDefs:
            model.signatureDefs = [_signature(fb, sg)]
        builder = flatbuffers.Builder(max(1024, src.stat().st_size + 4096))
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        data = bytes(builder.Output())
    except Exception as e:
        raise ModelError(
            f"TFLite model {src} has several outputs and keeping only the first failed: "
            f"{condense_error(e)}"
        ) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(out)
    return out, dropped


def needs_rewrite(outputs: int, signatures: int) -> bool:
    """True when a .tflite must be rewritten: several outputs, or no signature."""
    return outputs > 1 or signatures == 0


def _signature(fb: Any, sg: Any) -> Any:
    sig = fb.SignatureDefT()
    sig.signatureKey = "serving_default"
    sig.subgraphIndex = 0
    sig.inputs, sig.outputs = [], []
    for group, indices in ((sig.inputs, sg.inputs), (sig.outputs, sg.outputs)):
        for i in indices:
            t = fb.TensorMapT()
            t.name = _name(sg.tensors[int(i)].name)
            t.tensorIndex = int(i)
            group.append(t)
    return sig


def _name(raw: bytes | str | None) -> str:
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    return str(raw)


__all__ = ["first_output_only", "needs_rewrite"]
