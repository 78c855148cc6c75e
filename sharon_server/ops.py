"""WebSocket operation handlers: one small async function per request type.

Each handler takes (connection, request) and returns the ``ok`` result dict; raising a
``SharonError`` becomes the error frame. Handlers stay thin: the services decide.
"""

from __future__ import annotations

from typing import Any, Dict

from protocol import frames as F
from sharon_server.ws import SharonServerProtocol

__all__ = ["HANDLERS", "register_handlers"]

Conn = SharonServerProtocol


async def _register(conn: Conn, req: F.Register) -> Dict[str, Any]:
    session, token = await conn.factory.accounts.register(req.pseudonym, req.password, req.device_name,
                                                          invite_code=req.invite_code)
    conn.set_session(session)
    return session.as_result(token)


async def _login(conn: Conn, req: F.Login) -> Dict[str, Any]:
    session, token = await conn.factory.accounts.login(req.pseudonym, req.password, req.device_name)
    conn.set_session(session)
    return session.as_result(token)


async def _auth(conn: Conn, req: F.Auth) -> Dict[str, Any]:
    session = await conn.factory.accounts.authenticate(req.token)
    conn.set_session(session)
    return session.as_result()


async def _logout(conn: Conn, req: F.Logout) -> Dict[str, Any]:
    session = conn.require_session()
    await conn.factory.accounts.logout(session)
    conn.set_session(None)
    return {}


async def _ping(conn: Conn, req: F.Ping) -> Dict[str, Any]:
    return {}


async def _create_room(conn: Conn, req: F.CreateRoom) -> Dict[str, Any]:
    session = conn.require_session()
    options = {} if req.service_id is None else {"service_id": str(req.service_id)}
    room_id, pos = await conn.factory.rooms.create_room(session, req.kind, req.name, req.topic, req.public, options)
    return {"room_id": room_id, "pos": pos}


async def _invite(conn: Conn, req: F.Invite) -> Dict[str, Any]:
    session = conn.require_session()
    event_id, pos = await conn.factory.rooms.set_membership(session, str(req.room_id), "invite", str(req.user_id))
    return {"event_id": event_id, "pos": pos}


async def _join(conn: Conn, req: F.Join) -> Dict[str, Any]:
    session = conn.require_session()
    event_id, pos = await conn.factory.rooms.set_membership(session, str(req.room_id), "join")
    return {"event_id": event_id, "pos": pos}


async def _leave(conn: Conn, req: F.Leave) -> Dict[str, Any]:
    session = conn.require_session()
    event_id, pos = await conn.factory.rooms.set_membership(session, str(req.room_id), "leave")
    return {"event_id": event_id, "pos": pos}


async def _rooms(conn: Conn, req: F.Rooms) -> Dict[str, Any]:
    session = conn.require_session()
    listed = conn.factory.rooms.room_summaries(session.user_id)
    for decorate in getattr(conn.factory.rooms, "room_list_decorators", ()):
        decorate(session.user_id, listed)  # features add keys (e.g. unread counts) in place
    return {"rooms": listed}


async def _send(conn: Conn, req: F.Send) -> Dict[str, Any]:
    session = conn.require_session()
    event_id, pos, duplicate = await conn.factory.rooms.send_message(session, str(req.room_id), req.txn_id, req.body)
    return {"event_id": event_id, "pos": pos, "duplicate": duplicate}


async def _history(conn: Conn, req: F.History) -> Dict[str, Any]:
    session = conn.require_session()
    events, nxt = await conn.factory.rooms.history(session, str(req.room_id), req.dir, req.from_pos, req.limit)
    return {"events": events, "next": nxt}


async def _sync(conn: Conn, req: F.Sync) -> object:
    return await conn.start_sync(req.id, req.since)


HANDLERS = {
    F.Register: _register, F.Login: _login, F.Auth: _auth, F.Logout: _logout, F.Ping: _ping,
    F.CreateRoom: _create_room, F.Invite: _invite, F.Join: _join, F.Leave: _leave,
    F.Rooms: _rooms, F.Send: _send, F.History: _history, F.Sync: _sync,
}


def register_handlers(handlers: Dict[type, Any]) -> None:
    """Add a feature's handlers (request type -> ``async handler(conn, request)``)."""
    for request_type, handler in handlers.items():
        if HANDLERS.get(request_type, handler) is not handler:
            raise ValueError(f"a handler for {request_type.__name__} is already registered")
        HANDLERS[request_type] = handler
