"""Live fan-out: who is subscribed to which room, and delivery of committed events.

Each committed event is encoded once per codec in use and prepared once as a WebSocket
frame; the same bytes go to every subscriber. Deliveries run through one FIFO pump that
handles at most ``chunk`` frames per reactor turn, so a broadcast to thousands of members
never holds the reactor, and events still reach every connection in stream order. A turn
gathers each connection's frames and writes them with one write, straight to the socket
when its buffer is empty (``ws.write_now``).

``delivered_pos`` is the highest position handed to the pump. A connection that starts a
resume replays from storage up to that position and receives everything later live: that
split is what makes resume gap-free and duplicate-free.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Set, Tuple

from protocol.frames import event_frame

__all__ = ["Subscriber", "Hub"]


class Subscriber:
    """What the hub needs of a connection (implemented by the WebSocket protocol)."""

    user_id: Optional[str]
    codec: Any
    replaying: bool

    def deliver_prepared(self, prepared: Any) -> None:  # pragma: no cover - interface
        """Write one prepared frame, or buffer it while replaying."""
        raise NotImplementedError

    def deliver_frames(self, frames: List[Any]) -> None:  # pragma: no cover - interface
        """Write several prepared frames in order (one write), or buffer them while replaying."""
        for prepared in frames:
            self.deliver_prepared(prepared)


class Hub:
    """Room subscriptions for synced connections and the ordered delivery pump."""

    def __init__(self, prepare: Callable[[bytes, bool], Any], chunk: int = 4000) -> None:
        self._prepare = prepare
        self._chunk = max(1, chunk)
        self.room_subs: Dict[str, Set[Subscriber]] = {}
        self.user_conns: Dict[str, Set[Subscriber]] = {}
        self.delivered_pos = 0
        self._pump: Deque[Tuple[Dict[Any, Any], List[Subscriber]]] = deque()
        self._pumping = False
        self.frames_out = 0
        self.blocked_by: Dict[str, Set[str]] = {}
        """Sender -> users who blocked them (kept by the controls feature): not delivered live."""
        self.observed_rooms: Callable[[str], Iterable[str]] = lambda user_id: ()
        """Rooms a user observes without a membership (staff; set by the staff feature)."""

    # -- subscriptions -------------------------------------------------------------
    def add_connection(self, conn: Subscriber, user_id: str, rooms: Iterable[str]) -> None:
        """Make ``conn`` live for ``user_id`` in every room of ``rooms``."""
        self.user_conns.setdefault(user_id, set()).add(conn)
        for room_id in rooms:
            self.room_subs.setdefault(room_id, set()).add(conn)
        for room_id in self.observed_rooms(user_id):
            self.room_subs.setdefault(room_id, set()).add(conn)

    def observe(self, user_id: str, room_id: str, on: bool) -> None:
        """Subscribe (or unsubscribe) every live connection of ``user_id`` to a room it
        observes without a membership (later connections get it from ``observed_rooms``)."""
        if on:
            self.join(user_id, room_id)
        else:
            self.part(user_id, room_id)

    def remove_connection(self, conn: Subscriber, user_id: Optional[str]) -> None:
        """Forget ``conn`` everywhere (on close, logout or re-auth)."""
        if user_id is not None:
            conns = self.user_conns.get(user_id)
            if conns is not None:
                conns.discard(conn)
                if not conns:
                    del self.user_conns[user_id]
        for subs in self.room_subs.values():
            subs.discard(conn)

    def join(self, user_id: str, room_id: str) -> None:
        """Subscribe every live connection of ``user_id`` to ``room_id``."""
        conns = self.user_conns.get(user_id)
        if conns:
            self.room_subs.setdefault(room_id, set()).update(conns)

    def part(self, user_id: str, room_id: str) -> None:
        """Unsubscribe every live connection of ``user_id`` from ``room_id``."""
        conns = self.user_conns.get(user_id)
        subs = self.room_subs.get(room_id)
        if conns and subs:
            subs.difference_update(conns)
            if not subs:
                del self.room_subs[room_id]

    def live_count(self) -> int:
        """How many connections are live (synced)."""
        return sum(len(c) for c in self.user_conns.values())

    # -- delivery ------------------------------------------------------------------
    def publish(self, pos: int, room_id: str, client_event: Dict[str, Any],
                extra_user: Optional[str] = None) -> None:
        """Queue one committed event for the room's subscribers (and ``extra_user``'s)."""
        self.delivered_pos = pos
        subs = self.room_subs.get(room_id)
        targets: List[Subscriber] = list(subs) if subs else []
        if extra_user is not None:
            extra = self.user_conns.get(extra_user)
            if extra:
                seen = set(targets)
                targets.extend(c for c in extra if c not in seen)
        if self.blocked_by and targets:  # empty dict when nobody blocks anyone: one check
            blockers = self.blocked_by.get(client_event.get("sender"))
            if blockers and "state_key" not in client_event:
                targets = [c for c in targets if c.user_id not in blockers]
        if not targets:
            return
        self._pump.append(({"event": client_event}, targets))
        if not self._pumping:
            # On the next loop turn, so the other events of the same committed batch join
            # this turn's writes (scheduled before the senders' acknowledgements run).
            self._pumping = True
            asyncio.get_running_loop().call_soon(self._run_pump)

    def _frame_for(self, state: Dict[Any, Any], codec: Any) -> Any:
        prepared = state.get(codec)
        if prepared is None:
            payload = codec.encode(event_frame(state["event"]))
            prepared = self._prepare(payload, codec.binary)
            state[codec] = prepared
        return prepared

    def _run_pump(self) -> None:
        """One turn: up to ``chunk`` frames, gathered per connection and written with one
        write each (several events for one connection cost one ``send``; decision 0012)."""
        budget = self._chunk
        pump = self._pump
        out: Dict[Subscriber, List[Any]] = {}
        frame_for = self._frame_for
        while pump and budget > 0:
            state, targets = pump[0]
            take = targets[:budget] if len(targets) > budget else targets
            for conn in take:
                frame = frame_for(state, conn.codec)
                frames = out.get(conn)
                if frames is None:
                    out[conn] = [frame]
                else:
                    frames.append(frame)
            budget -= len(take)
            self.frames_out += len(take)
            if len(take) < len(targets):
                del targets[: len(take)]
            else:
                pump.popleft()
        for conn, frames in out.items():
            conn.deliver_frames(frames)
        if pump:
            asyncio.get_running_loop().call_soon(self._run_pump)
        else:
            self._pumping = False
