"""The ``sharon`` console script as a subprocess against the real server."""

from __future__ import annotations

import json
import os
import queue
import re
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from tests.helpers import PASSWORD, fresh_pseudonym

pytestmark = pytest.mark.integration

_SCRIPT = Path(sys.executable).with_name("sharon")
SHARON = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "clients.cli.main"]
ROOM_ID = re.compile(r"^![A-Za-z0-9_-]{43}$")
EVENT_ID = re.compile(r"^\$[A-Za-z0-9_-]{43}$")
USER_ID = re.compile(r"^@[a-z0-9._=/+-]+:\S+$")
LINE = re.compile(r"^\[\d\d:\d\d\] (?P<who>[^:]+): (?P<body>.*)$")


class User:
    """One person at a terminal: their own config directory, the server in SHARON_SERVER."""

    def __init__(self, server, home: Path, prefix: str) -> None:
        self.server = server
        self.home = home
        self.pseudonym = fresh_pseudonym(prefix)
        self.user_id = ""

    def env(self, password: Optional[str] = PASSWORD) -> Dict[str, str]:
        env = dict(os.environ, SHARON_CONFIG_DIR=str(self.home), SHARON_SERVER=self.server.ws_url)
        env.pop("SHARON_PASSWORD", None)
        if password is not None:
            env["SHARON_PASSWORD"] = password
        return env

    def run(self, *args: str, password: Optional[str] = PASSWORD, stdin: str = "") -> subprocess.CompletedProcess:
        """Run ``sharon ARGS`` to completion (60 s bound) and return the result."""
        return subprocess.run(SHARON + list(args), env=self.env(password), input=stdin, capture_output=True,
                              text=True, timeout=60)

    def ok(self, *args: str, **kw) -> str:
        """Run and assert success; returns stdout."""
        result = self.run(*args, **kw)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result.stdout

    def register(self) -> "User":
        self.user_id = self.ok("register", self.pseudonym).strip()
        return self

    def session_files(self) -> List[Path]:
        return sorted((self.home / "sessions").glob("*.json"))


class Stream:
    """A long-running ``sharon`` process whose output lines are read as they come."""

    def __init__(self, user: User, *args: str) -> None:
        self.proc = subprocess.Popen(SHARON + list(args), env=user.env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self.out: "queue.Queue[Optional[str]]" = queue.Queue()
        self.err: "queue.Queue[Optional[str]]" = queue.Queue()
        self.err_lines: List[str] = []
        for pipe, q in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._pump, args=(pipe, q), daemon=True).start()

    @staticmethod
    def _pump(pipe, q) -> None:
        for line in pipe:
            q.put(line.rstrip("\n"))
        q.put(None)

    def line(self, q: "queue.Queue[Optional[str]]", timeout_s: float = 20.0) -> str:
        """The next line of ``q``; fails on EOF or after ``timeout_s`` seconds."""
        try:
            line = q.get(timeout=timeout_s)
        except queue.Empty:
            raise AssertionError(f"no output within {timeout_s} s; stderr so far: {self.err_lines}") from None
        assert line is not None, f"process ended early; stderr: {self.err_lines}"
        return line

    def wait_err(self, needle: str, timeout_s: float = 30.0) -> str:
        """Wait for a stderr line containing ``needle``."""
        while True:
            line = self.line(self.err, timeout_s)
            self.err_lines.append(line)
            if needle in line:
                return line

    def finish(self, timeout_s: float = 20.0) -> int:
        try:
            return self.proc.wait(timeout_s)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def people(server, tmp_path):
    """Two registered users, alice and bob, each with their own config directory."""
    return User(server, tmp_path / "alice", "alice").register(), User(server, tmp_path / "bob", "bob").register()


def test_register_saves_a_private_token_and_prints_the_user_id(server, tmp_path):
    carol = User(server, tmp_path / "carol", "carol")
    result = carol.run("register", carol.pseudonym)
    assert result.returncode == 0, result.stderr
    assert USER_ID.match(result.stdout.strip())
    assert carol.pseudonym in result.stderr
    [path] = carol.session_files()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    saved = json.loads(path.read_text())
    assert saved["token"].startswith("shr_") and saved["pseudonym"] == carol.pseudonym
    assert saved["user_id"] == result.stdout.strip() and saved["server"] == server.ws_url
    assert carol.ok("whoami").startswith(f"{carol.pseudonym} {saved['user_id']} device {saved['device_id']}")


