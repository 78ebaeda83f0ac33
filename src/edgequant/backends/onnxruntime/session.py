"""An ONNX Runtime session on the CPU execution provider: float32 NCHW in, float32 logits out.

Example:
    >>> with OnnxRuntimeSession(Path("model.onnx"), threads=2) as s:   # doctest: +SKIP
    ...     logits = s.run(batch)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgequant.backends.base import Session
from edgequant.backends.onnxruntime.config import SESSION_CONFIG
from edgequant.errors import ArtifactError, BenchmarkError, ValidationError, condense_error


class OnnxRuntimeSession(Session):
    """An ``onnxruntime.InferenceSession``: float32 NCHW in, float32 logits out."""

    def __init__(self, path: Path, threads: int, executed_precision: str | None = None) -> None:
        self._sess = make_session(path, threads)
        inputs = self._sess.get_inputs()
        self._input = inputs[0].name
        dim0 = inputs[0].shape[0] if inputs[0].shape else None
        self.fixed_batch = dim0 if isinstance(dim0, int) and dim0 > 0 else None
        self.executed_precision = executed_precision

    def run(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        try:
            out = self._sess.run(None, {self._input: x})[0]
        except Exception as e:  # ORT's pybind errors: make them one clear project error
            if "InvalidArgument" in type(e).__name__ or "INVALID_ARGUMENT" in str(e):
                raise ValidationError(
                    f"ONNX Runtime rejected a batch of shape {x.shape}: {condense_error(e)}"
                ) from None
            raise BenchmarkError(
                f"ONNX Runtime failed while running: {condense_error(e)}"
            ) from None
        return np.asarray(out, dtype=np.float32)

    def close(self) -> None:
        self._sess = None


def make_session(path: Path, threads: int, optimized_path: Path | None = None) -> Any:
    """An ``InferenceSession`` with edgequant's options; ``optimized_path`` saves ORT's graph."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1  # CNNs are a chain: parallelism belongs inside each op
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # the "hardware-specific optimized model" warning is expected
    for key, value in SESSION_CONFIG.items():
        so.add_session_config_entry(key, value)
    if optimized_path is not None:
        so.optimized_model_filepath = str(optimized_path)
    try:
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own exception types for bad files
        raise ArtifactError(
            f"ONNX Runtime cannot load {path}: {condense_error(e)}; delete it and rebuild"
        ) from None


__all__ = ["OnnxRuntimeSession", "make_session"]
