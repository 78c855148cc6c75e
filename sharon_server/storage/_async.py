"""SQLAlchemy's asyncio engine, without the ORM its package imports (decision 0016).

The stores use only ``AsyncEngine`` and ``AsyncConnection`` (SQLAlchemy Core). The
``sqlalchemy.ext.asyncio`` package's ``__init__`` also imports its ``AsyncSession``, and with
it the whole ORM: ~45 modules, ~7 MiB resident and ~40 ms of every start-up, for nothing
the server calls. So the package is registered here without running its ``__init__`` (a
PEP 562 module ``__getattr__`` runs it on the first lookup of anything else, so
``from sqlalchemy.ext.asyncio import AsyncSession`` anywhere else in the process still
works and gets the very same engine classes), and the engine comes from its own module.

If the package is already imported (tests, tools), nothing changes.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

__all__ = ["AsyncConnection", "AsyncEngine", "create_async_engine"]

_PACKAGE = "sqlalchemy.ext.asyncio"


def _register_without_init() -> Any:
    if _PACKAGE in sys.modules:
        return None
    import sqlalchemy.ext

    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return None  # an unexpected layout: the ordinary import below then runs the __init__
    package = importlib.util.module_from_spec(spec)
    sys.modules[_PACKAGE] = package
    setattr(sqlalchemy.ext, "asyncio", package)
    return package


def _complete_on_first_lookup(package: Any) -> None:
    """Run the package's own ``__init__`` into ``package`` on the first lookup of a name it lacks."""

    def __getattr__(name: str) -> Any:
        if (name.isidentifier() and not name.startswith("__")
                and importlib.util.find_spec(f"{_PACKAGE}.{name}") is not None):
            # ``from . import exc`` (a submodule not loaded yet): the import system loads it.
            raise AttributeError(name)
        if package.__dict__.pop("__getattr__", None) is not None:
            try:
                package.__spec__.loader.exec_module(package)  # its ``from .engine import`` reuses the loaded modules
            except BaseException:
                package.__dict__["__getattr__"] = __getattr__
                raise
        try:
            return package.__dict__[name]
        except KeyError:
            raise AttributeError(f"module {_PACKAGE!r} has no attribute {name!r}") from None

    package.__dict__["__getattr__"] = __getattr__


_bare = _register_without_init()

from sqlalchemy.ext.asyncio.engine import AsyncConnection, AsyncEngine, create_async_engine  # noqa: E402

if _bare is not None:
    _complete_on_first_lookup(_bare)
