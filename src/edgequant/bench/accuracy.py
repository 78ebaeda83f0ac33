"""Accuracy mode: LoadGen's accuracy log -> top-1/top-5, and agreement with the FP32 reference.

Each response in ``mlperf_log_accuracy.json`` is the sample's top-5 class indices (int32, best
first, hex-encoded by LoadGen). The FP32 reference is the same model run in fp32 (the PyTorch
module, or ONNX Runtime for a user's ``.onnx``) on the same preprocessed samples; its top-5 are
cached per (model key, dataset identity) under the cache directory.

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

if TYPE_CHECKING:
    from edgequant.models.base import Model


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
    """``{top1_pct, top5_pct, samples, agreement_with_fp32_pct}`` over the rows that were answered.

    ``agreement_with_fp32_pct`` is the share of samples whose top-1 equals the reference's top-1.
    Labels are None for synthetic data: then only agreement is reported.
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
        out["top1_pct"] = float(100.0 * np.mean(t[:, 0] == lab))
        out["top5_pct"] = float(100.0 * np.mean((t == lab[:, None]).any(axis=1)))
    if reference_top5 is not None:
        out["agreement_with_fp32_pct"] = float(
            100.0 * np.mean(top5[seen, 0] == reference_top5[seen, 0])
        )
    return out


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
    run = _fp32_runner(model)
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


def _fp32_runner(model: Model) -> Callable[[np.ndarray], np.ndarray]:
    """Float32 logits of a batch: the PyTorch module, or ONNX Runtime for a user's ONNX file."""
    if model.module is not None:
        import torch

        module = model.module.eval()

        def run(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return module(torch.from_numpy(np.ascontiguousarray(x, np.float32))).float().numpy()

        return run
    if model.onnx_path is not None:
        import onnxruntime as ort

        sess = ort.InferenceSession(str(model.onnx_path), providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name

        def run_onnx(x: np.ndarray) -> np.ndarray:
            return np.asarray(sess.run(None, {name: np.ascontiguousarray(x, np.float32)})[0])

        return run_onnx
    raise BenchmarkError(
        f"model {model.name} has neither a PyTorch module nor an ONNX file for the fp32 reference"
    )
