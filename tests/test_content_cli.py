"""The content commands of the ``sharon`` console script against the real server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import PASSWORD, fresh_pseudonym
from tests.test_content_support import close, service

pytestmark = pytest.mark.integration

_SCRIPT = Path(sys.executable).with_name("sharon")
SHARON = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "clients.cli.main"]


def test_cli_forum_wall_blog_round_trip(server, run, tmp_path):
    env = dict(os.environ, SHARON_CONFIG_DIR=str(tmp_path / "cfg"), SHARON_SERVER=server.ws_url,
               SHARON_PASSWORD=PASSWORD)

    def sharon(*args: str) -> str:
        result = subprocess.run(SHARON + list(args), env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result.stdout.strip()

    pseudonym = fresh_pseudonym("cli")
    user_id = sharon("register", pseudonym)

    class Member:  # what service() needs of a member
        pass

    member = Member()
    member.user_id = user_id
    admin, svc = run(service(server, members=(member,)))
    forum = sharon("create-room", "Evenings", "--kind", "forum", "--service", svc, "--public")
    thread = sharon("forum-new", forum, "Bedtime", "What helps you wind down?")
    sharon("forum-reply", forum, thread, "A warm bath")
    listing = sharon("forum-threads", forum)
    assert thread in listing and "«Bedtime»" in listing and "replies=1" in listing
    assert "A warm bath" in sharon("forum-thread", forum, thread)
    post = sharon("wall-post", svc, "Feeling brighter today")
    assert post in sharon("timeline") and "Feeling brighter" in sharon("wall", svc)
    blog = sharon("create-room", "My recovery", "--kind", "blog", "--service", svc, "--public")
    draft = sharon("blog-draft", "Week 1", "It was hard", "--room", blog)
    assert draft in sharon("blog-drafts")
    published = sharon("blog-publish", draft)
    assert published in sharon("blog-feed", svc)
    sharon("react", blog, published, "heart")
    assert "heart×1" in sharon("blog-feed", svc)
    result = subprocess.run(SHARON + ["forum-state", forum, thread, "--pin"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1 and "forbidden" in result.stderr
    run(close(admin))
