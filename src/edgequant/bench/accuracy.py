"""Accuracy mode: LoadGen's accuracy log -> top-1/top-5, and agreement with the FP32 reference.

Each response in ``mlperf_log_accuracy.json`` is the sample's top-5 class indices (int32, best
first, hex-encoded by LoadGen). The FP32 reference is the source model run as its own format
runs it (:func:`edgequant.models.conversion_check.reference_runner`: the PyTorch module, ONNX
Runtime on a user's ``.onnx``, ...) on the same preprocessed samples; its top-5 are cached per
(model key, dataset identity) under the cache directory.

Top-1/top-5 need labels and class logits. Whatever the output and the data, :func:`reference_figures`
compares the full outputs of the session with the source model's own (as the conversion check
does, :func:`edgequant.models.conversion_check.compare`): output SQNR, cosine and, for class-like
(2-D) outputs, top-1 agreement. They go into the record's ``accuracy["reference"]``.

Example:
    >>> import numpy as np
    >>> top = np.array([[1, 2, 3, 4, 5], [0, 9, 8, 7, 6]], np.int32)
    >>> scores(top, np.array([1, 9]), None)["top1_pct"]
    50.0
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgequant.bench.sut import TOPK, top_indices
from edgequant.console import log
from edgequant.errors import BenchmarkError
from edgequant.measure.accuracy import (
    flips_text,
    margin_flips,
    paired_drop_interval,
    wilson_interval,
)

if TYPE_CHECKING:
    from edgequant.backends.base import Session
    from edgequant.models.base import Model

#: at most this many samples (the first ones) are compared output by output with the reference
REFERENCE_SAMPLES = 256


def read_accuracy_log(path: Path, total: int) -> np.ndarray:
    """(total, 5) int32 top-5 per qsl index from LoadGen's accuracy log; -1 rows were not seen."""
    try:
        entries = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BenchmarkError(f"cannot read LoadGen's accuracy log {path}: {e}") from None
    out = np.full((total, TOPK), -1, np.int32)
    for entry in entries:
        data = bytes.fromhex(entry["data"])
        if len(data) != TOPK * 4:
            raise BenchmarkError(
                f"accuracy log entry for sample {entry['qsl_idx']} has {len(data)} bytes, expected {TOPK * 4}"
            )
        out[int(entry["qsl_idx"])] = np.frombuffer(data, np.int32)
    return out


def scores(
    top5: np.ndarray, labels: np.ndarray | None, reference_top5: np.ndarray | None
) -> dict[str, Any]:
    """``{top1_pct, top5_pct, samples, agreement_with_fp32_pct}`` over the rows that were answered,
    each share with its 95% interval (``top1_ci95_pct``, ``agreement_ci95_pct``: Wilson) and, with
    labels and a reference, the top-1 drop against the fp32 reference on the same samples
    (``drop_vs_fp32_pts``, ``drop_ci95_pts``: Newcombe's paired interval).

    ``agreement_with_fp32_pct`` is the share of samples whose top-1 equals the reference's top-1.
    Labels are None for synthetic data: then only agreement is reported.

    Example:
        >>> ref = np.array([[1, 0, 0, 0, 0]] * 4 + [[2, 0, 0, 0, 0]] * 4, np.int32)
        >>> run = ref.copy(); run[0, 0] = 2
        >>> s = scores(run, np.array([1] * 4 + [2] * 4), ref)
        >>> s["agreement_with_fp32_pct"], s["drop_vs_fp32_pts"], [round(v) for v in s["drop_ci95_pts"]]
        (87.5, 12.5, [-22, 47])
    """
    seen = top5[:, 0] >= 0
    n = int(seen.sum())
    if n == 0:
        raise BenchmarkError("the accuracy log holds no answers")
    out: dict[str, Any] = {
        "samples": n,
        "top1_pct": None,
        "top5_pct": None,
        "agreement_with_fp32_pct": None,
    }
    if labels is not None:
        lab = np.asarray(labels)[seen]
        t = top5[seen]
        right = t[:, 0] == lab
        out["top1_pct"] = float(100.0 * np.mean(right))
        out["top1_ci95_pct"] = _rounded(wilson_interval(int(right.sum()), n))
        out["top5_pct"] = float(100.0 * np.mean((t == lab[:, None]).any(axis=1)))
    if reference_top5 is not None:
        agree = top5[seen, 0] == reference_top5[seen, 0]
        out["agreement_with_fp32_pct"] = float(100.0 * np.mean(agree))
        out["agreement_ci95_pct"] = _rounded(wilson_interval(int(agree.sum()), n))
        if labels is not None:
            ref_right = reference_top5[seen, 0] == lab
            out["drop_vs_fp32_pts"] = float(100.0 * (np.mean(ref_right) - np.mean(right)))
            out["drop_ci95_pts"] = _rounded(paired_drop_interval(ref_right, right))
    return out


def _rounded(interval: tuple[float, float]) -> list[float]:
    return [round(v, 4) for v in interval]


