"""Systems under test, one per MLPerf scenario. They only call ``Session.run``/``run_offline``.

- :class:`SingleStreamSUT`: one sample per query, run synchronously (``Session.run_sample``).
- :class:`MultiStreamSUT`: 8 samples per query, gathered once and run as one batch.
- :class:`OfflineSUT`: the one big query split into batches fed to ``Session.run_offline`` (the
  runtime's throughput path, e.g. OpenVINO's AsyncInferQueue), completed batch by batch.
- :class:`ServerSUT`: queries arrive at Poisson times; a worker batches whatever has arrived.

Responses: in performance mode they carry no payload (nothing to copy on the hot path); in
accuracy mode each sample's response is its top-5 class indices (int32, best first), so top-1,
top-5 and agreement can be computed from LoadGen's accuracy log. A response buffer is a local
numpy array that stays alive until ``QuerySamplesComplete`` returns (LoadGen copies it).

A runtime error inside a callback is caught (an exception crossing into LoadGen's C++ threads
would abort the process), remembered, and every later query is completed empty so LoadGen ends.

Example:
    >>> sut = make_sut("Offline", session, qsl, batch_size=8)   # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import queue
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from edgequant.backends.base import Session
from edgequant.bench.qsl import SampleLibrary
from edgequant.errors import ValidationError

TOPK = 5
_RESPONSE_BYTES = TOPK * 4

_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    """Long-lived worker threads for the Offline and Server SUTs.

    LoadGen keeps a logger per thread that completes samples; a thread that completes samples
    and then exits leaves that logger behind, and the next test crashed (segfault in
    StartTest, about one run in six here) when threads were created per run. These threads
    live as long as the process.
    """
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="eq-sut")
    return _POOL


def top_indices(logits: np.ndarray, k: int = TOPK) -> np.ndarray:
    """int32 (N, k) class indices, best first: the same ranking ``edgequant eval`` uses."""
    from edgequant.measure.accuracy import topk_indices

    return topk_indices(np.asarray(logits).reshape(len(logits), -1), k).astype(np.int32)


class BaseSUT:
    """Shared plumbing: completion, failure capture, stop flag, LoadGen registration."""

    scenario = ""

    def __init__(
        self, session: Session, qsl: SampleLibrary, *, accuracy: bool = False, batch_size: int = 8
    ) -> None:
        self.session = session
        self.qsl = qsl
        self.accuracy = accuracy
        # the batches Offline and Server run: an artifact built for one batch size runs that
        self.batch_size = session.fixed_batch or batch_size
        self.error: BaseException | None = None
        self.stopped = False  # set on Ctrl-C or error: later queries complete empty
        self.completed = 0  # samples answered with a real result
        self.handle: Any = None
        import mlperf_loadgen as lg

        self._lg = lg
        self._Response = lg.QuerySampleResponse
        self._complete_cb = lg.QuerySamplesComplete

    # --- completion ---------------------------------------------------------------------------
    def complete(self, ids: Sequence[int], logits: np.ndarray | None) -> None:
        """Answer ``ids`` with ``logits`` (None: empty answers after a stop or failure)."""
        resp = self._Response
        if logits is None or not self.accuracy:
            self._complete_cb([resp(i, 0, 0) for i in ids])
        else:
            top = np.ascontiguousarray(top_indices(logits[: len(ids)]))
            base = top.ctypes.data
            self._complete_cb(
                [resp(i, base + n * _RESPONSE_BYTES, _RESPONSE_BYTES) for n, i in enumerate(ids)]
            )
            del top  # only now may the buffer go: LoadGen has copied it
        if logits is not None:
            self.completed += len(ids)

    def run_and_complete(self, ids: Sequence[int], infer: Callable[[], np.ndarray]) -> None:
        """Answer ``ids`` with the logits ``infer()`` computes (empty after a stop or a failure)."""
        if self.stopped:
            self.complete(ids, None)
            return
        try:
            out = infer()
        except BaseException as e:  # must not cross into LoadGen's C++ thread
            self.fail(e)
            out = None
        self.complete(ids, out)

    def fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self.stopped = True

    def stop(self) -> None:
        """Stop running the model; answer what is left empty so LoadGen can finish."""
        self.stopped = True

    # --- LoadGen ------------------------------------------------------------------------------
    def issue(self, ids: list[int], indices: list[int]) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """LoadGen's FlushQueries: nothing is held back, so nothing to do."""

    def construct(self) -> Any:
        """Register with LoadGen (the fast-issue SUT: ids and indices as plain lists)."""
        self.handle = self._lg.ConstructFastSUT(self.issue, self.flush)
        return self.handle

    def finish(self) -> None:
        """Wait for background work; release the LoadGen handle."""
        if self.handle is not None:
            self._lg.DestroyFastSUT(self.handle)
            self.handle = None


