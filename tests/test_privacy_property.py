"""Property: over random action sequences, nobody receives another member's secrets.

Hypothesis generates action sequences that drive registrations, logins, rooms, invites, joins, leaves,
messages, history pages and resumes through the real server. Everything each client
receives (replies and pushed events) is recorded, and after every step we check that no
client ever received another account's password, access token or device ID, and that user
IDs never reveal the pseudonym behind them.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clients.client import SharonClient
from clients.runtime import run
from protocol.errors import SharonError
from tests.helpers import fresh_pseudonym

pytestmark = pytest.mark.integration

_bodies = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60)
# A marker no protocol word contains, so a password can never match a field name by chance.
_passwords = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=8, max_size=20).map(
    lambda s: "§pw§" + s)


class _Member:
    """One account with one connection, and everything that connection received."""

    def __init__(self, client: SharonClient, password: str) -> None:
        self.client = client
        self.password = password
        self.received: List[Any] = []
        client.add_event_listener(self.received.append)

    async def call(self, coro: Any) -> None:
        try:
            self.received.append(await coro)
        except SharonError as err:
            self.received.append(err.to_dict())


_ACTION = st.tuples(
    st.sampled_from(["register", "create", "join", "leave", "invite", "send", "history", "rooms", "resume"]),
    st.integers(0, 1000), st.integers(0, 1000), st.booleans(), _bodies, _passwords,
)


async def _play(server: Any, actions: List[Any]) -> None:
    members: List[_Member] = []
    rooms: List[str] = []

    async def register(password: str, encoding: str) -> None:
        client = await SharonClient.connect(server.ws_url, encoding=encoding)
        member = _Member(client, password)
        await member.call(client.register(fresh_pseudonym("pp"), password))
        await member.call(client.sync())
        members.append(member)

    for password in ("\u00a7pw\u00a7first-1", "\u00a7pw\u00a7second-2"):
        await register(password, "msgpack")
    secrets = {}
    for step, (action, i, j, flag, body, password) in enumerate(actions):
        m = members[i % len(members)]
        other = members[j % len(members)]
        room = rooms[j % len(rooms)] if rooms else "!" + "A" * 43
        c = m.client
        if action == "register":
            await register(password, "json" if flag else "msgpack")
        elif action == "create":
            result = await c.create_room("chat" if flag else "forum", "room", public=flag)
            m.received.append(result)
            rooms.append(result["room_id"])
        elif action == "join":
            await m.call(c.join(room))
        elif action == "leave":
            await m.call(c.leave(room))
        elif action == "invite":
            await m.call(c.invite(room, other.client.user_id))
        elif action == "send":
            await m.call(c.send(room, body))
        elif action == "history":
            await m.call(c.history(room, limit=20))
        elif action == "rooms":
            await m.call(c.rooms())
        elif action == "resume":
            since, token = c.last_pos or 0, c.token
            await c.close()
            fresh = await SharonClient.connect(server.ws_url)
            replacement = _Member(fresh, m.password)
            replacement.received = m.received
            fresh.add_event_listener(replacement.received.append)
            await replacement.call(fresh.auth(token))
            await replacement.call(fresh.sync(since=since))
            members[i % len(members)] = replacement
        # The property, checked after every step.
        for k, member in enumerate(members):
            secrets[k] = [member.password, member.client.token, member.client.device_id]
        for k, member in enumerate(members):
            seen = json.dumps(member.received, ensure_ascii=False, default=str)
            for other_k, values in secrets.items():
                if other_k != k:
                    for secret in values:
                        assert secret not in seen, f"step {step}: member {k} received a secret of member {other_k}"
            assert member.client.pseudonym.lower() not in member.client.user_id.lower()
    for member in members:
        await member.client.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(actions=st.lists(_ACTION, min_size=5, max_size=30))
def test_no_member_ever_receives_another_members_secrets(server, actions):
    run(_play(server, actions), timeout_s=120)
