"""Accuracy mode's fp32 reference: computed from the model, cached, and never fatal to cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgequant.bench.accuracy import reference_top5, scores
from tests.helpers import tiny_inputs


def test_reference_is_cached_and_an_unwritable_cache_only_warns(
    tiny_model, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    import torch

    x = tiny_inputs(tiny_model, 10, seed=3)
    with torch.inference_mode():
        expected = torch.topk(tiny_model.module(torch.from_numpy(x)), 5).indices.numpy()

    def loader(idx: list[int]) -> np.ndarray:
        return x[idx]

    top = reference_top5(tiny_model, "arr:3", 10, loader, cache_dir=tmp_path, batch_size=4)
    assert np.array_equal(top, expected)
    assert len(list((tmp_path / "reference").glob("*.npy"))) == 1
    # a cache path that cannot hold a folder (a file: even root cannot write there)
    blocked = tmp_path / "blocked"
    blocked.write_text("not a folder")
    again = reference_top5(tiny_model, "arr:3", 10, loader, cache_dir=blocked)
    assert np.array_equal(again, expected)
    assert "cannot cache the fp32 reference" in capsys.readouterr().err
    acc = scores(again, None, expected)
    assert acc["agreement_with_fp32_pct"] == 100.0 and acc["top1_pct"] is None
