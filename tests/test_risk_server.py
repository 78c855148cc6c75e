"""Risk detection against the real server: flags for risky posts only, per-service settings
(extra terms, detectors off, thresholds), staff-only flag listing and dry runs, and a
server-level lexicon file loaded over the shipped one."""

from __future__ import annotations

import pytest

from protocol.errors import BadField, Forbidden
from tests.conftest import ServerProcess
from tests.helpers import messages_until, user
from tests.test_content_support import grant_admin

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def risk_server(tmp_path_factory):
    """One server for the module, with an extra lexicon file (each test makes its own service)."""
    base = tmp_path_factory.mktemp("risk")
    lexicon = base / "extra.toml"
    lexicon.write_text('[suicide]\n"the long sleep" = 0.75\n"suicide" = 0\n', "utf-8")
    proc = ServerProcess(base / "sharon-data", {"SHARON_LEXICON_PATH": str(lexicon)}).start()
    yield proc
    proc.stop()


async def _cast(server, settings=None):
    """An admin, a clinician, two members, a service and a public chat room of it."""
    admin = await user(server, "admin")
    grant_admin(server, admin.pseudonym)
    service = (await admin.request("create_service", name="Eating disorders",
                                   **({"settings": settings} if settings else {})))["service_id"]
    clinician, alice, bob = await user(server, "clin"), await user(server, "alice"), await user(server, "bob")
    await admin.request("service_add_member", service_id=service, user_id=clinician.user_id, role="clinician")
    for m in (alice, bob):
        await admin.request("service_add_member", service_id=service, user_id=m.user_id)
    room = (await admin.request("create_room", kind="chat", name="Evening", public=True,
                                service_id=service))["room_id"]
    for c in (clinician, alice, bob):
        await c.join(room)
    return admin, clinician, alice, bob, service, room


async def _close(*clients):
    for c in clients:
        await c.close()


def test_risky_messages_are_flagged_and_clean_ones_are_not(risk_server, run):
    async def scenario():
        admin, clin, alice, bob, service, room = await _cast(risk_server)
        await bob.sync()
        clean = await alice.send(room, "had a lovely walk with the dog today")
        risky = await alice.send(room, "honestly I w4nt to d1e some nights")
        numbers = await alice.send(room, "down to 45kg, call me on 07700 900123")
        # risky messages are still delivered (detection never blocks the hot path)
        got = await messages_until(bob, 3)
        assert [e["event_id"] for e in got] == [clean["event_id"], risky["event_id"], numbers["event_id"]]

        flags = (await clin.request("risk_flags", service_id=service))["flags"]
        by_event = {f["event_id"]: f for f in flags}
        assert set(by_event) == {risky["event_id"], numbers["event_id"]}
        f = by_event[risky["event_id"]]
        assert f["category"] == "suicide" and f["score"] == 700
        assert f["sender"] == alice.user_id and f["sender_pseudonym"] == alice.pseudonym and f["room_id"] == room
        assert [h["term"] for h in f["hits"]] == ["want to die"]
        n = by_event[numbers["event_id"]]
        assert {h["term"] for h in n["hits"]} == {"weight_kg", "phone_number"}
        assert "07700" not in str(n)  # a pattern hit names the pattern, never the matched detail
        assert n["score"] == 650 and {h["weight"] for h in n["hits"]} == {300, 500}

        only_alice = (await clin.request("risk_flags", service_id=service, user_id=alice.user_id, limit=1))["flags"]
        assert [x["event_id"] for x in only_alice] == [numbers["event_id"]]
        assert (await clin.request("risk_flags", service_id=service, user_id=bob.user_id))["flags"] == []

        # the member card staff open shows the member's recent flags
        card = await clin.request("member_card", service_id=service, user_id=alice.user_id)
        assert [f["event_id"] for f in card["recent_flags"]] == [numbers["event_id"], risky["event_id"]]

        # members cannot read flags or probe the lexicon
        for op, fields in (("risk_flags", {}), ("risk_assess", {"text": "want to die"})):
            with pytest.raises(Forbidden):
                await alice.request(op, service_id=service, **fields)
        await _close(admin, clin, alice, bob)

    run(scenario())


