"""ps1 events: pruning, hashes, event IDs, signing, format validation, client form."""

from __future__ import annotations

import copy
from typing import Any, Dict

import pytest
from hypothesis import given

from protocol.b64 import decode_b64
from protocol.canonical_json import encode_canonical
from protocol.errors import BadEvent, BadJSON, BadSignature, TooLarge
from protocol.events import (
    MAX_PDU_BYTES,
    add_hashes,
    check_content_hash,
    compute_content_hash,
    compute_event_id,
    prune_event,
    reference_hash,
    room_id_for_create,
    sign_event,
    to_client_event,
    validate_event_format,
    verify_event_signature,
)
from protocol.ids import EventID, RoomID
from protocol.signing import SigningKey
from tests.strategies import message_events

KEY = SigningKey.from_seed("1", decode_b64("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"))
KEYS = {KEY.key_id: KEY.verify_key()}

# APX #event-signing inputs, exactly as the appendix gives them (both carry the pre-v11
# "origin" key, which R11 pruning drops; the message event also has an "event_id").
MINIMAL = {
    "room_id": "!x:domain", "sender": "@a:domain", "origin": "domain", "origin_server_ts": 1000000,
    "signatures": {}, "hashes": {}, "type": "X", "content": {}, "prev_events": [], "auth_events": [],
    "depth": 3, "unsigned": {"age_ts": 1000000},
}  # fmt: skip
MESSAGE = {
    "content": {"body": "Here is the message content"}, "event_id": "$0:domain", "origin": "domain",
    "origin_server_ts": 1000000, "type": "m.room.message", "room_id": "!r:domain", "sender": "@u:domain",
    "signatures": {}, "unsigned": {"age_ts": 1000000},
}  # fmt: skip


def test_minimal_event_vector() -> None:
    signed = sign_event(MINIMAL, "domain", KEY)
    assert signed["hashes"] == {"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"}
    assert signed["signatures"] == {
        "domain": {"ed25519:1": "Jxp+1glFcZM+nnHpY0EkedRR7u0VmKsJYGnQqIvqus3UvL5X/p1y6wSkLhGoTBel6MZ9lrMIzUqrjqFquWJKBw"}
    }
    assert compute_event_id(signed) == EventID("$70O_oKlXzFbkfu0KE88USi98DjSWrOELrPj-8tisl8I")
    assert signed["unsigned"] == {"age_ts": 1000000} and signed["origin"] == "domain"
    verify_event_signature(signed, "domain", KEYS)
    assert check_content_hash(signed)


def test_message_event_vector() -> None:
    signed = sign_event(MESSAGE, "domain", KEY)
    assert signed["hashes"] == {"sha256": "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"}
    assert signed["signatures"] == {
        "domain": {"ed25519:1": "4WQB/6LN2OtkUN/+18xUNB/U4RTX1N3EeKBdlCxux08YO8izKDrSRqML1XB8V97IK7AujkNO1xMl7TaBLA4kDw"}
    }
    verify_event_signature(signed, "domain", KEYS)


def test_sign_event_does_not_mutate_and_keeps_other_signatures() -> None:
    event = dict(MINIMAL, signatures={"other": {"ed25519:9": "c2ln"}})
    before = copy.deepcopy(event)
    signed = sign_event(event, "domain", KEY)
    assert event == before
    assert signed["signatures"]["other"] == {"ed25519:9": "c2ln"}


def test_pruning_r11() -> None:
    event = dict(MESSAGE, state_key="", hashes={"sha256": "x"}, depth=1, prev_events=[], auth_events=[])
    pruned = prune_event(event)
    assert "origin" not in pruned and "unsigned" not in pruned
    assert pruned["content"] == {}
    assert pruned["event_id"] == "$0:domain"  # kept if present (never in ps1 events: format rejects it)
    assert set(pruned) == {"content", "event_id", "origin_server_ts", "type", "room_id", "sender", "signatures",
                           "hashes", "depth", "prev_events", "auth_events", "state_key"}  # fmt: skip


