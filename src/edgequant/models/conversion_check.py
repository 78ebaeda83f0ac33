"""Numerical checks of a conversion: fp32 source vs fp32 converted, on the same samples.

:func:`compare` gives the cosine similarity of the flattened outputs (per sample, the worst and
the mean), the largest absolute error, the output SQNR in dB and, for outputs with a class axis
(rank 2, more than one class), the top-1 agreement. :func:`reference_runner` runs a model the way
its source format defines it (the eager module, ONNX Runtime on the original ``.onnx``, the
LiteRT interpreter on a ``.tflite``, OpenVINO on an IR), so every converted form is judged against
the file the user gave.

Example:
    >>> import numpy as np
    >>> a = np.array([[1.0, 2.0, 3.0], [3.0, 1.0, 0.0]], np.float32)
    >>> c = compare(a, a + 0.01)
    >>> c["top1_agreement_pct"], c["max_abs_error"] <= 0.0101, c["cosine_min"] > 0.999
    (100.0, True, True)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from edgequant.errors import ModelError, condense_error
from edgequant.models.base import TFLITE

if TYPE_CHECKING:
    from edgequant.models.base import Model

Runner = Callable[[np.ndarray], np.ndarray]
#: below this worst-sample cosine a conversion is flagged as not faithful
COSINE_WARN = 0.999


def compare(reference: np.ndarray, candidate: np.ndarray) -> dict[str, Any]:
    """How close ``candidate`` is to ``reference`` (same shape, a batch axis first).

    Example:
        >>> compare(np.ones((2, 4)), np.ones((2, 4)))["sqnr_db"]
        inf
    """
    ref = np.asarray(reference, np.float64)
    cand = np.asarray(candidate, np.float64)
    n = ref.shape[0] if ref.ndim else 0
    if cand.shape[:1] != ref.shape[:1] or ref.size != cand.size:
        # the sessions flatten one sample's output ((N, -1)): only the sizes must agree
        raise ModelError(f"outputs differ in shape: source {ref.shape}, converted {cand.shape}")
    r, c = ref.reshape(n, -1), cand.reshape(n, -1)
    dot = (r * c).sum(1)
    norms = np.linalg.norm(r, axis=1) * np.linalg.norm(c, axis=1)
    cos = np.where(norms > 0, dot / np.maximum(norms, 1e-300), 1.0)
    noise = float(((r - c) ** 2).sum())
    signal = float((r**2).sum())
    out: dict[str, Any] = {
        "samples": int(n),
        "cosine_min": round(float(cos.min()), 6),
        "cosine_mean": round(float(cos.mean()), 6),
        "max_abs_error": float(np.abs(r - c).max()) if r.size else 0.0,
        "sqnr_db": float("inf") if noise == 0 else round(10 * np.log10(signal / noise), 2),
        "top1_agreement_pct": None,
    }
    if r.shape[1] > 1 and (ref.ndim == 2 or all(d == 1 for d in ref.shape[1:-1])):
        agree = (r.argmax(1) == c.argmax(1)).mean()  # flattened: (N,1,1,K) vs (N,K) agree
        out["top1_agreement_pct"] = round(100.0 * float(agree), 2)
    out["faithful"] = bool(out["cosine_min"] >= COSINE_WARN)
    return out


def run_batches(fn: Runner, x: np.ndarray, batch: int | None = None) -> np.ndarray:
    """``fn`` over ``x`` in batches (``batch=None``: all at once), outputs stacked."""
    if batch is None:
        return np.asarray(fn(x))
    return np.concatenate([np.asarray(fn(x[i : i + batch])) for i in range(0, len(x), batch)])


def reference_runner(model: Model) -> tuple[Runner, str]:
    """How the source format itself runs ``model``, and its name in words.

    Example:
        >>> from edgequant.models import load_model
        >>> fn, how = reference_runner(load_model("digits_cnn"))
        >>> how, fn(np.zeros((2, 1, 32, 32), np.float32)).shape
        ('the eager PyTorch module', (2, 10))
    """
    original = model.info.get("onnx_upgraded_from", {}).get("path")
    if model.module is not None:
        return _torch_runner(model.module), "the eager PyTorch module"
    if model.onnx_path is not None:
        return _ort_runner(str(original or model.onnx_path)), "ONNX Runtime on the source .onnx"
    if model.source_format == TFLITE and model.source_path is not None:
        return _tflite_runner(
            str(model.source_path)
        ), "the LiteRT interpreter on the source .tflite"
    if model.source_format == "ir" and model.source_path is not None:
        return _ir_runner(str(model.source_path)), "OpenVINO on the source IR"
    raise ModelError(f"model {model.name} has no source that can be run as a reference")


def _torch_runner(module: Any) -> Runner:
    import torch

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(np.ascontiguousarray(x))).numpy()

    return run


def _ort_runner(path: str) -> Runner:
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    fixed = sess.get_inputs()[0].shape[0]

    def run(x: np.ndarray) -> np.ndarray:
        if isinstance(fixed, int) and fixed != len(x):
            return run_batches(lambda b: sess.run(None, {name: b})[0], x, fixed)
        return np.asarray(sess.run(None, {name: x})[0])

    return run


def _tflite_runner(path: str) -> Runner:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=path)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]

    def one(x: np.ndarray) -> np.ndarray:
        scale, zero = inp.get("quantization", (0.0, 0))
        data = x
        if inp["dtype"] != np.float32:
            data = np.clip(np.round(x / scale + zero), *_limits(inp["dtype"])).astype(inp["dtype"])
        interp.set_tensor(inp["index"], data)
        interp.invoke()
        y = interp.get_tensor(out["index"])
        o_scale, o_zero = out.get("quantization", (0.0, 0))
        if out["dtype"] != np.float32:
            y = (y.astype(np.float32) - o_zero) * o_scale
        return np.asarray(y, np.float32)

    return lambda x: run_batches(one, x, 1)


def _limits(dtype: Any) -> tuple[int, int]:
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def _ir_runner(path: str) -> Runner:
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})

    def one(x: np.ndarray) -> np.ndarray:
        return np.asarray(compiled(x)[0])

    try:
        batch_free = compiled.inputs[0].get_partial_shape()[0].is_dynamic
    except Exception:
        batch_free = False
    return one if batch_free else (lambda x: run_batches(one, x, 1))


def check_runners(
    reference: Runner, candidate: Runner, x: np.ndarray, *, what: str
) -> dict[str, Any]:
    """:func:`compare` of two runners on ``x``; a runner that fails is condensed to one line."""
    try:
        ref = reference(x)
    except Exception as e:
        raise ModelError(
            f"{what}: the source model failed on the samples: {condense_error(e)}"
        ) from None
    try:
        cand = candidate(x)
    except Exception as e:
        raise ModelError(
            f"{what}: the converted model failed on the samples: {condense_error(e)}"
        ) from None
    return compare(ref, cand)


__all__ = ["COSINE_WARN", "check_runners", "compare", "reference_runner", "run_batches"]
