"""The chat TUI driven by Textual's pilot, connected to the real server."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading

import pytest
from textual.widgets import Input, Static

from clients.cli import chat as chat_module
from clients.cli.chat import ChatApp
from clients.client import SharonClient
from clients.cli.chat_widgets import RoomItem
from tests.helpers import PASSWORD, fresh_pseudonym, messages_until, room_with, user

pytestmark = pytest.mark.integration


def _labels(app: ChatApp) -> list:
    return [item.info.label().plain for item in app.query(RoomItem)]


def test_chat_shows_rooms_receives_live_and_sends(server, run):
    async def scenario():
        alice = await user(server, "alice")
        bob = await user(server, "bob")
        owls = await room_with(alice, bob, name="Night owls")
        carers = await room_with(alice, bob, name="Carers")
        await bob.sync()
        app = ChatApp(alice, open_room="Night owls")
        async with app.run_test(size=(110, 30)) as pilot:
            await app.wait_until(lambda: app.current == owls and len(app.rooms) == 2)
            assert sorted(label.strip() for label in _labels(app)) == ["Carers", "Night owls"]

            # A message from another client appears live, shown by pseudonym only.
            await bob.send(owls, "hello alice")
            await app.wait_until(lambda: any(line.endswith(f"{bob.pseudonym}: hello alice") for line in app.log_widget.lines()))
            assert not any(bob.user_id in line or alice.user_id in line for line in app.log_widget.lines())

            # A message in a room that is not open marks it unread.
            await bob.send(carers, "over here")
            await app.wait_until(lambda: app.rooms[carers].unread == 1)
            assert "\u25cf Carers (1)" in _labels(app)

            # Typing updates the counter; Enter sends, and the other client receives it.
            await pilot.press(*"hi bob")
            await app.wait_until(lambda: app.counter_text == "6/4000")
            await pilot.press("enter")
            got = [e["content"]["body"] for e in await messages_until(bob, 3)]
            assert got == ["hello alice", "over here", "hi bob"]
            await app.wait_until(lambda: any(line.endswith(f"{alice.pseudonym}: hi bob") for line in app.log_widget.lines()))
            assert app.query_one("#input", Input).value == ""
            assert app.counter_text == "0/4000"

            # Switching rooms clears the unread marker and shows that room's history.
            await pilot.press("ctrl+n")
            await app.wait_until(lambda: app.current == carers and app.rooms[carers].unread == 0)
            await app.wait_until(lambda: any(line.endswith(f"{bob.pseudonym}: over here") for line in app.log_widget.lines()))
        await alice.close()
        await bob.close()

    run(scenario(), timeout_s=60)


def test_counter_warns_near_the_limit_and_refuses_to_send_over_it(server, run):
    async def scenario():
        alice = await user(server, "alice")
        bob = await user(server, "bob")
        room = await room_with(alice, bob)
        await bob.sync()
        app = ChatApp(alice)
        async with app.run_test(size=(110, 30)) as pilot:
            await app.wait_until(lambda: app.current == room)
            field = app.query_one("#input", Input)
            label = app.query_one("#counter", Static)
            field.value = "x" * 3599
            await app.wait_until(lambda: app.counter_text == "3599/4000")
            assert not label.has_class("-warn") and not label.has_class("-over")
            field.value = "x" * 3600
            await app.wait_until(lambda: app.counter_text == "3600/4000")
            assert label.has_class("-warn")
            field.value = "x" * 4001
            await app.wait_until(lambda: app.counter_text == "4001/4000")
            assert label.has_class("-over") and field.has_class("-over")
            field.focus()
            await pilot.press("enter")
            await app.wait_until(lambda: "Too long" in app.status)
            assert field.value == "x" * 4001  # the draft is kept, nothing was sent
            await pilot.press("backspace")
            await app.wait_until(lambda: app.counter_text == "4000/4000")
            await pilot.press("enter")
            [got] = await messages_until(bob, 1)
            assert got["content"]["body"] == "x" * 4000
        await alice.close()
        await bob.close()

    run(scenario(), timeout_s=60)


def test_scrolling_back_loads_older_pages(server, run):
    async def scenario():
        alice = await user(server, "alice")
        room = await room_with(alice)
        for i in range(70):
            await alice.send(room, f"m{i}")
        app = ChatApp(alice)
        async with app.run_test(size=(110, 30)) as pilot:
            await app.wait_until(lambda: app.current == room and len(app.log_widget.positions) == 50)
            assert app.log_widget.lines()[-1].endswith(": m69")
            assert app.older_from is not None
            app.log_widget.scroll_home(animate=False)  # reaching the top loads the page before
            await app.wait_until(lambda: any(line.endswith(": m0") for line in app.log_widget.lines()))
            bodies = [line.rsplit(": ", 1)[-1] for line in app.log_widget.lines() if ": m" in line]
            assert bodies == [f"m{i}" for i in range(70)]
            await app.wait_until(lambda: app.older_from is None)
            await pilot.press("ctrl+o")  # nothing older: harmless
            assert len([line for line in app.log_widget.lines() if ": m" in line]) == 70
        await alice.close()

    run(scenario(), timeout_s=60)


def test_invites_show_up_and_join_from_the_input_line(server, run):
    async def scenario():
        alice = await user(server, "alice")
        bob = await user(server, "bob")
        app = ChatApp(bob)
        async with app.run_test(size=(110, 30)) as pilot:
            await app.wait_until(lambda: "no rooms" in " ".join(app.log_widget.lines()))
            room = (await alice.create_room("chat", "Carers", public=False))["room_id"]
            await alice.invite(room, bob.user_id)
            await app.wait_until(lambda: room in app.rooms and app.rooms[room].membership == "invite")
            assert "Carers (invited)" in " ".join(_labels(app))
            await pilot.press("ctrl+n")
            await app.wait_until(lambda: app.current == room)
            await pilot.press(*"/join", "enter")
            await app.wait_until(lambda: app.rooms.get(room) is not None and app.rooms[room].membership == "join")
            await alice.send(room, "welcome")
            await app.wait_until(lambda: any(line.endswith(": welcome") for line in app.log_widget.lines()))
        await alice.close()
        await bob.close()

    run(scenario(), timeout_s=60)


def test_long_sessions_keep_a_bounded_log(server, run, monkeypatch):
    monkeypatch.setattr(chat_module, "MAX_LOG_ENTRIES", 60)

    async def scenario():
        alice = await user(server, "alice")
        bob = await user(server, "bob")
        room = await room_with(alice, bob)
        for i in range(50):
            await alice.send(room, f"old {i}")
        app = ChatApp(alice)
        async with app.run_test(size=(110, 30)):
            await app.wait_until(lambda: len(app.log_widget.positions) == 50)
            for i in range(30):
                await bob.send(room, f"live {i}")
            log = app.log_widget
            await app.wait_until(lambda: log.lines()[-1].endswith(": live 29") and len(log.lines()) == 60)
            assert len(log.positions) == 60 and log.lines()[0].endswith(": old 20")
            assert app.older_from == app.log_widget.positions[0]  # the dropped ones can be paged back in
        await alice.close()
        await bob.close()

    run(scenario(), timeout_s=60)


def test_chat_reconnects_and_resumes_after_a_server_restart(server, run):
    async def scenario():
        alice = await user(server, "alice")
        bob = await user(server, "bob")
        room = await room_with(alice, bob)
        app = ChatApp(alice)
        async with app.run_test(size=(110, 30)):
            await app.wait_until(lambda: app.current == room)
            await asyncio.get_running_loop().run_in_executor(None, server.restart)
            bob_again = await SharonClient.connect(server.ws_url)
            await bob_again.auth(bob.token)
            await bob_again.send(room, "sent while you were away")  # before or after the app is back
            await app.wait_until(lambda: any(line.endswith(": sent while you were away") for line in app.log_widget.lines()), 30)
            await app.wait_until(lambda: app.status == "reconnected")
            assert app.client is not alice and not app.client.closed
            await app.client.send(room, "back again")
            await app.wait_until(lambda: any(line.endswith(": back again") for line in app.log_widget.lines()))
            await app.client.close()
            await bob_again.close()

    run(scenario(), timeout_s=90)


class _Terminal:
    """A pseudo-terminal running a process; collects its screen output as it comes."""

    _ESCAPES = re.compile(rb"\x1b(\[[0-9;?<>=]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[PX^_][^\x1b]*\x1b\\|.)")

    def __init__(self, argv, env) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 110, 0, 0))
        self.proc = subprocess.Popen(argv, env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
        os.close(slave)
        self.raw = b""
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                chunk = b""
            with self.cond:
                if not chunk:
                    self.raw += b"\0EOF"
                    self.cond.notify_all()
                    return
                self.raw += chunk
                self.cond.notify_all()

    def text(self) -> str:
        return self._ESCAPES.sub(b"", self.raw).decode("utf-8", "replace")

    def wait_for(self, *needles: str, timeout_s: float = 20.0) -> None:
        """Block until every needle has appeared on screen (fails after ``timeout_s`` seconds)."""
        with self.cond:
            ok = self.cond.wait_for(lambda: all(n in self.text() for n in needles) or b"\0EOF" in self.raw, timeout_s)
        assert ok and all(n in self.text() for n in needles), (needles, self.text()[-2000:])

    def type(self, data: str) -> None:
        os.write(self.master, data.encode())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self.master)


def test_sharon_chat_runs_in_a_real_terminal(server, run, tmp_path):
    """The real driver (not headless): the reactor and Textual share the loop of ``sharon chat``."""
    env = dict(os.environ, SHARON_CONFIG_DIR=str(tmp_path), SHARON_SERVER=server.ws_url, SHARON_PASSWORD=PASSWORD,
               TERM="xterm-256color")
    pseudonym = fresh_pseudonym("alice")
    sharon = [sys.executable, "-m", "clients.cli.main"]
    subprocess.run(sharon + ["register", pseudonym], env=env, check=True, capture_output=True, timeout=60)
    room = subprocess.run(sharon + ["create-room", "Night owls", "--kind", "chat", "--public"], env=env, check=True,
                          capture_output=True, text=True, timeout=60).stdout.strip()

    async def bob_joins():
        bob = await user(server, "bob")
        await bob.join(room)
        await bob.sync()
        return bob

    bob = run(bob_joins())
    term = _Terminal(sharon + ["chat"], env)
    try:
        term.wait_for("Night owls", "0/4000", f"{bob.pseudonym} joined")
        run(bob.send(room, "hello from bob"))
        term.wait_for("hello from bob")
        term.type("hi bob")
        term.wait_for("6/4000")
        term.type("\r")
        got = run(messages_until(bob, 2))
        assert [e["content"]["body"] for e in got] == ["hello from bob", "hi bob"]
        term.type("\x11")  # Ctrl+Q
        assert term.proc.wait(20) == 0
    finally:
        term.close()
        run(bob.close())


def test_chat_applies_the_members_mute_words_and_content_warning_preferences(server, run):
    """As in ``sharon tail``/``history``: muted live events and hidden CW categories are left
    out, blurred ones show a content-warning line until Ctrl+R; a moderator's live warning
    on a shown message applies at once."""
    from tests.staff_helpers import grant_admin, service_with_staff

    async def scenario():
        admin = await user(server, "admin")
        grant_admin(server, admin.pseudonym)
        alice, bob, clin = await user(server, "alice"), await user(server, "bob"), await user(server, "clin")
        service = await service_with_staff(admin, "Peer support", members=(alice, bob),
                                           roles={"clinician": (clin,)})
        room = (await admin.request("create_room", kind="chat", name="Evening", public=True,
                                    service_id=service))["room_id"]
        for c in (alice, bob, clin):
            await c.join(room)
        await alice.request("mute_words_set", words=["spiders"])
        await alice.request("cw_prefs_set", categories={"eating": "blur", "suicide": "hide"})
        food = await bob.send(room, "a post about food")
        night = await bob.send(room, "a post about a hard night")
        await bob.send(room, "spiders in the bath")
        await bob.send(room, "tea later?")
        await clin.request("mod_content_warning", event_id=food["event_id"], category="eating")
        await clin.request("mod_content_warning", event_id=night["event_id"], category="suicide")
        blur_line = "content warning: eating \u2014 press Ctrl+R to show"

        def bodies():
            return [line.split(": ", 1)[1] for line in app.log_widget.lines() if ": " in line]

        app = ChatApp(alice, open_room="Evening")
        async with app.run_test(size=(110, 30)) as pilot:
            # history: the server's marks (hidden category left out, muted and blurred marked)
            await app.wait_until(lambda: "tea later?" in bodies())
            assert bodies() == [blur_line, "tea later?"]
            # live: the client applies the mute words itself (live frames are shared)
            await bob.send(room, "more SPIDERS tonight")
            await bob.send(room, "cake later")
            await app.wait_until(lambda: "cake later" in bodies())
            assert not any("SPIDERS" in b or "spiders" in b for b in bodies())
            # a moderator's warning on a message already shown applies at once
            await clin.request("mod_content_warning", event_id=(await bob.send(room, "counting calories"))["event_id"],
                               category="eating")
            await app.wait_until(lambda: bodies().count(blur_line) == 2)
            assert "counting calories" not in bodies()
            # Ctrl+R shows the blurred ones (never the hidden category), and blurs them again
            await pilot.press("ctrl+r")
            await app.wait_until(lambda: "a post about food" in bodies() and "counting calories" in bodies())
            assert "a post about a hard night" not in bodies() and blur_line not in bodies()
            await pilot.press("ctrl+r")
            await app.wait_until(lambda: bodies().count(blur_line) == 2)
        for c in (admin, alice, bob, clin):
            await c.close()

    run(scenario(), timeout_s=60)
