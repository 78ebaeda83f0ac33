"""The query sample library: load preprocesses into one array, gather is one copy, unload frees."""

from __future__ import annotations

import numpy as np
import pytest

from edgequant.bench.qsl import SampleLibrary
from edgequant.errors import BenchmarkError, ValidationError


def _data() -> np.ndarray:
    return np.arange(10 * 3 * 2 * 2, dtype=np.float32).reshape(10, 3, 2, 2)


def test_load_gather_unload() -> None:
    data = _data()
    calls: list[list[int]] = []

    def loader(idx: list[int]) -> np.ndarray:
        calls.append(list(idx))
        return data[idx]

    qsl = SampleLibrary(loader, total=10, perf_count=4)
    assert qsl.perf_count == 4
    qsl.load([7, 2, 7, 5])
    assert calls == [[2, 5, 7]]  # sorted, unique, one call
    assert qsl.loaded == 3 and qsl.data is not None and qsl.data.flags.c_contiguous
    np.testing.assert_array_equal(qsl.gather(np.array([5, 2, 7, 5])), data[[5, 2, 7, 5]])
    one = qsl.one(7)
    np.testing.assert_array_equal(one, data[7:8])
    assert np.shares_memory(one, qsl.data)  # SingleStream: a view, no copy
    qsl.unload([7, 2, 5])
    assert qsl.loaded == 0
    with pytest.raises(BenchmarkError):
        qsl.gather(np.array([2]))


def test_full_load_is_identity_mapping() -> None:
    data = _data()
    qsl = SampleLibrary(lambda idx: data[idx], total=10)
    qsl.load(list(range(10))[::-1])
    np.testing.assert_array_equal(qsl.gather(np.array([9, 0])), data[[9, 0]])


def test_bad_requests_are_errors() -> None:
    with pytest.raises(ValidationError):
        SampleLibrary(lambda idx: _data()[idx], total=0)
    qsl = SampleLibrary(lambda idx: _data()[idx], total=10)
    with pytest.raises(BenchmarkError):
        qsl.load([10])
    short = SampleLibrary(lambda idx: _data()[:1], total=10)
    with pytest.raises(BenchmarkError, match="returned 1 samples for 2"):
        short.load([0, 1])


def test_single_stream_sut_hands_the_session_its_loaded_samples() -> None:
    """The SingleStream SUT registers the session's ``prepare_samples`` with the QSL: every load
    hands over the new array, every unload None; finish unregisters it."""
    from edgequant.bench.sut import make_sut
    from tests.bench.sessions import MatmulSession

    data = _data()
    seen: list[np.ndarray | None] = []

    class Recording(MatmulSession):
        def prepare_samples(self, samples: np.ndarray | None) -> None:
            seen.append(samples)
            super().prepare_samples(samples)

    sess = Recording((3, 2, 2))
    qsl = SampleLibrary(lambda idx: data[idx], total=10)
    sut = make_sut("SingleStream", sess, qsl)
    qsl.load([4, 1])
    assert len(seen) == 1 and seen[0] is qsl.data
    np.testing.assert_allclose(sess.run_sample(qsl.row(4)), sess.run(data[4:5]))
    qsl.unload([4, 1])
    assert seen[-1] is None
    with pytest.raises(BenchmarkError, match="no samples are loaded"):
        sess.run_sample(0)
    qsl.load([2])
    sut.finish()
    assert seen[-1] is None and qsl.on_load is None