@pytest.mark.parametrize(
    "etype, content, kept",
    [
        ("m.room.member", {"membership": "join", "pseudonym": "quiet-heron", "displayname": "x"}, {"membership": "join"}),
        ("m.room.create", {"room_version": "ps1", "kind": "chat", "extra": [1]}, {"room_version": "ps1", "kind": "chat", "extra": [1]}),
        ("m.room.join_rules", {"join_rule": "invite", "allow": [], "x": 1}, {"join_rule": "invite", "allow": []}),
        (
            "m.room.power_levels",
            {"ban": 50, "events": {}, "events_default": 0, "invite": 0, "kick": 50, "redact": 50,
             "state_default": 50, "users": {"@a:b": 100}, "users_default": 0, "notifications": {"room": 50}},
            {"ban": 50, "events": {}, "events_default": 0, "invite": 0, "kick": 50, "redact": 50,
             "state_default": 50, "users": {"@a:b": 100}, "users_default": 0},
        ),
        ("m.room.history_visibility", {"history_visibility": "joined", "x": 1}, {"history_visibility": "joined"}),
        ("m.room.redaction", {"redacts": "$abc", "reason": "spam"}, {"redacts": "$abc"}),
        ("m.room.name", {"name": "secret"}, {}),
        ("m.room.topic", {"topic": "secret"}, {}),
    ],
)  # fmt: skip
def test_pruning_keeps_auth_keys(etype: str, content: Dict[str, Any], kept: Dict[str, Any]) -> None:
    assert prune_event({"type": etype, "content": content})["content"] == kept


def test_pruning_is_idempotent_and_pure() -> None:
    event = dict(MESSAGE)
    once = prune_event(event)
    assert prune_event(once) == once
    assert event == MESSAGE


def test_tampered_content_fails_hash_but_not_pruned_signature() -> None:
    signed = sign_event(MESSAGE, "domain", KEY)
    tampered = dict(signed, content={"body": "something else"})
    assert not check_content_hash(tampered)
    verify_event_signature(tampered, "domain", KEYS)  # the signature covers only the pruned form
    assert compute_event_id(tampered) == compute_event_id(signed)


def test_tampered_auth_fields_fail_signature() -> None:
    signed = sign_event(MINIMAL, "domain", KEY)
    for field, value in [("sender", "@b:domain"), ("depth", 4), ("prev_events", ["$x"]), ("type", "Y")]:
        with pytest.raises(BadSignature):
            verify_event_signature(dict(signed, **{field: value}), "domain", KEYS)


def test_hash_ignores_unsigned_and_signatures() -> None:
    assert compute_content_hash(MINIMAL) == compute_content_hash(dict(MINIMAL, unsigned={"age": 7}, signatures={"a": {}}))
    assert compute_content_hash(MINIMAL) != compute_content_hash(dict(MINIMAL, origin="elsewhere"))


def test_check_content_hash_on_missing_or_garbled() -> None:
    assert not check_content_hash(MINIMAL)
    assert not check_content_hash(dict(MINIMAL, hashes={"sha256": "***"}))
    assert not check_content_hash(dict(MINIMAL, hashes="nope"))
    assert check_content_hash(add_hashes(MINIMAL))


def test_reference_hash_ignores_signatures_unsigned_and_redactable_content() -> None:
    base = reference_hash(MESSAGE)
    assert reference_hash(dict(MESSAGE, signatures={"x": {"ed25519:1": "c2ln"}}, unsigned={})) == base
    assert reference_hash(dict(MESSAGE, content={"body": "other"})) == base
    assert reference_hash(dict(MESSAGE, sender="@v:domain")) != base


def test_room_id_for_create_is_its_event_id() -> None:
    create = _create()
    room_id = room_id_for_create(create)
    assert isinstance(room_id, RoomID)
    assert room_id.value[1:] == compute_event_id(create).value[1:]
    RoomID.parse(room_id.value)


def _create(**extra: Any) -> Dict[str, Any]:
    event = {
        "type": "m.room.create", "state_key": "", "sender": "@alice:hs1.test",
        "content": {"room_version": "ps1", "kind": "chat"}, "prev_events": [], "auth_events": [],
        "depth": 1, "origin_server_ts": 1763712000000,
    }  # fmt: skip
    event.update(extra)
    return sign_event(event, "hs1.test", KEY)


def _message(**extra: Any) -> Dict[str, Any]:
    room_id = room_id_for_create(_create()).value
    event = {
        "type": "m.room.message", "room_id": room_id, "sender": "@alice:hs1.test",
        "content": {"msgtype": "m.text", "body": "hi"}, "prev_events": [compute_event_id(_create()).value],
        "auth_events": [], "depth": 2, "origin_server_ts": 1763712000001,
    }  # fmt: skip
    event.update(extra)
    return sign_event(event, "hs1.test", KEY)


def test_valid_events_pass() -> None:
    validate_event_format(_create())
    validate_event_format(_message())
    validate_event_format(_message(unsigned={"age": 3}, state_key="", depth=2**53 - 1))
    create = _create()
    del create["prev_events"], create["auth_events"]
    validate_event_format(create)


E20 = ["$" + "A" * 43] * 21


