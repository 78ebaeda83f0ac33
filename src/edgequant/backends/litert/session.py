"""A LiteRT interpreter behind the :class:`Session` contract: float NCHW in, float logits out.

Static INT8 artifacts have int8 input and output tensors (ai-edge-quantizer quantizes the
model's I/O too). The session quantizes the float batch with the input tensor's scale and
zero-point and dequantizes the int8 logits with numpy, so callers never see integers.

The converted model has batch 1 baked in; other batch sizes are served by
``resize_tensor_input`` + ``allocate_tensors`` (measured: microseconds on the tiny net, one
XNNPACK re-plan on big ones), done only when the batch size changes. A model whose graph bakes
batch 1 into a RESHAPE (``x.view(1, -1)`` style flattening) cannot be resized, and one whose
RESHAPE keeps batch 1 next to a -1 (``[1, -1, 16]``) resizes but folds the batch into another axis
(its outputs keep batch 1; found by :func:`~edgequant.backends.litert.inspect.outputs_have_batch`):
the session then reports ``fixed_batch = 1`` and runs larger batches one sample at a time.

Example:
    >>> sess = LiteRtSession(Path("model.tflite"), threads=2)   # doctest: +SKIP
    >>> sess.run(np.zeros((4, 3, 224, 224), np.float32)).shape   # doctest: +SKIP
    (4, 1000)
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from edgequant.backends.base import Session
from edgequant.backends.litert.inspect import outputs_have_batch
from edgequant.errors import ArtifactError, ValidationError, condense_error


class TensorCodec:
    """Float <-> tensor dtype conversion for one I/O tensor (identity for float tensors).

    ``detail`` is the interpreter's tensor detail (``dtype`` and ``quantization`` = (scale,
    zero_point)). Encoding rounds to nearest and saturates to the integer range.

    Example:
        >>> c = TensorCodec({"dtype": np.int8, "quantization": (0.5, -3)})
        >>> c.encode(np.array([0.0, 1.0, 100.0], np.float32))
        array([ -3,  -1, 127], dtype=int8)
        >>> c.decode(np.array([-3, -1], np.int8))
        array([0., 1.], dtype=float32)
    """

    def __init__(self, detail: dict[str, Any]) -> None:
        self.dtype = np.dtype(detail["dtype"])
        scale, zero = detail.get("quantization", (0.0, 0))
        self.quantized = self.dtype.kind in "iu" and scale != 0.0
        self.scale = np.float32(scale)
        self.inv_scale = np.float32(1.0 / scale) if self.quantized else np.float32(1.0)
        self.zero = np.float32(zero)
        info = np.iinfo(self.dtype) if self.dtype.kind in "iu" else None
        self.lo = np.float32(info.min) if info else np.float32(0)
        self.hi = np.float32(info.max) if info else np.float32(0)

    def encode(self, x: np.ndarray) -> np.ndarray:
        if not self.quantized:
            return np.ascontiguousarray(x, dtype=self.dtype)
        # q = clip(round(x / s) + z): in place on one float buffer, then one cast
        q = np.multiply(x, self.inv_scale, dtype=np.float32)
        np.rint(q, out=q)
        q += self.zero
        np.clip(q, self.lo, self.hi, out=q)
        return q.astype(self.dtype)

    def decode(self, y: np.ndarray) -> np.ndarray:
        if not self.quantized:
            return np.asarray(y, dtype=np.float32)
        out = y.astype(np.float32)
        out -= self.zero
        out *= self.scale
        return out


class LiteRtSession(Session):
    """One ``ai_edge_litert`` interpreter (XNNPACK delegate, ``threads`` threads)."""

    fixed_batch = None

    def __init__(
        self,
        path: Path,
        threads: int,
        executed_precision: str | None = None,
        batch_resizable: bool | None = None,
    ) -> None:
        from ai_edge_litert.interpreter import Interpreter

        if threads < 1:
            raise ValidationError(f"threads must be >= 1, got {threads}")
        try:
            self._interp: Any = Interpreter(model_path=str(path), num_threads=threads)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ArtifactError(
                f"LiteRT cannot load {path}: {condense_error(e)}; delete the artifact and rebuild it"
            ) from None
        inputs, outputs = self._interp.get_input_details(), self._interp.get_output_details()
        if len(inputs) != 1 or not outputs:
            raise ArtifactError(
                f"{path} has {len(inputs)} inputs / {len(outputs)} outputs; edgequant runs models "
                "with one image input and at least one output"
            )
        # several outputs (a detector's boxes + scores): all computed, the first is returned
        self._in, self._out = inputs[0], outputs[0]
        self._in_codec, self._out_codec = TensorCodec(self._in), TensorCodec(self._out)
        self._in_index, self._out_index = int(self._in["index"]), int(self._out["index"])
        self._sample_shape = tuple(int(d) for d in self._in["shape"][1:])
        self._batch = int(self._in["shape"][0])
        self.executed_precision = executed_precision
        self.threads = threads
        # one interpreter is not thread-safe; callers in several threads take turns
        self._lock = threading.Lock()
        #: None = not known yet (found out on the first batch of another size)
        self._resizable = batch_resizable
        if batch_resizable is False:
            self.fixed_batch = 1

    @property
    def input_dtype(self) -> str:
        """The artifact's input tensor dtype (``int8`` for static INT8, else ``float32``)."""
        return self._in_codec.dtype.name

    @property
    def output_dtype(self) -> str:
        return self._out_codec.dtype.name

    def _resize(self, n: int) -> bool:
        """Make the interpreter take batches of ``n``; False when the model cannot."""
        if self._resizable is False:
            return False
        try:
            self._interp.resize_tensor_input(self._in_index, [n, *self._sample_shape])
            self._interp.allocate_tensors()
            folded = not outputs_have_batch(self._interp, n)
        except (ValueError, RuntimeError):
            folded = True
        if folded:
            # batch 1 is baked into the graph: go back to it and loop over samples
            try:
                self._interp.resize_tensor_input(self._in_index, [1, *self._sample_shape])
                self._interp.allocate_tensors()
            except (ValueError, RuntimeError) as e:
                raise ArtifactError(
                    f"LiteRT cannot run this model any more: {condense_error(e)}"
                ) from None
            self._batch, self._resizable, self.fixed_batch = 1, False, 1
            return False
        self._batch, self._resizable = n, True
        return True

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        self._interp.set_tensor(self._in_index, self._in_codec.encode(x))
        self._interp.invoke()
        y = self._interp.get_tensor(self._out_index)
        return self._out_codec.decode(y.reshape(x.shape[0], -1))

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Run one float32 NCHW batch; return float32 logits ``(N, classes)``."""
        x = np.asarray(batch)
        if x.ndim != 4 or tuple(x.shape[1:]) != self._sample_shape:
            raise ValidationError(
                f"LiteRT model expects batches of shape (N, {', '.join(map(str, self._sample_shape))}), got {x.shape}"
            )
        if self._interp is None:
            raise ValidationError("this LiteRT session is closed; load the artifact again")
        n = int(x.shape[0])
        if n < 1:
            raise ValidationError("cannot run an empty batch")
        with self._lock:
            if n != self._batch and not self._resize(n):
                return np.concatenate([self._invoke(x[i : i + 1]) for i in range(n)])
            return self._invoke(x)

    def close(self) -> None:
        # the interpreter frees its arena and delegate when collected; drop our reference
        self._interp = None


__all__ = ["LiteRtSession", "TensorCodec"]