class SingleStreamSUT(BaseSUT):
    """One sample per query, run synchronously in LoadGen's issue thread through the session's
    ``run_sample`` (the QSL hands the session its loaded samples when LoadGen loads them, so a
    runtime can prepare its inputs outside the timed queries)."""

    scenario = "SingleStream"

    def __init__(
        self, session: Session, qsl: SampleLibrary, *, accuracy: bool = False, batch_size: int = 8
    ) -> None:
        super().__init__(session, qsl, accuracy=accuracy, batch_size=batch_size)
        qsl.on_load = session.prepare_samples
        if qsl.data is not None:
            session.prepare_samples(qsl.data)

    def issue(self, ids: list[int], indices: list[int]) -> None:
        self.run_and_complete(ids, lambda: self.session.run_sample(self.qsl.row(indices[0])))

    def finish(self) -> None:
        if self.qsl.on_load == self.session.prepare_samples:
            self.qsl.on_load = None
        self.session.prepare_samples(None)
        super().finish()


class MultiStreamSUT(BaseSUT):
    """8 samples per query, gathered with one fancy index and run as one batch."""

    scenario = "MultiStream"

    def issue(self, ids: list[int], indices: list[int]) -> None:
        self.run_and_complete(ids, lambda: self.session.run(self.qsl.gather(np.asarray(indices))))


