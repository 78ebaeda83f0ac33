"""An AOTInductor package (one per compiled batch size) as a session.

Example:
    >>> with get_backend("pytorch").load(art, threads=2) as s:   # doctest: +SKIP
    ...     logits = s.run(batch)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgequant.backends.base import Session
from edgequant.errors import ValidationError

#: largest batch the exported program accepts (the batch dimension is symbolic up to this)
MAX_BATCH = 4096


class PyTorchSession(Session):
    """An AOTInductor package loaded for inference. Float32 NCHW in, float32 logits out."""

    def __init__(
        self, runners: dict[int, Any], threads: int, input_shape: tuple[int, ...], precision: str
    ) -> None:
        self._runners = dict(sorted(runners.items(), reverse=True))
        self.threads = threads
        self.input_shape = tuple(input_shape)
        self.executed_precision = precision
        self.fixed_batch = None

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch (N, C, H, W) float32; returns (N, classes) float32 logits."""
        import torch

        if batch.ndim != 4 or tuple(batch.shape[1:]) != self.input_shape:
            raise ValidationError(
                f"batch shape {tuple(batch.shape)} does not match the model input (N, {', '.join(map(str, self.input_shape))})"
            )
        if not 1 <= batch.shape[0] <= MAX_BATCH:
            raise ValidationError(f"batch size must be 1..{MAX_BATCH}, got {batch.shape[0]}")
        # set on every call: OpenMP thread counts are per calling thread (LoadGen may call from another)
        torch.set_num_threads(self.threads)
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        outs = []
        start, n = 0, len(x)
        smallest = min(self._runners)
        with torch.inference_mode():
            while start < n:
                left = n - start
                # the largest compiled size that fits; a tail shorter than every size is padded
                size = next((b for b in self._runners if b <= left), smallest)
                chunk = x[start : start + size]
                if len(chunk) < size:
                    chunk = torch.cat(
                        [chunk, chunk.new_zeros((size - len(chunk), *chunk.shape[1:]))]
                    )
                out = self._runners[size](chunk)
                out = out[0] if isinstance(out, list | tuple) else out
                outs.append(out[: min(size, left)])
                start += size
        y = outs[0] if len(outs) == 1 else torch.cat(outs)
        return np.asarray(y.detach().float().numpy(), dtype=np.float32)

    def close(self) -> None:
        self._runners = {}


__all__ = ["MAX_BATCH", "PyTorchSession"]
