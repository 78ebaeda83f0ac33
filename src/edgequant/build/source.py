"""The ``model_source`` record of an artifact: where the model came from, the path it took to
the runtime's form, and the numerical check of that conversion.

The check runs the fp32 form the backend built (its fp32 artifact: the exported ONNX, the
converted IR, the litert-torch flatbuffer, the AOTInductor package) against the source model as
its own format runs it (:func:`edgequant.models.conversion_check.reference_runner`) on the calibration
samples (or seeded samples when the scheme needs none): cosine, max abs error, SQNR and top-1
agreement. The result goes into the artifact's metadata (``model_source``) and from there into
the result record.

Example:
    >>> import tempfile
    >>> from edgequant.backends import get_backend
    >>> from edgequant.build.stage import build_artifact
    >>> from edgequant.models import load_model
    >>> m, be = load_model("digits_cnn"), get_backend("onnxruntime")
    >>> art = build_artifact(be, m, "fp32", cache_dir=tempfile.mkdtemp(), progress=False).artifact
    >>> src = model_source(be, m, art, None)
    >>> src["format"], src["check"]["top1_agreement_pct"], src["check"]["faithful"]
    ('zoo', 100.0, True)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgequant.errors import ModelError, UnsupportedError
from edgequant.models.base import TFLITE
from edgequant.models.conversion_check import check_runners, reference_runner, run_batches

if TYPE_CHECKING:
    from edgequant.backends.base import Artifact, Backend
    from edgequant.build.calibration import CalibrationInput
    from edgequant.data.base import Dataset
    from edgequant.models.base import Model

#: samples a conversion is checked on (the first ones of the calibration set)
CHECK_SAMPLES = 16
SEED = 0


def source_steps(model: Model) -> list[str]:
    """The edits made to the user's file before any runtime saw it, in words."""
    steps = []
    up = model.info.get("onnx_upgraded_from")
    if up:
        steps.append(f"onnx.version_converter opset {up['opset']} -> {up['to']}")
    if model.info.get("dynamic_dims_resolved"):
        steps.append(f"dynamic input dims fixed to {list(model.input_spec.tensor_shape)}")
    if model.info.get("outputs_dropped"):
        steps.append(f"first output kept (dropped {', '.join(model.info['outputs_dropped'])})")
    return steps


def conversion_path(model: Model, artifact: Artifact) -> str:
    """How the source reached the runtime, from what the backend recorded."""
    meta = artifact.metadata
    how = meta.get("converter") or meta.get("exporter") or meta.get("export")
    if isinstance(how, dict):
        how = how.get("source") and f"convert_model from {how['source']}"
    return f"{model.source_format} -> {artifact.backend}: {how or 'as the backend builds it'}"


def check_samples(
    model: Model, calibration: Dataset | np.ndarray | None, n: int = CHECK_SAMPLES
) -> tuple[np.ndarray, str]:
    """Up to ``n`` samples of the calibration data (seeded normal ones without), and their name."""
    if isinstance(calibration, np.ndarray):
        return np.ascontiguousarray(
            calibration[:n], np.float32
        ), f"calibration array, {min(n, len(calibration))} samples"
    if calibration is not None:
        k = min(n, len(calibration))
        return calibration.load(list(range(k))).astype(
            np.float32
        ), f"{calibration.spec}, {k} samples"
    x = np.random.default_rng(SEED).standard_normal((n, *model.input_spec.tensor_shape))
    return x.astype(np.float32), f"{n} seeded standard-normal samples (no calibration data)"


def model_source(
    backend: Backend,
    model: Model,
    fp32_artifact: Artifact,
    calibration: Dataset | np.ndarray | None,
) -> dict[str, Any]:
    """The ``model_source`` mapping: format, file, steps, conversion path and its check."""
    out: dict[str, Any] = {
        "format": model.source_format,
        "file": model.weights if model.source_format != "zoo" else None,
        "steps": source_steps(model),
        "conversion": conversion_path(model, fp32_artifact),
    }
    up = model.info.get("onnx_upgraded_from", {}).get("check")
    if up:
        out["opset_upgrade_check"] = up
    x, data = check_samples(model, calibration)
    try:
        ref, how = reference_runner(model)
    except (ImportError, ModelError) as e:
        out["check"] = {"skipped": f"no reference runner: {e}"}
        return out
    session = backend.load(fp32_artifact, threads=1)
    try:
        fixed = session.fixed_batch

        def candidate(b: np.ndarray) -> np.ndarray:
            return run_batches(session.run, b, fixed)

        result = check_runners(ref, candidate, x, what=f"{model.name} on {backend.name}")
    finally:
        session.close()
    out["check"] = {
        **result,
        "reference": how,
        "against": f"fp32 {backend.name} artifact",
        "data": data,
    }
    return out


