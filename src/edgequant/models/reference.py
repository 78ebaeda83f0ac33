"""FP32 reference outputs of a model: PyTorch for zoo/.pth models, ONNX Runtime for a user's .onnx.

This is what ``edgequant eval`` reports and what "agreement with fp32" compares against.

Example:
    >>> from edgequant.models import load_model
    >>> from edgequant.data import open_dataset
    >>> m = load_model("digits_cnn")
    >>> ds = open_dataset("digits", m.input_spec, limit=32)
    >>> reference_logits(m, ds, progress=False).shape
    (32, 10)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgequant.console import progress as progress_bar
from edgequant.errors import ValidationError
from edgequant.models.base import Model, Samples


def reference_logits(
    model: Model,
    dataset: Samples,
    indices: Sequence[int] | None = None,
    *,
    batch_size: int = 64,
    progress: bool = True,
    threads: int | None = None,
) -> np.ndarray:
    """float32 logits (N, classes) of the fp32 model on the dataset's samples, in order."""
    idx = list(range(len(dataset))) if indices is None else list(indices)
    if not idx:
        raise ValidationError(f"dataset {dataset.spec} has no samples")
    chunks = [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]
    bar = progress_bar(
        chunks, desc=f"fp32 {model.name}", unit="batch", disable=None if progress else True
    )
    outs: list[np.ndarray] = []
    if model.module is not None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        model.module.eval()
        with torch.inference_mode():
            for chunk in bar:
                x = torch.from_numpy(dataset.load(chunk))
                outs.append(model.module(x).float().numpy())
    else:
        if model.onnx_path is None:
            raise ValidationError(
                f"model {model.name} has neither a PyTorch module nor an ONNX file"
            )
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        sess = ort.InferenceSession(str(model.onnx_path), opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        for chunk in bar:
            outs.append(np.asarray(sess.run(None, {name: dataset.load(chunk)})[0], np.float32))
    return np.concatenate(outs).astype(np.float32, copy=False)
