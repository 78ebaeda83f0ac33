"""The query sample library: preprocessed samples held in RAM for LoadGen.

LoadGen calls ``load(indices)`` before a run and ``unload(indices)`` after it; ``load``
preprocesses the listed samples into one contiguous float32 array so that the SUTs gather a batch
with a single fancy index, and a SingleStream query is a zero-copy slice.

Example:
    >>> import numpy as np
    >>> qsl = SampleLibrary(lambda idx: np.ones((len(idx), 3, 4, 4), np.float32), total=10)
    >>> qsl.load([3, 1])
    >>> qsl.gather(np.array([1, 3])).shape
    (2, 3, 4, 4)
    >>> qsl.unload([3, 1]); qsl.loaded
    0
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np

from edgequant.errors import BenchmarkError, ValidationError

#: load function: sample indices -> float32 NCHW batch of those samples
Loader = Callable[[Sequence[int]], np.ndarray]


class SampleLibrary:
    """Samples ``0..total-1`` that a :class:`Loader` can preprocess; ``perf_count`` fit in RAM."""

    def __init__(self, loader: Loader, total: int, perf_count: int | None = None) -> None:
        if total < 1:
            raise ValidationError("the dataset has no samples to benchmark")
        self.loader = loader
        self.total = total
        self.perf_count = min(perf_count or total, total)
        self.data: np.ndarray | None = None
        # row of each qsl index in ``data`` (-1: not loaded); identity when everything is loaded
        self._row = np.full(total, -1, np.int64)
        self._identity = False
        self.handle: Any = None
        #: told the loaded array after every load and None after an unload (a session's
        #: ``prepare_samples``: the SingleStream SUT sets it)
        self.on_load: Callable[[np.ndarray | None], None] | None = None

    @property
    def loaded(self) -> int:
        return 0 if self.data is None else len(self.data)

    def load(self, indices: Sequence[int]) -> None:
        """Preprocess ``indices`` into one contiguous array (LoadGen's LoadSamplesToRam)."""
        idx = np.asarray(list(indices), np.int64)
        if idx.size == 0:
            return
        if idx.min() < 0 or idx.max() >= self.total:
            raise BenchmarkError(f"LoadGen asked for samples outside 0..{self.total - 1}")
        order = np.unique(idx)
        data = np.ascontiguousarray(self.loader(order.tolist()), dtype=np.float32)
        if len(data) != len(order):
            raise BenchmarkError(
                f"the loader returned {len(data)} samples for {len(order)} indices"
            )
        self.data = data
        self._row[:] = -1
        self._row[order] = np.arange(len(order))
        self._identity = bool(len(order) == self.total)
        if self.on_load is not None:
            self.on_load(data)

    def unload(self, indices: Sequence[int]) -> None:
        """Free the samples (LoadGen's UnloadSamplesFromRam)."""
        self.data = None
        self._row[:] = -1
        self._identity = False
        if self.on_load is not None:
            self.on_load(None)

    def rows(self, indices: np.ndarray) -> np.ndarray:
        """Rows in :attr:`data` of qsl ``indices``."""
        return indices if self._identity else self._row[indices]

    def gather(self, indices: np.ndarray) -> np.ndarray:
        """One contiguous batch of the given qsl indices (one fancy-index copy)."""
        if self.data is None:
            raise BenchmarkError("samples were used before LoadGen loaded them")
        return self.data[self.rows(indices)]

    def row(self, index: int) -> int:
        """The row in :attr:`data` of one loaded qsl index."""
        if self.data is None:
            raise BenchmarkError("samples were used before LoadGen loaded them")
        return index if self._identity else int(self._row[index])

    def one(self, index: int) -> np.ndarray:
        """A (1, C, H, W) zero-copy view of one sample (what ``Session.run_sample`` runs)."""
        r = self.row(index)
        return cast(np.ndarray, self.data)[r : r + 1]

    # --- LoadGen -----------------------------------------------------------------------------
    def construct(self) -> Any:
        """Register with LoadGen (``ConstructQSL``); :meth:`destroy` releases it."""
        import mlperf_loadgen as lg

        self.handle = lg.ConstructQSL(self.total, self.perf_count, self.load, self.unload)
        return self.handle

    def destroy(self) -> None:
        if self.handle is not None:
            import mlperf_loadgen as lg

            lg.DestroyQSL(self.handle)
            self.handle = None