def offline_plan(rows: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Order the Offline query so that most batches are contiguous ranges of loaded rows.

    Offline lets the SUT answer its samples in any order. LoadGen's query repeats the loaded
    samples in random order; taken as successive passes over the distinct rows in ascending
    order (first occurrences, then second occurrences, ...), consecutive samples are mostly
    consecutive rows, so a batch is a zero-copy slice of the QSL array instead of a gathered
    copy (a 224x224 image costs ~0.1 ms to copy on this machine: 10% of MobileNetV2-int8's
    time). Runs shorter than a batch are pooled and gathered (copied) into full batches.

    Returns ``(order, starts, contiguous)``: the query's sample positions in processing order,
    the start offset in ``order`` of each batch (plus the end), and per batch whether its rows
    are consecutive. Batch ``k`` covers ``order[starts[k]:starts[k + 1]]``.

    Example:
        >>> rows = np.array([2, 0, 1, 0, 1, 2, 5])
        >>> order, starts, contiguous = offline_plan(rows, 3)
        >>> rows[order].tolist(), starts.tolist(), contiguous.tolist()
        ([0, 1, 2, 0, 1, 2, 5], [0, 3, 6, 7], [True, True, False])
    """
    n = len(rows)
    by_row = np.argsort(rows, kind="stable")
    sorted_rows = rows[by_row]
    first = np.r_[0, np.flatnonzero(np.diff(sorted_rows)) + 1]
    group_start = np.repeat(first, np.diff(np.r_[first, n]))
    occurrence = np.empty(n, np.int64)
    occurrence[by_row] = np.arange(n) - group_start
    passes = np.lexsort((rows, occurrence))
    r = rows[passes]
    edges = np.r_[0, np.flatnonzero(np.diff(r) != 1) + 1, n].tolist()  # contiguous runs
    full: list[np.ndarray] = []
    rest: list[np.ndarray] = []
    for lo, hi in itertools.pairwise(edges):
        cut = lo + (hi - lo) // batch_size * batch_size
        if cut > lo:
            full.append(passes[lo:cut])
        if hi > cut:
            rest.append(passes[cut:hi])
    n_full = sum(len(f) for f in full) // batch_size
    order = np.concatenate(full + rest) if full or rest else np.zeros(0, np.int64)
    starts = np.r_[np.arange(0, n, batch_size), n].astype(np.int64)
    contiguous = np.arange(len(starts) - 1) < n_full
    return order, starts, contiguous


class _Batches(Sequence[np.ndarray]):
    """Lazy batches of the Offline query: zero-copy slices of the QSL array where the plan
    allows, gathered copies otherwise, padded for an artifact with a fixed batch size."""

    def __init__(
        self,
        sut: BaseSUT,
        rows: np.ndarray,
        starts: np.ndarray,
        contiguous: np.ndarray,
        fixed: int | None,
    ) -> None:
        self.sut = sut
        self.rows = rows  # QSL rows in processing order
        self.starts = starts
        self.contiguous = contiguous
        self.fixed = fixed

    def __len__(self) -> int:
        return len(self.starts) - 1

    def __getitem__(self, i: int) -> np.ndarray:  # type: ignore[override]
        data = self.sut.qsl.data
        if data is None:
            raise ValidationError("samples were unloaded during the run")
        lo, hi = int(self.starts[i]), int(self.starts[i + 1])
        if self.contiguous[i]:
            r0 = int(self.rows[lo])
            return data[r0 : r0 + hi - lo]
        rows = self.rows[lo:hi]
        if self.fixed is not None and len(rows) < self.fixed:
            rows = np.concatenate([rows, np.repeat(rows[:1], self.fixed - len(rows))])
        return data[rows]

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            if self.sut.stopped:  # Ctrl-C or a failure: stop feeding the runtime
                return
            yield self[i]


class OfflineSUT(BaseSUT):
    """All samples in one query, fed in batches through ``Session.run_offline``."""

    scenario = "Offline"

    _future: Future[None] | None = None

    def issue(self, ids: list[int], indices: list[int]) -> None:
        # run on a worker thread so LoadGen's issue thread returns at once
        self._future = _pool().submit(self._work, ids, indices)

    def _work(self, ids: list[int], indices: list[int]) -> None:
        rows = self.qsl.rows(np.asarray(indices, np.int64))
        order, starts, contiguous = offline_plan(rows, self.batch_size)
        batches = _Batches(self, rows[order], starts, contiguous, self.session.fixed_batch)
        ids_in_order = np.asarray(ids, np.uint64)[order].tolist()
        done = np.zeros(len(batches), bool)

        def on_done(i: int, logits: np.ndarray) -> None:
            self.complete(
                ids_in_order[starts[i] : starts[i + 1]], logits if not self.stopped else None
            )
            done[i] = True

        try:
            if not self.stopped:
                self.session.run_offline(batches, on_done)
        except BaseException as e:  # see BaseSUT.run_and_complete
            self.fail(e)
        for i in np.flatnonzero(~done):  # interrupted or failed: LoadGen still needs answers
            self.complete(ids_in_order[starts[i] : starts[i + 1]], None)

    def finish(self) -> None:
        if self._future is not None:
            self._future.result()
        super().finish()


class ServerSUT(BaseSUT):
    """Poisson arrivals: queries are queued; one worker runs what has arrived, up to a batch."""

    scenario = "Server"

    def __init__(
        self, session: Session, qsl: SampleLibrary, *, accuracy: bool = False, batch_size: int = 8
    ) -> None:
        super().__init__(session, qsl, accuracy=accuracy, batch_size=batch_size)
        self._queue: queue.SimpleQueue[tuple[list[int], list[int]] | None] = queue.SimpleQueue()
        self._worker = _pool().submit(self._work)

    def issue(self, ids: list[int], indices: list[int]) -> None:
        self._queue.put((ids, indices))

    def _work(self) -> None:
        q = self._queue
        while True:
            item = q.get()
            if item is None:
                return
            ids, idx = list(item[0]), list(item[1])
            closing = False
            while len(ids) < self.batch_size:
                try:
                    more = q.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    closing = True
                    break
                ids += more[0]
                idx += more[1]
            self._run(ids, idx)
            if closing:
                return

    def _run(self, ids: list[int], idx: list[int]) -> None:
        if self.stopped:
            self.complete(ids, None)
            return
        fixed = self.session.fixed_batch
        s = 0
        try:
            for s in range(0, len(ids), self.batch_size):
                part = np.asarray(idx[s : s + self.batch_size])
                n = len(part)
                if fixed is not None and n < fixed:
                    part = np.concatenate([part, np.repeat(part[:1], fixed - n)])
                self.complete(ids[s : s + n], self.session.run(self.qsl.gather(part)))
        except BaseException as e:  # see BaseSUT.run_and_complete
            self.fail(e)
            self.complete(ids[s:], None)

    def finish(self) -> None:
        self._queue.put(None)
        self._worker.result()
        super().finish()


SUTS: dict[str, type[BaseSUT]] = {
    "SingleStream": SingleStreamSUT,
    "MultiStream": MultiStreamSUT,
    "Offline": OfflineSUT,
    "Server": ServerSUT,
}


def make_sut(
    scenario: str,
    session: Session,
    qsl: SampleLibrary,
    *,
    accuracy: bool = False,
    batch_size: int = 8,
) -> BaseSUT:
    """The SUT for an MLPerf scenario name."""
    from edgequant.bench.settings import scenario_name

    return SUTS[scenario_name(scenario)](session, qsl, accuracy=accuracy, batch_size=batch_size)
