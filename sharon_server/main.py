"""``sharon-server``: parse configuration, install the asyncio reactor, run the server."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from typing import Any, Optional, Sequence

__all__ = ["main"]


def _new_loop() -> asyncio.AbstractEventLoop:
    """The event loop under Twisted's asyncio reactor: uvloop when installed (decision 0017),
    the standard library's otherwise or when ``SHARON_LOOP=asyncio``."""
    if os.environ.get("SHARON_LOOP", "uvloop") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the server until SIGINT/SIGTERM (or ``admin ...``); returns the process exit code."""
    from sharon_server.config import ConfigError, load_config

    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["admin"]:
        from sharon_server.admin_cli import main as admin_main

        return admin_main(args[1:])
    if args[:1] in (["vault"], ["audit"]):
        import importlib

        return importlib.import_module(f"sharon_server.cli_{args[0]}").main(args[1:])

    try:
        config = load_config(args)
    except ConfigError as exc:
        print(f"sharon-server: configuration error: {exc}", file=sys.stderr)
        return 2

    # Importing the server makes ~130,000 GC-tracked objects that live as long as the
    # process (modules, classes, functions); the cyclic GC ran ~180 times over them while
    # they were made, ~45 ms of a ~0.5 s start. It is off while they are imported, and what
    # they made is then frozen (moved out of the collected generations, never traversed
    # again). Cost: the cycles of garbage the imports left are never freed (~0.7 MiB RSS).
    # Everything made after that, state loaded from the database included, is collected
    # as usual (decision 0016).
    gc.disable()
    try:
        return _serve(config)
    finally:
        gc.enable()


def _serve(config: Any) -> int:
    """Install the reactor, import and start the server, run until stopped (GC off on entry)."""
    if "OpenSSL" not in sys.modules and not os.environ.get("SHARON_LOAD_TLS"):
        # The server speaks plain TCP (TLS ends at the proxy in front of it) and makes no
        # outgoing connections, but Twisted's tcp module imports its TLS layer (pyOpenSSL,
        # cryptography.x509) whenever pyOpenSSL is installed: ~5 MiB resident and about a
        # tenth of the start-up (decision 0015). Marking the module absent makes Twisted
        # take its "no TLS" branch. SHARON_LOAD_TLS=1 turns this off.
        sys.modules["OpenSSL"] = None  # type: ignore[assignment]

    loop = _new_loop()
    asyncio.set_event_loop(loop)
    from twisted.internet import asyncioreactor

    asyncioreactor.install(loop)
    from twisted.internet import defer, reactor
    from twisted.logger import Logger

    from sharon_server.app import ServerApp
    from sharon_server.logs import start_logging

    gc.freeze()
    gc.enable()

    start_logging(config.log_format, config.log_level)
    log = Logger(namespace="sharon.main")
    app = ServerApp(config, reactor)
    exit_code = {"code": 0}

    def _failed(failure):  # type: ignore[no-untyped-def]
        log.failure("server.start_failed", failure)
        exit_code["code"] = 1
        reactor.stop()

    def _start() -> None:
        defer.Deferred.fromFuture(loop.create_task(app.start())).addErrback(_failed)

    reactor.callWhenRunning(_start)
    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: defer.Deferred.fromFuture(loop.create_task(app.stop())))
    reactor.run()
    return exit_code["code"]


if __name__ == "__main__":
    sys.exit(main())