def test_staff_dry_run_and_per_service_settings(risk_server, run):
    async def scenario():
        admin, clin, alice, bob, service, room = await _cast(risk_server)
        tried = await clin.request("risk_assess", service_id=service, text="I keep s.e.l.f h.a.r.m.i.n.g")
        assert tried["flagged"] is True and tried["category"] == "self_harm" and tried["alert"] is True
        calm = await clin.request("risk_assess", service_id=service, text="I keep my garden tidy")
        assert calm == {"flagged": False, "score": 0, "category": None, "hits": [], "alert": False}
        # the server's lexicon file adds a phrase and switches "suicide" off
        assert (await clin.request("risk_assess", service_id=service, text="thinking about the long sleep"))[
            "score"] == 750
        assert (await clin.request("risk_assess", service_id=service, text="suicide"))["flagged"] is False

        # a service adds its own terms and lowers its alert threshold
        extra = [{"phrase": "dark place", "category": "suicide", "weight": 300}]
        await admin.request("service_settings", service_id=service,
                            settings={"risk_lexicon_extra": extra, "risk_alert_threshold": 250})
        tried = await clin.request("risk_assess", service_id=service, text="back in the d4rk pl4ce")
        assert tried["flagged"] and tried["score"] == 300 and tried["alert"] is True
        sent = await alice.send(room, "back in the dark place")
        flags = (await clin.request("risk_flags", service_id=service))["flags"]
        assert [f["event_id"] for f in flags] == [sent["event_id"]]

        # detectors off: nothing is flagged
        await admin.request("service_settings", service_id=service, settings={"risk_detectors": []})
        await alice.send(room, "back in the dark place again")
        assert len((await clin.request("risk_flags", service_id=service))["flags"]) == 1

        # bad settings name the field; the server keeps serving
        for settings, field in (
                ({"risk_lexicon_extra": [{"phrase": "x", "category": "sadness", "weight": 500}]},
                 "settings.risk_lexicon_extra[0].category"),
                ({"risk_alert_threshold": 1001}, "settings.risk_alert_threshold"),
                ({"risk_detectors": "lexicon"}, "settings.risk_detectors")):
            with pytest.raises(BadField) as exc:
                await admin.request("service_settings", service_id=service, settings=settings)
            assert exc.value.field == field
        with pytest.raises(BadField) as exc:
            await clin.request("risk_assess", service_id=service, text="")
        assert exc.value.field == "text"
        await clin.ping()
        await _close(admin, clin, alice, bob)

    run(scenario())


def test_hits_over_the_alert_threshold_reach_the_triage_queue(risk_server, run):
    async def scenario():
        admin, clin, alice, bob, service, room = await _cast(risk_server)
        await clin.sync()
        await clin.request("duty", service_id=service, on=True)
        await alice.send(room, "my bmi is 17 now")  # a flag under the alert threshold (400 < 500)
        await alice.send(room, "lovely sunset tonight")  # clean
        risky = await alice.send(room, "honestly I want to die")
        frame = await _next_op(clin, "alert")  # the first alert is the risky post's
        item = frame["item"]
        assert item["event_id"] == risky["event_id"] and "risk" in item["kinds"]
        assert item["risk_score"] == 700 and item["subject_user"] == alice.user_id
        assert "die" not in item["summary"]  # the summary names the category, not the words
        flags = (await clin.request("risk_flags", service_id=service))["flags"]
        assert [f["score"] for f in flags] == [700, 400]
        await _close(admin, clin, alice, bob)

    run(scenario())


async def _next_op(client, op, timeout_s=10.0):
    while True:
        frame = await client.next_frame(timeout_s)
        if frame.get("op") == op:
            return frame