def reference_top5(
    model: Model,
    dataset_identity: str,
    count: int,
    loader: Callable[[Sequence[int]], np.ndarray],
    *,
    cache_dir: Path | None = None,
    batch_size: int = 32,
) -> np.ndarray:
    """FP32 reference top-5 of samples ``0..count-1``, cached per (model key, dataset identity).

    A cache that cannot be written costs a warning, never the finished run that asked.
    """
    from edgequant.build.cache import default_cache_dir

    key = hashlib.sha1(f"{model.key}|{dataset_identity}|{count}".encode()).hexdigest()[:16]
    path = Path(cache_dir or default_cache_dir()) / "reference" / f"{model.name}-{key}.npy"
    if path.is_file():
        try:
            cached = np.load(path)
            if cached.shape == (count, TOPK):
                return cached
        except (OSError, ValueError):
            pass  # corrupt cache entry: recompute below
    from edgequant.models.conversion_check import reference_runner

    run, _ = reference_runner(model)
    parts = [
        top_indices(run(loader(list(range(s, min(s + batch_size, count))))))
        for s in range(0, count, batch_size)
    ]
    top = np.concatenate(parts) if parts else np.zeros((0, TOPK), np.int32)
    tmp = path.with_suffix(".tmp.npy")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(tmp, top)
        tmp.replace(path)
    except OSError as e:
        log(
            f"warning: cannot cache the fp32 reference in {path.parent} ({e.strerror or e}); computed it anyway"
        )
    return top


def reference_figures(
    session: Session,
    model: Model,
    loader: Callable[[Sequence[int]], np.ndarray],
    count: int,
    *,
    batch_size: int = 32,
) -> dict[str, Any]:
    """The session's outputs against the source model's own on the first samples (at most
    :data:`REFERENCE_SAMPLES`): ``{sqnr_db, cosine, cosine_min, max_abs_error,
    top1_agreement_pct, class_like, samples, reference, margins}``; ``cosine`` is the mean over
    samples, ``top1_agreement_pct`` is None unless the output is class-like (``class_like``: 2-D
    logits); ``margins`` (class-like outputs, else None) says whether the samples whose top-1
    changed were near-ties flipped by the output's noise
    (:func:`~edgequant.measure.accuracy.margin_flips`). Needs no labels and works on any output
    shape.

    Example:
        >>> from edgequant.backends import get_backend
        >>> from edgequant.build.stage import build_artifact
        >>> from edgequant.models import load_model
        >>> import tempfile
        >>> m, be = load_model("digits_cnn"), get_backend("onnxruntime")
        >>> art = build_artifact(be, m, "fp32", cache_dir=tempfile.mkdtemp(), progress=False).artifact
        >>> x = np.zeros((4, 1, 32, 32), np.float32)
        >>> with be.load(art, 1) as s:
        ...     ref = reference_figures(s, m, lambda idx: x[list(idx)], 4)
        >>> ref["samples"], ref["cosine"], ref["top1_agreement_pct"]
        (4, 1.0, 100.0)
    """
    from edgequant.models.conversion_check import compare, reference_runner

    run_ref, how = reference_runner(model)
    n = min(count, REFERENCE_SAMPLES)
    batch = session.fixed_batch or batch_size
    refs, outs = [], []
    for start in range(0, n, batch):
        idx = list(range(start, min(start + batch, n)))
        x = np.ascontiguousarray(loader(idx), np.float32)
        refs.append(np.asarray(run_ref(x)))
        if session.fixed_batch is not None and len(idx) < batch:
            # an artifact with a fixed batch size: pad with the first sample, as the SUT does
            x = np.concatenate([x, np.repeat(x[:1], batch - len(idx), axis=0)])
        outs.append(np.asarray(session.run(x))[: len(idx)])
    ref_out, out = np.concatenate(refs), np.concatenate(outs)
    c = compare(ref_out, out)
    class_like = c["top1_agreement_pct"] is not None
    margins = None
    if class_like and ref_out.ndim == 2 and ref_out.shape == out.shape and ref_out.shape[1] > 1:
        margins = margin_flips(ref_out, out)
    return {
        "sqnr_db": c["sqnr_db"],
        "cosine": c["cosine_mean"],
        "cosine_min": c["cosine_min"],
        "max_abs_error": c["max_abs_error"],
        "top1_agreement_pct": c["top1_agreement_pct"],
        "class_like": class_like,
        "samples": c["samples"],
        "reference": how,
        "margins": margins,
    }


def reference_line(ref: dict[str, Any]) -> str:
    """One line for the bench's log: the figures of :func:`reference_figures`.

    Example:
        >>> reference_line({"sqnr_db": 31.5, "cosine": 0.9993, "top1_agreement_pct": 98.4,
        ...                 "samples": 64, "reference": "the eager PyTorch module"})
        'SQNR 31.50 dB, cosine 0.9993, top-1 agreement 98.40% (64 samples, against the eager PyTorch module)'
    """
    parts = [f"SQNR {ref['sqnr_db']:.2f} dB", f"cosine {ref['cosine']:.4f}"]
    if ref.get("top1_agreement_pct") is not None:
        parts.append(f"top-1 agreement {ref['top1_agreement_pct']:.2f}%")
    line = ", ".join(parts) + f" ({ref['samples']} samples, against {ref['reference']})"
    return line + (f"; {flips_text(ref['margins'])}" if ref.get("margins") else "")