@pytest.mark.parametrize(
    "change, field",
    [
        ({"type": 5}, "type"),
        ({"type": ""}, "type"),
        ({"type": "x" * 256}, "type"),
        ({"sender": "alice"}, "sender"),
        ({"sender": "@alice:hs1.test:99999"}, "sender"),
        ({"room_id": "!short"}, "room_id"),
        ({"room_id": None}, "room_id"),
        ({"state_key": 1}, "state_key"),
        ({"state_key": "é" * 128}, "state_key"),
        ({"content": []}, "content"),
        ({"prev_events": E20}, "prev_events"),
        ({"prev_events": "$x"}, "prev_events"),
        ({"prev_events": ["$nope"]}, "prev_events[0]"),
        ({"auth_events": E20[:11]}, "auth_events"),
        ({"auth_events": [7]}, "auth_events[0]"),
        ({"depth": -1}, "depth"),
        ({"depth": 2**53}, None),  # out of the JSON range: BadJSON first
        ({"depth": True}, "depth"),
        ({"depth": "1"}, "depth"),
        ({"origin_server_ts": -5}, "origin_server_ts"),
        ({"origin_server_ts": False}, "origin_server_ts"),
        ({"hashes": {}}, "hashes"),
        ({"hashes": {"sha256": 1}}, "hashes"),
        ({"signatures": []}, "signatures"),
        ({"signatures": {"hs1.test": {"ed25519:1": 5}}}, "signatures"),
        ({"signatures": {"hs1.test": "sig"}}, "signatures"),
        ({"unsigned": []}, "unsigned"),
        ({"event_id": "$" + "A" * 43}, "event_id"),
    ],
)
def test_message_format_rejects(change: Dict[str, Any], field: str | None) -> None:
    event = dict(_message(), **change)
    with pytest.raises((BadEvent, BadJSON)) as info:
        validate_event_format(event)
    if field is None:
        assert isinstance(info.value, BadJSON)
    else:
        assert isinstance(info.value, BadEvent)
        assert info.value.field == field


@pytest.mark.parametrize("missing", ["type", "sender", "room_id", "content", "prev_events", "auth_events", "depth",
                                     "origin_server_ts", "hashes", "signatures"])  # fmt: skip
def test_message_missing_field(missing: str) -> None:
    event = _message()
    del event[missing]
    with pytest.raises(BadEvent) as info:
        validate_event_format(event)
    assert info.value.field == missing


@pytest.mark.parametrize(
    "change, field",
    [
        ({"room_id": "!" + "A" * 43}, "room_id"),
        ({"prev_events": ["$" + "A" * 43]}, "prev_events"),
        ({"auth_events": ["$" + "A" * 43]}, "auth_events"),
        ({"state_key": "x"}, "state_key"),
    ],
)
def test_create_format_rejects(change: Dict[str, Any], field: str) -> None:
    with pytest.raises(BadEvent) as info:
        validate_event_format(dict(_create(), **change))
    assert info.value.field == field


def test_create_needs_state_key() -> None:
    create = _create()
    del create["state_key"]
    with pytest.raises(BadEvent) as info:
        validate_event_format(create)
    assert info.value.field == "state_key"


def test_size_limit_is_inclusive_on_canonical_bytes() -> None:
    event = _message(content={"body": ""})
    room = MAX_PDU_BYTES - len(encode_canonical(event))
    event["content"] = {"body": "x" * room}
    assert len(encode_canonical(event)) == MAX_PDU_BYTES
    validate_event_format(event)
    event["content"] = {"body": "x" * (room + 1)}
    with pytest.raises(TooLarge):
        validate_event_format(event)


def test_not_an_object() -> None:
    with pytest.raises(BadEvent):
        validate_event_format([])  # type: ignore[arg-type]


def test_client_form() -> None:
    message = dict(_message(), unsigned={"age": 1})
    event_id = compute_event_id(message).value
    out = to_client_event(message, event_id, 42, "quiet-heron")
    assert out == {
        "pos": 42, "event_id": event_id, "room_id": message["room_id"], "type": "m.room.message",
        "sender": "@alice:hs1.test", "sender_pseudonym": "quiet-heron", "content": message["content"],
        "origin_server_ts": 1763712000001,
    }  # fmt: skip
    create = _create()
    create_id = compute_event_id(create).value
    out = to_client_event(create, create_id, 1, None)
    assert out["room_id"] == room_id_for_create(create).value
    assert out["state_key"] == "" and out["sender_pseudonym"] is None
    assert "hashes" not in out and "signatures" not in out and "prev_events" not in out


@given(message_events())
def test_generated_events_sign_verify_and_validate(event: Dict[str, Any]) -> None:
    signed = sign_event(event, "hs1.test", KEY)
    validate_event_format(signed)
    assert check_content_hash(signed)
    verify_event_signature(signed, "hs1.test", KEYS)
    assert compute_event_id(signed) == compute_event_id(prune_event(signed))
    EventID.parse(compute_event_id(signed).value)
