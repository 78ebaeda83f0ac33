"""Upgrade an old-opset ``.onnx`` (11, 12: common in files exported by other frameworks) to
opset 13 with ``onnx.version_converter``: ONNX Runtime's per-channel QDQ (``axis`` on
Quantize/DequantizeLinear) needs opset >= 13, so w8a8 on such a file failed with INVALID_GRAPH.

The upgraded file is written once into the artifact cache's ``sources/`` folder and checked
against the original with ONNX Runtime on seeded samples (:func:`edgequant.models.conversion_check.compare`);
the model then names it as ``onnx_path`` and keeps the original in ``info["onnx_upgraded_from"]``.

Example:
    >>> from edgequant.models import load_model
    >>> m = load_model("cls_opset11.onnx")                       # doctest: +SKIP
    >>> m.info["onnx_upgraded_from"]["opset"], m.info["opset"]   # doctest: +SKIP
    (11, 13)
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgequant.errors import ModelError, condense_error

if TYPE_CHECKING:
    from edgequant.models.base import Model

#: the lowest opset every quantizer here accepts (ORT per-channel QDQ)
MIN_OPSET = 13
SEED = 0


def _cache_root() -> Path:
    from edgequant.paths import default_cache_dir

    return default_cache_dir() / "sources"


def upgrade_opset(model: Model, target: int = MIN_OPSET) -> Model:
    """``model`` itself when its opset is >= ``target``, else the upgraded, checked model.

    Example:
        >>> m2 = upgrade_opset(load_onnx(Path("old.onnx")))   # doctest: +SKIP
    """
    opset = model.info.get("opset")
    if model.onnx_path is None or opset is None or opset >= target:
        return model
    src = Path(model.onnx_path)
    out = _cache_root() / f"{src.stem}-{model.weights_hash[:16]}-opset{target}.onnx"
    if not out.is_file():
        _write_upgraded(src, out, opset, target)
    upgraded = replace(
        model,
        onnx_path=out,
        info={
            **model.info,
            "opset": target,
            "onnx_upgraded_from": {"path": str(src), "opset": opset, "to": target},
        },
    )
    upgraded.info["onnx_upgraded_from"]["check"] = _check(src, out, model)
    return upgraded


def _write_upgraded(src: Path, out: Path, opset: int, target: int) -> None:
    import onnx
    from onnx import version_converter

    try:
        proto = onnx.load(str(src))  # with external data, resolved beside the file
        new = version_converter.convert_version(proto, target)
        onnx.checker.check_model(new)
    except Exception as e:
        raise ModelError(
            f"ONNX model {src} is opset {opset}; the quantizers need >= {target} and "
            f"onnx.version_converter could not upgrade it: {condense_error(e)}; re-export it "
            f"at opset {target} or newer"
        ) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    onnx.save(new, str(tmp))
    tmp.replace(out)  # atomic: concurrent loaders see the whole file or none


def _check(src: Path, out: Path, model: Model) -> dict[str, Any]:
    """ORT on the original vs ORT on the upgraded file, on 4 seeded samples."""
    from edgequant.models.conversion_check import _ort_runner, check_runners

    try:
        ref, cand = _ort_runner(str(src)), _ort_runner(str(out))
    except ImportError:
        return {"skipped": "ONNX Runtime is not installed"}
    except Exception as e:
        raise ModelError(
            f"ONNX model {src}: the opset-{MIN_OPSET} upgrade does not load in ONNX Runtime: "
            f"{condense_error(e)}"
        ) from None
    x = np.random.default_rng(SEED).standard_normal((4, *model.input_spec.tensor_shape))
    result = check_runners(ref, cand, x.astype(np.float32), what=f"opset upgrade of {src}")
    if not result["faithful"]:
        raise ModelError(
            f"ONNX model {src}: the opset-{MIN_OPSET} upgrade changes the outputs (cosine "
            f"{result['cosine_min']}); re-export it at opset {MIN_OPSET} or newer"
        )
    return {**result, "data": "4 seeded standard-normal samples"}


__all__ = ["MIN_OPSET", "upgrade_opset"]