def record_model_source(
    backend: Backend,
    model: Model,
    artifact: Artifact,
    calibration: CalibrationInput,
    cache_dir: Path | str | None,
) -> dict[str, Any]:
    """Check the conversion behind ``artifact`` against its source (fp32 vs fp32) once, and keep
    the :func:`model_source` mapping in the artifact's metadata; an artifact that has it already
    is left as it is. A quantized artifact is judged by the fp32 artifact of the same backend
    (built, or found in the cache); ``calibration`` (a dataset spec, a dataset or an array; None:
    seeded samples) gives the samples.

    Example:
        >>> import tempfile
        >>> from edgequant.backends import get_backend
        >>> from edgequant.build.stage import build_artifact
        >>> from edgequant.models import load_model
        >>> m, be, d = load_model("digits_cnn"), get_backend("onnxruntime"), tempfile.mkdtemp()
        >>> art = build_artifact(be, m, "fp32", cache_dir=d, progress=False, check=False).artifact
        >>> record_model_source(be, m, art, None, d)["check"]["faithful"]
        True
    """
    done = artifact.metadata.get("model_source")
    if done is not None:
        return dict(done)
    from edgequant.build.calibration import select_calibration
    from edgequant.build.stage import build_artifact

    data = None
    if calibration is not None:
        # any static scheme opens the data the same way: its train split, or the array as given
        data = select_calibration(_scheme("w8a8"), model, calibration).source
    ref = artifact
    if artifact.scheme.name != _scheme("fp32").name:
        # batch_sizes=(): the check runs on whatever size the fp32 artifact has compiled already
        ref = build_artifact(
            backend,
            model,
            _scheme("fp32"),
            batch_sizes=(),
            cache_dir=cache_dir,
            progress=False,
            check=False,
        ).artifact
    src = model_source(backend, model, ref, data)
    artifact.metadata["model_source"] = src
    artifact.save_metadata()
    return src


def unsupported_source_reason(backend: Backend, model: Model) -> str | None:
    """Why ``backend`` cannot take this model's source at all (None: it can, or it may)."""
    if model.module is not None or model.onnx_path is not None:
        return None
    if model.source_path is None:
        return f"model {model.name} has neither a module nor a file"
    reason = backend.supports(_scheme("fp32"), model)
    if reason is None:
        return None
    fmt = model.source_format
    target = "PyTorch" if backend.needs_torch_module else "ONNX"
    plain = {
        TFLITE: f"there is no maintained .tflite -> {target} converter that works offline "
        "(tf2onnx and tflite2onnx need TensorFlow; nothing converts .tflite to PyTorch)",
        "ir": "an OpenVINO IR is read by OpenVINO only; no converter from IR to another format exists",
    }.get(fmt, reason)
    return f"{backend.name} cannot take a {fmt} model: {plain}"


def require_source(backend: Backend, model: Model) -> None:
    """Raise :class:`UnsupportedError` with the reason when ``backend`` cannot take the source."""
    reason = unsupported_source_reason(backend, model)
    if reason is not None:
        raise UnsupportedError(reason)


def _scheme(name: str) -> Any:
    from edgequant.quant.scheme import get_scheme

    return get_scheme(name)


def source_file(model: Model) -> Path | None:
    """The file the model came from, where there is one."""
    for p in (model.info.get("source_original"), model.source_path, model.onnx_path):
        if p:
            return Path(p)
    return None


__all__ = [
    "CHECK_SAMPLES",
    "check_samples",
    "model_source",
    "record_model_source",
    "require_source",
    "source_steps",
]