def test_rooms_membership_messages_and_history(people):
    alice, bob = people
    room = alice.ok("create-room", "Night owls", "--kind", "chat", "--topic", "for the small hours").strip()
    assert ROOM_ID.match(room)
    assert EVENT_ID.match(alice.ok("invite", room, bob.user_id).strip())
    table = bob.ok("rooms").splitlines()
    assert table[0].split() == ["ROOM", "ID", "KIND", "NAME", "MEMBERS", "MEMBERSHIP"]
    assert table[1].split() == [room, "chat", "Night", "owls", "1", "invite"]
    assert EVENT_ID.match(bob.ok("join", room).strip())
    [summary] = [json.loads(line) for line in bob.ok("rooms", "--json").splitlines()]
    assert (summary["room_id"], summary["membership"], summary["members"]) == (room, "join", 2)

    first = alice.ok("send", room, "anyone up?").strip()
    second = bob.ok("send", "Night owls", "yes, here").strip()  # a room name works too
    third = alice.ok("send", room, "-", stdin="a line from stdin\n").strip()
    assert all(EVENT_ID.match(e) for e in (first, second, third))

    lines = bob.ok("history", room).splitlines()
    parsed = [LINE.match(line).groupdict() for line in lines]
    assert parsed == [
        {"who": alice.pseudonym, "body": "anyone up?"},
        {"who": bob.pseudonym, "body": "yes, here"},
        {"who": alice.pseudonym, "body": "a line from stdin"},
    ]
    events = [json.loads(line) for line in bob.ok("history", room, "--json").splitlines()]
    assert [e["event_id"] for e in events] == [first, second, third]
    assert all(e["room_id"] == room and e["type"] == "m.room.message" for e in events)
    assert [LINE.match(x)["body"] for x in bob.ok("history", room, "--limit", "1").splitlines()] == ["a line from stdin"]
    everything = bob.ok("history", room, "--all").splitlines()
    assert any(line.endswith(f"* {bob.pseudonym} joined") for line in everything)
    assert any(line.endswith(f"* {alice.pseudonym} invited {bob.pseudonym}") for line in everything)
    assert len(everything) > 3

    assert EVENT_ID.match(bob.ok("leave", room).strip())
    result = bob.run("send", room, "am I still here?")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("sharon: error: not_in_room: ")
    assert result.stderr.rstrip().endswith("(field: room_id)")
    assert [line.split() for line in bob.ok("rooms").splitlines()] == [table[0].split()]


def test_json_frames_and_public_rooms(people):
    alice, bob = people
    room = alice.ok("--json-frames", "create-room", "Open door", "--kind", "forum", "--public").strip()
    assert ROOM_ID.match(room)
    bob.ok("--json-frames", "join", room)
    event_id = bob.ok("--json-frames", "send", room, "hello over JSON").strip()
    [event] = [json.loads(x) for x in alice.ok("history", room, "--json").splitlines()]
    assert event["event_id"] == event_id and event["sender_pseudonym"] == bob.pseudonym


def test_tail_streams_new_messages_from_another_user(people):
    alice, bob = people
    room = alice.ok("create-room", "Night owls", "--kind", "chat", "--public").strip()
    bob.ok("join", room)
    alice.ok("send", room, "before the tail")
    elsewhere = alice.ok("create-room", "Elsewhere", "--kind", "chat", "--public").strip()
    bob.ok("join", elsewhere)
    tail = Stream(bob, "tail", room, "--count", "2")
    try:
        tail.wait_err("following")
        alice.ok("send", elsewhere, "not this room")
        alice.ok("send", room, "first live")
        assert LINE.match(tail.line(tail.out)).groupdict() == {"who": alice.pseudonym, "body": "first live"}
        alice.ok("send", room, "second live")
        assert LINE.match(tail.line(tail.out))["body"] == "second live"
        assert tail.finish() == 0
    finally:
        tail.kill()

    # --since replays what was missed (every message of the room after that position), as JSON.
    replay = Stream(bob, "tail", room, "--since", "0", "--count", "3", "--json")
    try:
        bodies = [json.loads(replay.line(replay.out))["content"]["body"] for _ in range(3)]
        assert bodies == ["before the tail", "first live", "second live"]
        assert replay.finish() == 0
    finally:
        replay.kill()


