"""Trending tags per service over a sliding window, maintained incrementally (pure).

Counts live in time buckets of ``bucket_ms``; the window is the ``window_ms // bucket_ms``
buckets ending with the bucket of ``now_ms``. ``add`` is O(1); ``top`` first drops the
buckets that have slid out of the window (each bucket is dropped once), then ranks the
running totals. Time is always passed in (``now_ms``): nothing here reads a clock.

``now_ms`` must not go backwards between calls: a bucket once dropped is gone, and an
``add`` older than the window's start is ignored (it could never count again).
"""

from __future__ import annotations

import heapq
from collections import Counter
from typing import Callable, Dict, List, Optional, Tuple

__all__ = ["Trending"]


class Trending:
    """Per-tag counts over the last ``window_ms`` milliseconds, in ``bucket_ms`` buckets."""

    def __init__(self, window_ms: int = 24 * 3600 * 1000, bucket_ms: int = 3600 * 1000) -> None:
        if bucket_ms <= 0 or window_ms < bucket_ms:
            raise ValueError("need 0 < bucket_ms <= window_ms")
        self.window_ms = window_ms
        self.bucket_ms = bucket_ms
        self._span = window_ms // bucket_ms
        self._buckets: Dict[int, Counter] = {}
        self._totals: Counter = Counter()
        self._horizon: Optional[int] = None
        """The oldest bucket still kept (None until time is first seen)."""

    def _first_bucket(self, now_ms: int) -> int:
        return now_ms // self.bucket_ms - self._span + 1

    def advance(self, now_ms: int) -> None:
        """Drop the buckets that are older than the window ending at ``now_ms``."""
        first = self._first_bucket(now_ms)
        if self._horizon is not None and first <= self._horizon:
            return
        for b in [b for b in self._buckets if b < first]:
            self._totals.subtract(self._buckets.pop(b))
        self._totals = +self._totals  # forget zero counts
        self._horizon = first

    def add(self, tag: str, ts_ms: int, count: int = 1) -> None:
        """Count ``tag`` used at ``ts_ms`` (ignored if already outside the window)."""
        b = ts_ms // self.bucket_ms
        if self._horizon is not None and b < self._horizon:
            return
        self._buckets.setdefault(b, Counter())[tag] += count
        self._totals[tag] += count

    def counts(self, now_ms: int) -> Counter:
        """Every tag's count in the window ending at ``now_ms``."""
        self.advance(now_ms)
        last = now_ms // self.bucket_ms
        future = [c for b, c in self._buckets.items() if b > last]
        if not future:
            return Counter(self._totals)
        out = Counter(self._totals)
        for c in future:
            out.subtract(c)
        return +out

    def top(self, now_ms: int, n: int, keep: Optional[Callable[[str], bool]] = None) -> List[Tuple[str, int]]:
        """The ``n`` most used tags in the window (ties by tag), optionally only those ``keep`` accepts."""
        counts = self.counts(now_ms)
        items = ((t, c) for t, c in counts.items() if c > 0 and (keep is None or keep(t)))
        return heapq.nsmallest(n, items, key=lambda tc: (-tc[1], tc[0]))
