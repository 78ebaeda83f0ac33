"""The Offline batching plan: a permutation of the query into full batches, mostly zero-copy."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edgequant.bench.sut import offline_plan


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=300), st.integers(1, 9))
def test_plan_is_a_permutation_of_full_batches(rows_list: list[int], bs: int) -> None:
    rows = np.asarray(rows_list, np.int64)
    order, starts, contiguous = offline_plan(rows, bs)
    assert sorted(order.tolist()) == list(range(len(rows)))  # every sample answered exactly once
    assert starts[0] == 0 and starts[-1] == len(rows)
    sizes = np.diff(starts)
    assert (sizes[:-1] == bs).all() and 1 <= sizes[-1] <= bs  # only the last batch is short
    for (lo, hi), flag in zip(itertools.pairwise(starts.tolist()), contiguous.tolist()):
        r = rows[order[lo:hi]]
        if flag:
            assert (np.diff(r) == 1).all()  # a zero-copy slice of the QSL array


def test_typical_offline_query_is_mostly_zero_copy() -> None:
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 256, 5000)  # LoadGen's query: loaded samples repeated at random
    _, _, contiguous = offline_plan(rows, 8)
    assert contiguous.mean() > 0.6
    _, _, single = offline_plan(rows, 1)
    assert single.all()  # batch 1: every sample is a view
