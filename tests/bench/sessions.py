"""A real, tiny Session for testing the harness itself: a linear classifier in numpy."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence

import numpy as np

from edgequant.backends.base import Session


class MatmulSession(Session):
    """Logits = flatten(x) @ W: deterministic, fast, any batch size (or a fixed one).

    ``delay_s`` adds a fixed compute time per call (a stand-in for a bigger model);
    ``fail_after`` raises on the n-th call, like a runtime that breaks mid-run;
    ``interrupt_after`` sends this process SIGINT (a Ctrl-C) once, on the n-th call after
    :meth:`arm` (pass ``arm`` as ``run_scenario``'s ``on_start``: counted from LoadGen's start).
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
        interrupt_after: int | None = None,
    ) -> None:
        rng = np.random.default_rng(seed)
        self.w = rng.standard_normal((int(np.prod(in_shape)), classes)).astype(np.float32)
        self.delay_s = delay_s
        self.fixed_batch = fixed_batch
        self.fail_after = fail_after
        self.calls = 0
        self.batch_sizes: list[int] = []
        self.interrupt_after = interrupt_after
        self.armed_calls: int | None = None  # calls since arm(); None until armed

    def arm(self) -> None:
        self.armed_calls = 0

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.armed_calls is not None:
            self.armed_calls += 1
            if self.armed_calls == self.interrupt_after:
                os.kill(os.getpid(), signal.SIGINT)
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("device lost")
        if self.fixed_batch is not None and len(batch) != self.fixed_batch:
            raise ValueError(f"batch {len(batch)} != fixed {self.fixed_batch}")
        self.batch_sizes.append(len(batch))
        if self.delay_s:
            time.sleep(self.delay_s)
        return batch.reshape(len(batch), -1) @ self.w
