"""Media against the real server: upload, download with ranges, access, limits, posts."""

from __future__ import annotations

import hashlib
from http.client import HTTPConnection
import json
import socket
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import pytest

from clients.client import SharonClient
from protocol.errors import BadField, Forbidden, NotFound, NotInRoom
from tests.helpers import http, room_with, user

pytestmark = pytest.mark.integration

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4
MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x21" + bytes(range(256)) * 400  # ~100 KiB: over the 64 KiB JSON limit


def m4a(size: int) -> bytes:
    box = b"\x00\x00\x00\x18ftypM4A \x00\x00\x02\x00M4A isom"
    return box + bytes((i * 7) % 251 for i in range(size - len(box)))


def _conn(server: Any) -> HTTPConnection:
    return HTTPConnection("127.0.0.1", server.port, timeout=30)


def upload(server: Any, token: Optional[str], room_id: str, data: bytes,
           name: Optional[str] = None) -> Tuple[int, Dict[str, Any]]:
    query = {"room_id": room_id}
    if name is not None:
        query["name"] = name
    headers = {"Content-Type": "application/octet-stream"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return http(server, "POST", "/api/v1/media/upload?" + urllib.parse.urlencode(query), data, headers)


def fetch(server: Any, token: Optional[str], room_id: str, digest: str, range_: Optional[str] = None,
          path: Optional[str] = None) -> Tuple[int, Dict[str, str], bytes]:
    path = path or f"/api/v1/media/{urllib.parse.quote(room_id)}/{digest}"
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if range_ is not None:
        headers["Range"] = range_
    conn = _conn(server)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def stored_files(server: Any) -> list:
    root = Path(server.data_dir) / "media"
    return sorted(p.name for p in root.rglob("*") if p.is_file())


def test_upload_and_download_round_trip_with_ranges(server, run):
    async def scenario():
        alice = await user(server, "alice")
        bob = await user(server, "bob")
        room = await room_with(alice, bob)
        status, body = upload(server, alice.token, room, MP3, name="night walk.mp3")
        assert status == 200, body
        digest = hashlib.sha256(MP3).hexdigest()
        assert body == {"hash": digest, "mime": "audio/mpeg", "category": "audio", "size": len(MP3)}
        assert stored_files(server) == [digest]
        assert (Path(server.data_dir) / "media" / digest[:2] / digest[2:4] / digest).read_bytes() == MP3

        status, headers, data = fetch(server, bob.token, room, digest)
        assert status == 200 and data == MP3
        assert headers["content-type"] == "audio/mpeg"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["accept-ranges"] == "bytes"
        assert headers["content-length"] == str(len(MP3))
        assert headers["content-disposition"].startswith('inline; filename="night walk.mp3"')

        conn = _conn(server)
        conn.request("HEAD", f"/api/v1/media/{urllib.parse.quote(room)}/{digest}",
                     headers={"Authorization": f"Bearer {bob.token}"})
        head = conn.getresponse()
        assert head.status == 200 and head.getheader("content-length") == str(len(MP3))
        assert head.getheader("content-type") == "audio/mpeg" and head.read() == b""
        conn.close()

        size = len(MP3)
        for rng, first, last in [("bytes=0-0", 0, 0), ("bytes=0-99", 0, 99), ("bytes=1000-70000", 1000, 70000),
                                 (f"bytes={size - 10}-", size - 10, size - 1), ("bytes=5000-", 5000, size - 1),
                                 ("bytes=-1", size - 1, size - 1), ("bytes=-300", size - 300, size - 1),
                                 (f"bytes=-{size * 2}", 0, size - 1), (f"bytes=10-{size * 3}", 10, size - 1)]:
            status, headers, data = fetch(server, bob.token, room, digest, rng)
            assert status == 206, rng
            assert data == MP3[first:last + 1], rng
            assert headers["content-range"] == f"bytes {first}-{last}/{size}"
            assert headers["content-length"] == str(last - first + 1)
        for rng in (f"bytes={size}-", f"bytes={size + 5}-{size + 10}", "bytes=-0"):
            status, headers, data = fetch(server, bob.token, room, digest, rng)
            assert status == 416, rng
            assert headers["content-range"] == f"bytes */{size}"
        status, _, data = fetch(server, bob.token, room, digest, "bytes=0-1,5-6")  # several: whole file
        assert status == 200 and data == MP3
        # players that cannot set headers get a signed, expiring link instead
        link = await bob.request("media_link", room_id=room, hash=digest)
        assert link["path"].startswith(f"/api/v1/media/{urllib.parse.quote(room, safe='')}/{digest}?")
        status, _, data = fetch(server, None, room, digest, "bytes=0-3", path=link["path"])
        assert status == 206 and data == MP3[:4]
        assert bob.token not in link["path"]

        # the same content again is stored once
        status, again = upload(server, bob.token, room, MP3, name="copy.mp3")
        assert status == 200 and again["hash"] == digest
        assert stored_files(server) == [digest]
        listed = await alice.request("media", room_id=room)
        assert sorted(m["uploader"] for m in listed["media"]) == sorted([alice.user_id, bob.user_id])
        assert all(m["hash"] == digest and m["mime"] == "audio/mpeg" for m in listed["media"])
        for c in (alice, bob):
            await c.close()

    run(scenario())


def test_only_joined_members_of_the_room_can_fetch(server, run):
    async def scenario():
        alice = await user(server, "alice")
        bob = await user(server, "bob")
        outsider = await user(server, "outsider")
        room = await room_with(alice, bob)
        other_room = await room_with(outsider)
        status, body = upload(server, alice.token, room, PNG, name="me.png")
        assert status == 200
        digest = body["hash"]
        assert fetch(server, bob.token, room, digest)[0] == 200
        status, _, data = fetch(server, outsider.token, room, digest)
        assert status == 403 and json.loads(data)["code"] == "not_in_room"
        # a non-member learns nothing: a made-up hash gets the same answer
        status, _, data = fetch(server, outsider.token, room, "0" * 64)
        assert status == 403 and json.loads(data)["code"] == "not_in_room"
        # being a member of another room that does not have the file does not help
        status, _, data = fetch(server, outsider.token, other_room, digest)
        assert status == 404 and json.loads(data)["code"] == "not_found"
        # members get 404 for a hash not attached to the room
        assert fetch(server, bob.token, room, "0" * 64)[0] == 404
        assert fetch(server, bob.token, room, "not-a-hash")[0] == 404
        link = (await bob.request("media_link", room_id=room, hash=digest))["path"]
        assert fetch(server, None, room, digest, path=link)[0] == 200
        tampered = link.replace("sig=", "sig=A")
        assert fetch(server, None, room, digest, path=tampered)[0] == 403
        # a link for one file does not open another
        other = upload(server, alice.token, room, PNG + b"x")[1]["hash"]
        assert fetch(server, None, room, other, path=link.replace(digest, other))[0] == 403
        with pytest.raises(NotInRoom):
            await outsider.request("media_link", room_id=room, hash=digest)
        with pytest.raises(NotFound):
            await bob.request("media_link", room_id=room, hash="0" * 64)
        # after leaving, the room's media is closed, links included
        await bob.leave(room)
        assert fetch(server, bob.token, room, digest)[0] == 403
        assert fetch(server, None, room, digest, path=link)[0] == 403
        # outsiders cannot upload into the room either
        status, body = upload(server, outsider.token, room, PNG)
        assert status == 403 and body["code"] == "not_in_room"
        with pytest.raises(NotInRoom):
            await outsider.request("media", room_id=room)
        for c in (alice, bob, outsider):
            await c.close()

    run(scenario())


def test_a_member_of_another_service_cannot_fetch(server, run):
    from tests.test_services import service_with

    async def scenario():
        alice = await user(server, "alice")
        stranger = await user(server, "stranger")
        admin, service = await service_with(server, members=(alice,))
        _, other = await service_with(server, members=(stranger,))
        room = (await alice.request("create_room", kind="chat", name="Night feeds", public=True,
                                    service_id=service))["room_id"]
        status, body = upload(server, alice.token, room, PNG)
        assert status == 200
        status, _, data = fetch(server, stranger.token, room, body["hash"])
        assert status == 403
        assert fetch(server, admin.token, room, body["hash"])[0] == 403  # not joined to the room
        for c in (alice, stranger, admin):
            await c.close()

    run(scenario())


def test_refusals_tokens_lies_and_bad_requests(server, run):
    async def scenario():
        alice = await user(server, "alice")
        room = await room_with(alice)
        status, body = upload(server, alice.token, room, b"I am a text file, not a picture\n" * 10, name="cat.png")
        assert status == 400 and body["code"] == "bad_field" and body["field"] == "file"
        assert "unsupported_media" in body["reason"]
        status, body = upload(server, alice.token, room, b"")
        assert status == 400 and body["field"] == "file"
        assert upload(server, None, room, PNG)[0] == 401
        status, body = upload(server, "shr_not_a_token", room, PNG)
        assert status == 401 and body["code"] == "unknown_token"
        status, body = http(server, "POST", "/api/v1/media/upload", PNG, {"Authorization": f"Bearer {alice.token}"})
        assert status == 400 and body["code"] == "missing_field" and body["field"] == "room_id"
        status, body = upload(server, alice.token, "!nope", PNG)
        assert status == 400 and body["field"] == "room_id"
        status, body = upload(server, alice.token, room, PNG)
        digest = body["hash"]
        assert fetch(server, None, room, digest)[0] == 401
        assert fetch(server, "shr_wrong", room, digest)[0] == 401
        # tokens are never taken from the URL (they would end up in access logs)
        query = "?" + urllib.parse.urlencode({"access_token": alice.token})
        assert fetch(server, None, room, digest, path=f"/api/v1/media/{room}/{digest}{query}")[0] == 401
        # a large body is still refused on other routes
        assert http(server, "POST", "/api/v1/login", b"{" + b" " * 70000 + b"}")[0] == 413
        assert stored_files(server) == [digest]
        await alice.close()

    run(scenario())


def test_limits_per_category_from_the_environment(server_factory, run):
    server = server_factory(env={"SHARON_MEDIA_MAX_IMAGE_BYTES": "2000", "SHARON_MEDIA_MAX_AUDIO_BYTES": "5000",
                                 "SHARON_MEDIA_MAX_VIDEO_BYTES": "8000"})

    async def scenario():
        alice = await user(server, "alice")
        room = await room_with(alice)
        padded = PNG + b"\x00" * 2000
        small = padded[:2000]
        assert upload(server, alice.token, room, small)[0] == 200
        status, body = upload(server, alice.token, room, padded[:2001])
        assert status == 413 and body["code"] == "too_large" and "2000" in body["reason"]
        assert upload(server, alice.token, room, m4a(5000))[0] == 200
        assert upload(server, alice.token, room, m4a(5001))[0] == 413
        # over the largest limit: refused by the site before the body is read
        assert upload(server, alice.token, room, m4a(9000))[0] == 413
        assert stored_files(server) == sorted([hashlib.sha256(small).hexdigest(), hashlib.sha256(m4a(5000)).hexdigest()])
        await alice.close()

    run(scenario())


def test_a_truncated_upload_stores_nothing(server, run):
    async def scenario():
        alice = await user(server, "alice")
        room = await room_with(alice)
        path = "/api/v1/media/upload?" + urllib.parse.urlencode({"room_id": room})
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {alice.token}\r\n"
                     f"Content-Length: {len(MP3)}\r\n\r\n".encode() + MP3[:len(MP3) // 2])
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(1024) == b""  # the server closes without an answer
        sock.close()
        # a complete upload afterwards is the only thing stored
        status, body = upload(server, alice.token, room, PNG)
        assert status == 200
        assert stored_files(server) == [body["hash"]]
        assert [m["hash"] for m in (await alice.request("media", room_id=room))["media"]] == [body["hash"]]
        await alice.close()

    run(scenario())


def test_media_posts_appear_on_the_stream_and_need_an_upload_to_the_room(server, run):
    async def scenario():
        alice = await user(server, "alice")
        bob = await user(server, "bob")
        room = await room_with(alice, bob)
        elsewhere = await room_with(alice)
        await bob.sync()
        digest = upload(server, alice.token, room, PNG, name="sunrise.png")[1]["hash"]
        other = upload(server, alice.token, elsewhere, MP3)[1]["hash"]
        posted = await alice.request("media_post", room_id=room, hash=digest, body="the sunrise this morning",
                                     txn_id="m1")
        assert posted["duplicate"] is False
        event = await bob.next_event()
        while event["type"] != "ps.media":
            event = await bob.next_event()
        assert event["event_id"] == posted["event_id"]
        assert event["content"] == {"media": {"hash": digest, "mime": "image/png", "category": "image",
                                              "size": len(PNG), "name": "sunrise.png"},
                                    "body": "the sunrise this morning"}
        again = await alice.request("media_post", room_id=room, hash=digest, body="ignored", txn_id="m1")
        assert again["duplicate"] is True and again["event_id"] == posted["event_id"]
        # a hash uploaded to another room, never uploaded, or uploaded by someone else is refused
        with pytest.raises(BadField) as exc:
            await alice.request("media_post", room_id=room, hash=other)
        assert exc.value.field == "media.hash"
        with pytest.raises(BadField):
            await alice.request("media_post", room_id=room, hash="f" * 64)
        with pytest.raises(BadField):
            await bob.request("media_post", room_id=room, hash=digest)
        with pytest.raises(BadField) as exc:
            await alice.request("media_post", room_id=room, hash="XYZ")
        assert exc.value.field == "hash"
        history = (await bob.history(room))["events"]
        assert [e["event_id"] for e in history if e["type"] == "ps.media"] == [posted["event_id"]]
        for c in (alice, bob):
            await c.close()

    run(scenario())


def test_media_listing_pages(server, run):
    async def scenario():
        alice = await user(server, "alice")
        room = await room_with(alice)
        digests = set()
        for i in range(5):
            digests.add(upload(server, alice.token, room, PNG + bytes([i]))[1]["hash"])
        seen, cursor = [], None
        while True:
            page = await alice.request("media", room_id=room, limit=2, **({"before": cursor} if cursor else {}))
            assert len(page["media"]) <= 2
            seen.extend(m["hash"] for m in page["media"])
            cursor = page["next"]
            if cursor is None:
                break
        assert len(seen) == 5 and set(seen) == digests
        with pytest.raises(BadField):
            await alice.request("media", room_id=room, before="garbage")
        await alice.close()

    run(scenario())


def test_cli_upload_and_download(server, run, tmp_path):
    env = {"SHARON_CONFIG_DIR": str(tmp_path / "cfg"), "SHARON_PASSWORD": "correct horse battery",
           "SHARON_SERVER": server.ws_url, "PATH": "/usr/bin:/bin"}

    def sharon(*args: str) -> subprocess.CompletedProcess:
        # what the console script does, importing the package from this checkout
        return subprocess.run([sys.executable, "-c", "import sys; from clients.cli.main import main; sys.exit(main())",
                               *args], capture_output=True, text=True, env=env, timeout=60,
                              cwd=Path(__file__).resolve().parent.parent)

    assert sharon("register", "cli-media").returncode == 0
    made = sharon("create-room", "Podcasts", "--kind", "chat")
    assert made.returncode == 0, made.stderr
    room = made.stdout.strip()
    source = tmp_path / "episode-1.m4a"
    source.write_bytes(m4a(300_000))
    up = sharon("upload", room, str(source), "--caption", "episode one")
    assert up.returncode == 0, up.stderr
    assert up.stdout.strip().startswith("$")
    history = sharon("history", room, "--json", "--all")
    posts = [json.loads(line) for line in history.stdout.splitlines() if '"ps.media"' in line]
    assert len(posts) == 1
    digest = posts[0]["content"]["media"]["hash"]
    assert digest == hashlib.sha256(source.read_bytes()).hexdigest()
    listed = sharon("media", "Podcasts")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith(digest) and "audio/mp4" in listed.stdout and "episode-1.m4a" in listed.stdout
    target = tmp_path / "out.m4a"
    down = sharon("download", room, digest, "-o", str(target))
    assert down.returncode == 0, down.stderr
    assert target.read_bytes() == source.read_bytes()
    missing = sharon("download", room, "0" * 64, "-o", str(tmp_path / "nope"))
    assert missing.returncode == 1 and "not_found" in missing.stderr
    assert not (tmp_path / "nope").exists()
    lying = tmp_path / "photo.png"
    lying.write_text("not a photo")
    refused = sharon("upload", room, str(lying))
    assert refused.returncode == 1 and "unsupported_media" in refused.stderr


class _FakeRequest:
    def __init__(self, query: str) -> None:
        self.args = {k.encode(): [v.encode()] for k, v in urllib.parse.parse_qsl(query)}


def test_signed_links_expire_and_bind_user_room_and_file():
    from sharon_server.features.media import _Links

    now = [1_000_000]
    links = _Links(lambda: now[0], ttl_ms=60_000)
    room, digest = "!" + "A" * 43, "a" * 64
    path, expires = links.make(room, digest, "@u1:x")
    assert expires == 1_060_000
    query = path.split("?", 1)[1]
    assert links.check(_FakeRequest(query), room, digest) == "@u1:x"
    with pytest.raises(Forbidden):
        links.check(_FakeRequest(query), room, "b" * 64)
    with pytest.raises(Forbidden):
        links.check(_FakeRequest(query), "!" + "B" * 43, digest)
    with pytest.raises(Forbidden):
        links.check(_FakeRequest(query.replace("%40u1", "%40u2")), room, digest)
    with pytest.raises(Forbidden):
        links.check(_FakeRequest(query.replace("1060000", "9060000")), room, digest)
    with pytest.raises(Forbidden):
        links.check(_FakeRequest("user=%40u1%3Ax"), room, digest)
    now[0] = 1_060_001
    with pytest.raises(Forbidden) as exc:
        links.check(_FakeRequest(query), room, digest)
    assert "expired" in exc.value.reason


def test_site_body_limits_are_per_path(monkeypatch):
    from types import SimpleNamespace

    from sharon_server import http as site_http

    monkeypatch.setitem(site_http.SITE_BODY_LIMITS, b"/api/v1/media/upload", 5000)
    request_type = type("R", (site_http.LimitedRequest,), {"max_body": 100})

    def limit(target: bytes) -> int:
        channel = SimpleNamespace(_path=target, site=SimpleNamespace(_parsePOSTFormSubmission=False),
                                  getPeer=lambda: None, getHost=lambda: None, transport=None)
        return request_type(channel).body_limit()

    assert limit(b"/api/v1/media/upload?room_id=%21abc&name=x") == 5000
    assert limit(b"/api/v1/media/upload") == 5000
    assert limit(b"/api/v1/login") == 100
    assert limit(b"/api/v1/media/upload/") == 100  # exact paths only


async def _media_everything(server: Any) -> Dict[str, Any]:
    alice = await user(server, "alice")
    bob = await user(server, "bob")
    room = await room_with(alice, bob)
    digest = upload(server, alice.token, room, MP3, name="walk.mp3")[1]["hash"]
    assert upload(server, bob.token, room, MP3)[0] == 200  # a second uploader of the same file
    posted = await alice.request("media_post", room_id=room, hash=digest, body="listen", txn_id="p1")
    state = {"room": room, "hash": digest, "token": bob.token, "alice_token": alice.token,
             "event": posted["event_id"]}
    for c in (alice, bob):
        await c.close()
    return state


async def _media_after_restart(server: Any, s: Dict[str, Any]) -> None:
    status, _, data = fetch(server, s["token"], s["room"], s["hash"], "bytes=-5")
    assert status == 206 and data == MP3[-5:]
    bob = await SharonClient.connect(server.ws_url)
    await bob.auth(s["token"])
    listed = (await bob.request("media", room_id=s["room"]))["media"]
    assert len(listed) == 2 and {m["hash"] for m in listed} == {s["hash"]}
    # bob uploaded the same file himself, so he may post it too
    again = await bob.request("media_post", room_id=s["room"], hash=s["hash"])
    assert again["event_id"] != s["event"]
    await bob.close()


def test_media_survives_a_restart_and_stray_temp_files_are_cleared(server, run):
    state = run(_media_everything(server))
    stray = Path(server.data_dir) / "media" / "tmp" / "up-crashed"
    stray.write_bytes(b"half an upload")
    server.restart()
    assert not stray.exists()
    run(_media_after_restart(server, state))


@pytest.mark.postgres
def test_media_on_postgresql(pg_server, run):
    state = run(_media_everything(pg_server), 60)
    pg_server.restart()
    run(_media_after_restart(pg_server, state))
