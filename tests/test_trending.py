"""rooms/trending.py: the incremental window equals recomputation from scratch."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rooms.trending import Trending

BUCKET = 10
WINDOW = 60


def reference(adds, now: int, window: int = WINDOW, bucket: int = BUCKET) -> Counter:
    """Counts recomputed from every add: those in the buckets of the window ending at ``now``."""
    last = now // bucket
    first = last - window // bucket + 1
    return +Counter(tag for tag, ts in adds if first <= ts // bucket <= last)


def ranked(counts: Counter, n: int):
    return sorted(counts.items(), key=lambda tc: (-tc[1], tc[0]))[:n]


def test_examples() -> None:
    t = Trending(window_ms=WINDOW, bucket_ms=BUCKET)
    t.add("sleep", 0); t.add("sleep", 5); t.add("walks", 15)
    assert t.top(20, 5) == [("sleep", 2), ("walks", 1)]
    assert t.top(65, 5) == [("walks", 1)]  # bucket 0 slid out
    assert t.top(65, 5, keep=lambda tag: tag != "walks") == []
    t.add("old", 1)  # older than the window: ignored for good
    assert t.top(69, 5) == [("walks", 1)]
    assert t.top(70, 5) == []  # and now bucket 1 too
    with pytest.raises(ValueError):
        Trending(window_ms=5, bucket_ms=10)


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 2 * WINDOW)),
        st.tuples(st.just("advance"), st.integers(0, 3 * BUCKET)),
        st.tuples(st.just("top"), st.integers(1, 5)),
    ),
    max_size=80,
)


@settings(max_examples=400)
@given(OPS)
def test_incremental_equals_recomputation(ops) -> None:
    t = Trending(window_ms=WINDOW, bucket_ms=BUCKET)
    now = 0
    adds = []
    for op in ops:
        if op[0] == "add":
            ts = max(0, now - op[2])  # never in the future, up to two windows old
            t.add(op[1], ts)
            adds.append((op[1], ts))
        elif op[0] == "advance":
            now += op[1]
        else:
            expected = reference(adds, now)
            assert t.counts(now) == expected
            assert t.top(now, op[1]) == ranked(expected, op[1])
    assert t.counts(now) == reference(adds, now)
