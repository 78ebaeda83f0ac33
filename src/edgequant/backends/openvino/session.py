"""An OpenVINO compiled model as a session: LATENCY requests for ``run``, an
``AsyncInferQueue`` on a THROUGHPUT compile for ``run_offline``.

Example:
    >>> with get_backend("openvino").load(art, threads=2) as sess:     # doctest: +SKIP
    ...     sess.executed_precision
    'i8'
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edgequant.backends.base import Session
from edgequant.backends.openvino import inspect as ovi
from edgequant.errors import (
    ArtifactError,
    BenchmarkError,
    EdgequantError,
    ValidationError,
    condense_error,
)

#: lines of OpenVINO/NNCF messages that locate the C++ check or repeat the API banner
_BANNERS = ("Exception from", "Check '", "Traceback", "FrontEnd API failed", "Summary:")


def ov_error(e: BaseException) -> str:
    """:func:`~edgequant.errors.condense_error` of an OpenVINO exception without its banner lines,
    so the line that says what failed is the one kept (e.g. "No conversion rule found for
    operations: aten::histc", which a keyword search would pass over for "FrontEnd API failed").

    Example:
        >>> ov_error(RuntimeError("Check 'x' failed at a.cpp:1:\\nSummary:\\n-- No rule for aten::foo"))
        'RuntimeError: No rule for aten::foo'
    """
    lines = [ln.strip().lstrip("-").strip() for ln in str(e).splitlines()]
    kept = "\n".join(ln for ln in lines if ln and not ln.startswith(_BANNERS))
    # the same type name, so the condensed line still says which OpenVINO error it was
    cause = type(type(e).__name__, (Exception,), {})(kept)
    return condense_error(cause)


#: batch sizes run on a static-shape compile of the model (SingleStream and MultiStream)
STATIC_BATCHES = (1, 8)


class OpenVinoSession(Session):
    """A compiled IR: LATENCY-hinted for :meth:`run`, THROUGHPUT-hinted (streams + an
    ``AsyncInferQueue``) for :meth:`run_offline`. The IR has a free batch dimension, so one
    compiled model serves every batch size (measured: no slower than a static shape here).

    Example:
        >>> with get_backend("openvino").load(art, threads=2) as sess:     # doctest: +SKIP
        ...     sess.executed_precision, sess.run(x).shape
        ('i8', (8, 1000))
    """

    def __init__(self, core: Any, ir_model: Any, *, threads: int, hint: str) -> None:
        self.core = core
        self.ir_model = ir_model
        self.threads = threads
        self.hint = hint
        shape = ir_model.input(0).get_partial_shape()
        self._chw = tuple(d.get_length() if d.is_static else -1 for d in list(shape)[1:])
        self.fixed_batch = shape[0].get_length() if shape[0].is_static else None
        self._latency: Any = None
        self._request: Any = None
        self._static: dict[int, Any] = {}
        #: numpy views of the static requests' output tensors, taken after their first run (a
        #: static shape keeps its output buffer): fetching the tensor from Python after every
        #: inference cost ~30 us per call on MobileNetV2 int8, while the thread's caches are cold
        self._outputs: dict[int, np.ndarray] = {}
        self._throughput: Any = None
        #: prepare_samples' Tensors (one per sample), its request and that request's output view
        self._sample_tensors: list[Any] | None = None
        self._sample_request: Any = None
        self._sample_output: Any = None
        self._run_lock = threading.Lock()
        import openvino as ov

        self._ov = ov
        latency = self.latency_model()
        self.executed_precision = ovi.executed_precision(latency, ovi.precision_hint(latency))
        self.runtime_precisions = ovi.runtime_precisions(latency)

    def _compile(self, mode: str, model: Any = None) -> Any:
        config = {
            "INFERENCE_NUM_THREADS": self.threads,
            "PERFORMANCE_HINT": mode,
            "INFERENCE_PRECISION_HINT": self.hint,
        }
        try:
            return self.core.compile_model(self.ir_model if model is None else model, "CPU", config)
        except Exception as e:
            raise ArtifactError(f"OpenVINO cannot compile the model: {ov_error(e)}") from None

    def latency_model(self) -> Any:
        """The LATENCY-hinted compiled model (compiled on first use)."""
        if self._latency is None:
            self._latency = self._compile("LATENCY")
            self._request = self._latency.create_infer_request()
        return self._latency

    def _check(self, batch: np.ndarray) -> np.ndarray:
        if (  # the hot path (a QSL slice): nothing to convert
            type(batch) is np.ndarray
            and batch.dtype == np.float32
            and batch.shape[1:] == self._chw
            and self.fixed_batch is None
            and batch.flags.c_contiguous
        ):
            return batch
        if not isinstance(batch, np.ndarray) or batch.ndim != 4:
            raise ValidationError(
                f"expected a float32 NCHW batch, got {getattr(batch, 'shape', type(batch))}"
            )
        if any(d not in (-1, s) for d, s in zip(self._chw, batch.shape[1:], strict=True)):
            raise ValidationError(
                f"batch shape {batch.shape} does not match the model input (N, {self._chw})"
            )
        if self.fixed_batch is not None and batch.shape[0] != self.fixed_batch:
            raise ValidationError(
                f"this artifact runs batch size {self.fixed_batch} only, got {batch.shape[0]}"
            )
        return np.ascontiguousarray(batch, dtype=np.float32)

    def _request_for(self, n: int) -> Any:
        """The infer request for batch size ``n``: a static-shape compile for the sizes the
        scenarios use (1 and 8), compiled on first use (the warm-up pays); the free-batch model
        for the rest. Measured on MobileNetV2 fp32, batch 1, 2 threads: the static model's p50
        was 4.9–5.8 ms against 5.3–6.0 ms for the free-batch one, in alternating rounds."""
        if self.fixed_batch is not None or n not in STATIC_BATCHES or -1 in self._chw:
            self.latency_model()
            return self._request
        if n not in self._static:
            model = self.ir_model.clone()
            model.reshape([n, *self._chw])
            self._static[n] = self._compile("LATENCY", model).create_infer_request()
        return self._static[n]

    def run(self, batch: np.ndarray) -> np.ndarray:
        x = self._check(batch)
        with self._run_lock:  # one InferRequest per size: concurrent callers take turns
            request = self._request_for(len(x))
            # a Tensor over the caller's memory, then start_async + wait. Measured on MobileNetV2
            # int8, batch 1, alternating blocks of calls, as wall time beyond OpenVINO's own
            # request latency: ``infer([x], share_inputs=True)`` 190-375 us, set_input_tensor +
            # ``infer()`` 50-100 us, set_input_tensor + ``start_async(); wait()`` 35-70 us
            request.set_input_tensor(self._ov.Tensor(x, shared_memory=True))
            request.start_async()
            request.wait()
            out = self._outputs.get(id(request))
            if out is None:
                out = request.get_output_tensor(0).data
                if any(r is request for r in self._static.values()):
                    self._outputs[id(request)] = out
            # copy: the request's output buffer is reused by the next call
            return np.array(out, dtype=np.float32, copy=True)

    def prepare_samples(self, samples: np.ndarray | None) -> None:
        """Wrap each sample once in a Tensor over its memory and run the first, so a
        :meth:`run_sample` only sets the input, runs and copies the logits out. Measured on
        MobileNetV2 int8, batch 1 (Intel Xeon, amx-int8), wall time beyond OpenVINO's own request
        latency: 80-85 us per :meth:`run`, 40-50 us this way (the Tensor alone ~15 us)."""
        super().prepare_samples(samples)
        self._sample_tensors = None
        if (
            samples is None
            or len(samples) == 0
            or samples.dtype != np.float32
            or not samples.flags.c_contiguous
            or samples.shape[1:] != self._chw
            or self.fixed_batch not in (None, 1)
        ):
            return  # run_sample falls back on run (which converts or refuses)
        ov = self._ov
        tensors = [ov.Tensor(samples[r : r + 1], shared_memory=True) for r in range(len(samples))]
        with self._run_lock:
            request = self._request_for(1)
            request.set_input_tensor(tensors[0])
            request.infer()
            # the static request keeps its output buffer: one numpy view serves every query
            self._sample_output = request.get_output_tensor(0).data
            self._sample_request = request
        self._sample_tensors = tensors

    def run_sample(self, row: int) -> np.ndarray:
        tensors = self._sample_tensors
        if tensors is None:
            return super().run_sample(row)
        with self._run_lock:
            request = self._sample_request
            request.set_input_tensor(tensors[row])
            request.start_async()
            request.wait()
            return np.array(self._sample_output, dtype=np.float32, copy=True)

    def run_offline(
        self, batches: Sequence[np.ndarray], on_done: Callable[[int, np.ndarray], None]
    ) -> None:
        """All batches through an ``AsyncInferQueue`` sized by the plugin's optimal request count.

        No Python callback: a request's batch is answered from this thread when the request
        comes back idle for the next batch (and the rest after ``wait_all``). A Python callback
        takes the GIL from OpenVINO's threads on every request; measured on MobileNetV2 int8,
        batch 1, 2 threads (Intel Xeon, amx-int8): 694 img/s with a callback that does nothing,
        714 this way, 724 with no answers at all.
        """
        import openvino as ov

        if self._throughput is None:
            self._throughput = self._compile("THROUGHPUT")
        compiled = self._throughput
        # twice the plugin's optimum: a stream is never idle while Python answers a batch and
        # submits the next request (measured on MobileNetV2 int8: 228 -> 355 img/s with shared inputs)
        jobs = 2 * max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        queue = ov.AsyncInferQueue(compiled, jobs)
        # the batch each request is running (None: idle and answered); a batch that _check had
        # to convert is a temporary, held here until it is answered
        running: list[tuple[int, np.ndarray] | None] = [None] * len(queue)

        def answer(rid: int) -> None:
            job = running[rid]
            if job is None:
                return
            running[rid] = None
            out = np.array(queue[rid].get_output_tensor(0).data, dtype=np.float32, copy=True)
            try:
                on_done(job[0], out)
            except EdgequantError:
                raise
            except Exception as e:
                raise BenchmarkError(f"on_done callback failed: {ov_error(e)}") from e

        try:
            for i, b in enumerate(batches):
                x = self._check(b)
                # the request start_async takes next: the idle queue's front (one submitter)
                rid = queue.get_idle_request_id()
                answer(rid)
                running[rid] = (i, x)
                # share_inputs=True: the Session contract keeps each batch alive and unchanged
                # until its on_done, so the request reads the caller's memory without a copy
                queue.start_async([x], share_inputs=True)
        finally:
            queue.wait_all()
        for rid in range(len(queue)):
            answer(rid)

    def close(self) -> None:
        self._request = self._latency = self._throughput = None
        self._static = {}
        self._outputs = {}
        self._samples = self._sample_tensors = self._sample_request = self._sample_output = None


__all__ = ["STATIC_BATCHES", "OpenVinoSession"]
