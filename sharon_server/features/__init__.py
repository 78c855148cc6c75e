"""Features on top of the room core: services, DMs, forums, walls, blogs, social, media.

Each feature module has ``install(ctx: FeatureContext)``, called once at start-up by
``app.py`` in ``INSTALL_ORDER``: it registers event types and guards on ``ctx.rooms``,
operation handlers with ``sharon_server.ops.register_handlers`` (request types come from
``protocol/<feature>.py``), HTTP routes under ``ctx.api_v1``, and may publish a service on
``ctx`` for features installed after it (``ctx.services`` is the service directory).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable, List, Optional

import attr

__all__ = ["FeatureContext", "INSTALL_ORDER", "install_all"]

INSTALL_ORDER = (
    "spaces", "dms", "content", "social", "media",
    "invites", "risk", "controls", "moderation", "triage", "staff", "unmask",
)
"""Feature modules, in dependency order (later ones may use what earlier ones publish)."""


@attr.s(slots=True, auto_attribs=True)
class FeatureContext:
    """What a feature gets at install time; features publish their services on it too."""

    config: Any
    db: Any
    rooms: Any
    accounts: Any
    hub: Any
    api_v1: Any
    data_dir: Path
    now_ms: Callable[[], int]
    connections: Callable[[], Any]
    services: Any = None
    notifier: Any = None
    audit: Any = None
    """The tamper-evident audit log (``sharon_server.audit.AuditLog``): staff actions go here."""
    vault: Any = None
    """The encrypted identity vault (``sharon_server.vault.IdentityVault``)."""
    installed: List[str] = attr.Factory(list)
    extras: dict = attr.Factory(dict)

    async def load(self) -> None:
        """Let every installed feature load its in-memory state (after rooms are loaded)."""
        for loader in self.extras.get("loaders", []):
            await loader()

    def add_loader(self, loader: Callable[[], Any]) -> None:
        """Register an async start-up loader, run in install order after the room state."""
        self.extras.setdefault("loaders", []).append(loader)


def install_all(ctx: FeatureContext, only: Optional[List[str]] = None) -> None:
    """Import and install every feature module that exists, in ``INSTALL_ORDER``."""
    for name in INSTALL_ORDER:
        if only is not None and name not in only:
            continue
        try:
            module = importlib.import_module(f"sharon_server.features.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"sharon_server.features.{name}":
                continue
            raise
        module.install(ctx)
        ctx.installed.append(name)