def test_tail_resumes_after_the_server_restarts(people):
    alice, bob = people
    room = alice.ok("create-room", "Night owls", "--kind", "chat", "--public").strip()
    bob.ok("join", room)
    tail = Stream(bob, "tail", room, "--count", "2")
    try:
        tail.wait_err("following")
        alice.ok("send", room, "before restart")
        assert LINE.match(tail.line(tail.out))["body"] == "before restart"
        alice.server.restart()
        alice.ok("send", room, "after restart")  # may land before tail is back: resume replays it
        assert LINE.match(tail.line(tail.out, 60))["body"] == "after restart"
        assert tail.finish() == 0
        assert any("reconnecting" in line for line in tail.err_lines + _drain(tail.err))
    finally:
        tail.kill()


def _drain(q: "queue.Queue[Optional[str]]") -> List[str]:
    out = []
    while not q.empty():
        line = q.get_nowait()
        if line is not None:
            out.append(line)
    return out


def test_errors_are_one_line_with_code_and_exit_1(people, server, tmp_path):
    alice, bob = people
    room = alice.ok("create-room", "Private", "--kind", "chat").strip()

    def fails(user: User, *args: str, code: str, field: Optional[str] = None, **kw) -> str:
        result = user.run(*args, **kw)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert result.stderr.startswith(f"sharon: error: {code}: "), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        if field:
            assert result.stderr.rstrip().endswith(f"(field: {field})"), result.stderr
        return result.stderr

    fails(bob, "send", room, "let me in", code="not_in_room", field="room_id")
    fails(bob, "history", room, code="not_in_room")
    fails(bob, "join", room, code="forbidden")
    fails(bob, "join", "!" + "A" * 43, code="room_not_found")
    fails(bob, "send", "No such name", "x", code="room_not_found", field="room")
    fails(alice, "invite", room, "not-a-user-id", code="bad_field", field="user_id")
    fails(alice, "send", room, "x" * 4001, code="too_large", field="body")
    fails(alice, "login", alice.pseudonym, password="wrong password", code="bad_credentials")
    fails(alice, "register", alice.pseudonym, code="pseudonym_taken")
    newcomer = User(server, tmp_path / "newcomer", "new")
    fails(newcomer, "register", "no", code="invalid_pseudonym", field="pseudonym")
    fails(newcomer, "register", newcomer.pseudonym, password="short", code="weak_password", field="password")
    stderr = fails(newcomer, "rooms", code="not_logged_in")
    assert "sharon login" in stderr
    fails(newcomer, "login", alice.pseudonym, password=None, code="no_password")  # no terminal, no env
    usage = newcomer.run("create-room", "x", "--kind", "castle")
    assert usage.returncode == 2 and "invalid choice" in usage.stderr


def test_login_logout_and_a_revoked_token(people, tmp_path):
    alice, _bob = people
    laptop = User(alice.server, tmp_path / "laptop", "unused")
    assert laptop.ok("login", alice.pseudonym).strip() == alice.user_id
    [laptop_file] = laptop.session_files()
    [alice_file] = alice.session_files()
    assert json.loads(laptop_file.read_text())["device_id"] != json.loads(alice_file.read_text())["device_id"]
    saved = laptop_file.read_bytes()
    laptop.ok("logout")
    assert laptop.session_files() == []
    assert laptop.run("rooms").stderr.startswith("sharon: error: not_logged_in: ")
    # A copy of the revoked token is refused, and forgotten.
    laptop_file.write_bytes(saved)
    result = laptop.run("rooms")
    assert result.returncode == 1 and "no longer valid" in result.stderr and "sharon login" in result.stderr
    assert laptop.session_files() == []
    assert alice.ok("rooms").startswith("ROOM ID")  # the other device is still signed in
