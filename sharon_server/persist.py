"""Group commit: every event submitted while a transaction is in flight joins the next one.

Submissions are FIFO, so batches commit in stream-position order. Each submitter awaits a
future that resolves only after its batch's transaction has committed; the ``on_commit``
callback (fan-out) runs once per committed batch, in order, before those futures resolve.
If a batch fails, it and everything queued behind it fail (later events may build on the
failed ones), and ``on_failure`` lets the owner rebuild its in-memory state.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, List, Optional

import attr
from twisted.logger import Logger

__all__ = ["PendingEvent", "GroupCommitter"]

log = Logger(namespace="sharon.persist")


@attr.s(slots=True, auto_attribs=True)
class PendingEvent:
    """One event waiting to be committed, with the rows that go with it."""

    pos: int
    event_row: Any
    state_row: Any = None
    room_row: Any = None
    extremity: Any = None
    txn_row: Any = None
    extra: Any = None
    payload: Any = None
    future: Optional["asyncio.Future[None]"] = None


class GroupCommitter:
    """Batches PendingEvents into one transaction per round (bounded by ``max_batch``)."""

    def __init__(self, persist_batch: Callable[..., Awaitable[None]],
                 on_commit: Callable[[List[PendingEvent]], None],
                 on_failure: Callable[[BaseException], Awaitable[None]],
                 max_batch: int = 2000, max_queue: int = 100_000) -> None:
        self._persist_batch = persist_batch
        self._on_commit = on_commit
        self._on_failure = on_failure
        self._queue: List[PendingEvent] = []
        self._running = False
        self._max_batch = max_batch
        self._max_queue = max_queue
        self.batches = 0
        self.committed = 0
        self.largest_batch = 0

    @property
    def queue_length(self) -> int:
        """Events waiting for the next transaction."""
        return len(self._queue)

    @property
    def full(self) -> bool:
        """True when the queue is at its bound; callers should refuse new work."""
        return len(self._queue) >= self._max_queue

    def submit(self, item: PendingEvent) -> "asyncio.Future[None]":
        """Queue an event; the returned future resolves after its transaction commits."""
        loop = asyncio.get_running_loop()
        item.future = loop.create_future()
        self._queue.append(item)
        if not self._running:
            self._running = True
            loop.create_task(self._drain())
        return item.future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: len(batch)]
                try:
                    await self._persist_batch(
                        events=[p.event_row for p in batch],
                        state=[p.state_row for p in batch if p.state_row is not None],
                        rooms_new=[p.room_row for p in batch if p.room_row is not None],
                        extremities=_last_extremities(batch),
                        txns=[p.txn_row for p in batch if p.txn_row is not None],
                        extra=_group_extra(batch),
                    )
                except BaseException as exc:  # noqa: BLE001 - every waiter must hear of it
                    failed = batch + self._queue
                    self._queue = []
                    log.failure("persist.batch_failed", size=len(failed))
                    for p in failed:
                        if p.future is not None and not p.future.done():
                            p.future.set_exception(exc)
                    await self._on_failure(exc)
                    continue
                self.batches += 1
                self.committed += len(batch)
                self.largest_batch = max(self.largest_batch, len(batch))
                try:
                    self._on_commit(batch)
                finally:
                    for p in batch:
                        if p.future is not None and not p.future.done():
                            p.future.set_result(None)
        finally:
            self._running = False


def _last_extremities(batch: List[PendingEvent]) -> list:
    latest = {}
    for p in batch:
        if p.extremity is not None:
            latest[p.extremity[0]] = p.extremity
    return list(latest.values())


def _group_extra(batch: List[PendingEvent]) -> list:
    """Every event's derived rows, in event order; consecutive uses of one statement merge
    into one executemany (never reordered, so an update never runs before its insert)."""
    runs: list = []
    for p in batch:
        for stmt, params in p.extra or ():
            if runs and runs[-1][0] is stmt:
                runs[-1][1].extend(params)
            else:
                runs.append((stmt, list(params)))
    return runs
