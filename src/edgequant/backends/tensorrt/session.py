"""An ONNX Runtime session on the TensorRT execution provider (GPU).

Example:
    >>> with get_backend("tensorrt").load(art, threads=1) as s:   # doctest: +SKIP
    ...     logits = s.run(batch)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgequant.backends.base import Artifact, Session
from edgequant.errors import ArtifactError, condense_error


class TensorRtSession(Session):
    """An ONNX Runtime session on the TensorRT provider (CUDA as fallback for unsupported ops)."""

    def __init__(self, artifact: Artifact) -> None:
        import onnxruntime as ort

        cache = artifact.directory / "trt_engine_cache"
        cache.mkdir(exist_ok=True)
        trt_opts: dict[str, Any] = {
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
            "trt_fp16_enable": bool(artifact.metadata.get("trt_fp16")),
            "trt_int8_enable": bool(artifact.metadata.get("trt_int8")),
        }
        try:
            self._sess = ort.InferenceSession(
                str(artifact.path),
                providers=[("TensorrtExecutionProvider", trt_opts), "CUDAExecutionProvider"],
            )
        except Exception as e:
            raise ArtifactError(
                f"TensorRT cannot load {artifact.path}: {condense_error(e)}"
            ) from None
        self._input = self._sess.get_inputs()[0].name
        self.executed_precision = artifact.metadata.get("executed_precision")

    def run(self, batch: np.ndarray) -> np.ndarray:
        out = self._sess.run(None, {self._input: np.ascontiguousarray(batch, dtype=np.float32)})[0]
        return np.asarray(out, dtype=np.float32)


__all__ = ["TensorRtSession"]
