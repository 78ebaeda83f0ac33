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


def test_scores_give_intervals_and_the_paired_drop() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 400)
    ref = np.tile(np.arange(5, dtype=np.int32), (400, 1))
    ref[:, 0] = np.where(rng.random(400) < 0.9, labels, (labels + 1) % 10)  # fp32 ~90% right
    run = ref.copy()
    run[:8, 0] = (ref[:8, 0] + 3) % 10  # 8 answers changed
    acc = scores(run, labels, ref)
    assert acc["agreement_with_fp32_pct"] == 98.0
    lo, hi = acc["agreement_ci95_pct"]
    assert 95.0 < lo < 98.0 < hi < 100.0
    right, ref_right = run[:, 0] == labels, ref[:, 0] == labels
    assert acc["drop_vs_fp32_pts"] == pytest.approx(100 * (ref_right.mean() - right.mean()))
    dlo, dhi = acc["drop_ci95_pts"]
    assert dlo < acc["drop_vs_fp32_pts"] < dhi and dhi - dlo < 6.0  # paired: narrow
    tlo, thi = acc["top1_ci95_pct"]
    assert tlo < acc["top1_pct"] < thi
