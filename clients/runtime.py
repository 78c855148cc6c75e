"""One asyncio loop with Twisted's asyncio reactor on it, installed once per process.

Everything on the client side (autobahn's Twisted protocols, asyncio coroutines, the Textual
app, the test suite) runs on this one loop. Call ``install_reactor()`` before anything imports
``twisted.internet.reactor``; it is idempotent, so every entry point can simply call it.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import threading
from typing import Any, Coroutine, Optional, Tuple, TypeVar

__all__ = ["install_reactor", "run"]

T = TypeVar("T")

_installed: Optional[Tuple[asyncio.AbstractEventLoop, Any]] = None


def install_reactor(loop: Optional[asyncio.AbstractEventLoop] = None) -> Tuple[asyncio.AbstractEventLoop, Any]:
    """Install Twisted's asyncio reactor on ``loop`` (a new loop if None) once; return (loop, reactor).

    Later calls return the same pair. Raises RuntimeError if another reactor was installed
    first, or if a different ``loop`` is asked for after installation.
    """
    global _installed
    if _installed is not None:
        if loop is not None and loop is not _installed[0]:
            raise RuntimeError("the asyncio reactor is already installed on another event loop")
        return _installed
    if "twisted.internet.reactor" in sys.modules:
        from twisted.internet import asyncioreactor
        from twisted.internet import reactor as existing

        if not isinstance(existing, asyncioreactor.AsyncioSelectorReactor):
            raise RuntimeError(
                f"a {type(existing).__name__} was installed before clients.runtime.install_reactor(); "
                "install the asyncio reactor first"
            )
        existing_loop = existing._asyncioEventloop
        if loop is not None and loop is not existing_loop:
            raise RuntimeError("the asyncio reactor is already installed on another event loop")
        _installed = (existing_loop, existing)
        _start(existing)
        return _installed

    from twisted.internet import asyncioreactor

    if loop is None:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    asyncioreactor.install(loop)
    from twisted.internet import reactor

    _installed = (loop, reactor)
    _start(reactor)
    return _installed


def _start(reactor: Any) -> None:
    """Put the reactor in the running state without letting it own the loop.

    We never call ``reactor.run()``: the asyncio loop is driven by ``run()`` below, by
    Textual's ``run_async()`` or by pytest. But ``reactor.running`` matters: Twisted starts
    its thread pool only when the reactor runs (``callWhenRunning``), and name resolution
    (``reactor.resolve``, ``HostnameEndpoint``, ``twisted.web.client.Agent``) runs in that
    pool, so without this such calls would wait forever. ``startRunning`` fires the startup
    triggers and sets ``running`` without entering ``loop.run_forever()``. Signal handlers
    stay with Python (Ctrl-C raises KeyboardInterrupt) and Textual.

    The pool's workers are daemon threads: nobody calls ``reactor.stop()`` on a client
    process, and non-daemon idle workers would keep the interpreter from exiting.
    """
    if reactor.running or getattr(reactor, "_started", False):
        return
    pool = reactor.getThreadPool()
    pool.threadFactory = functools.partial(threading.Thread, daemon=True)
    reactor.startRunning(installSignalHandlers=False)


def run(coro: Coroutine[Any, Any, T], timeout_s: Optional[float] = 30.0) -> T:
    """Run ``coro`` to completion on the reactor's loop and return its result.

    ``timeout_s`` (seconds, None for no limit) bounds the whole run; on expiry the coroutine
    is cancelled and TimeoutError is raised. Not callable from inside the running loop.
    """
    loop, _reactor = install_reactor()
    if loop.is_running():
        coro.close()
        raise RuntimeError("clients.runtime.run() called from inside the running loop; await instead")
    task = loop.create_task(coro if timeout_s is None else asyncio.wait_for(coro, timeout_s))
    try:
        return loop.run_until_complete(task)
    except KeyboardInterrupt:
        # Ctrl-C: let the coroutine's ``finally`` blocks run (close connections) before leaving.
        task.cancel()
        try:
            loop.run_until_complete(task)
        except BaseException:
            pass
        raise
