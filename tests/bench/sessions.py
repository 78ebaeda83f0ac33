"""A real, tiny Session for testing the harness itself: a linear classifier in numpy."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from edgequant.backends.base import Session


class MatmulSession(Session):
    """Logits = flatten(x) @ W: deterministic, fast, any batch size (or a fixed one).

    ``delay_s`` adds a fixed compute time per call (a stand-in for a bigger model);
    ``fail_after`` raises on the n-th call, like a runtime that breaks mid-run.
    """

    executed_precision = "f32"

    def __init__(
        self,
        in_shape: Sequence[int],
        classes: int = 10,
        *,
        seed: int = 0,
        delay_s: float = 0.0,
        fixed_batch: int | None = None,
        fail_after: int | None = None,
    ) -> None:
        rng = np.random.default_rng(seed)
        self.w = rng.standard_normal((int(np.prod(in_shape)), classes)).astype(np.float32)
        self.delay_s = delay_s
        self.fixed_batch = fixed_batch
        self.fail_after = fail_after
        self.calls = 0
        self.batch_sizes: list[int] = []

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("device lost")
        if self.fixed_batch is not None and len(batch) != self.fixed_batch:
            raise ValueError(f"batch {len(batch)} != fixed {self.fixed_batch}")
        self.batch_sizes.append(len(batch))
        if self.delay_s:
            time.sleep(self.delay_s)
        return batch.reshape(len(batch), -1) @ self.w
