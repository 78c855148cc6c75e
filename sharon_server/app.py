"""Composition root: builds every service once, wires them by constructor, starts listening."""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

from autobahn.twisted.resource import WebSocketResource
from twisted.internet import endpoints
from twisted.logger import Logger
from twisted.web.resource import Resource

from sharon_server import __version__
from sharon_server.accounts import AccountService
from sharon_server.audit import open_audit
from sharon_server.config import Config
from sharon_server.features import FeatureContext, install_all
from sharon_server.http import build_site
from sharon_server.hub import Hub
from sharon_server.keys import load_or_create_signing_key
from sharon_server.ops import HANDLERS
from sharon_server.rooms_service import RoomService
from sharon_server.storage.database import open_database
from sharon_server.vault import open_vault
from sharon_server.ws import SharonServerFactory

__all__ = ["ServerApp"]

log = Logger(namespace="sharon.app")


class ServerApp:
    """One running server: storage, services, the HTTP site and the WebSocket factory."""

    def __init__(self, config: Config, reactor: Any) -> None:
        self.config = config
        self._reactor = reactor
        self.db: Any = None
        self.port: Any = None
        self.rooms: Optional[RoomService] = None
        self.factory: Optional[SharonServerFactory] = None
        self.features: Optional[FeatureContext] = None
        self.audit: Any = None
        self.vault: Any = None

    def now_ms(self) -> int:
        """Wall-clock time in milliseconds, from the injected reactor."""
        return int(self._reactor.seconds() * 1000)

    async def start(self) -> int:
        """Open storage, load state, listen; returns the bound TCP port."""
        cfg = self.config
        started = self._reactor.seconds()
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(cfg.data_dir, 0o700)
        key = load_or_create_signing_key(cfg.key_path)
        self.db = await open_database(cfg.effective_database_url)
        self.audit = await open_audit(self.db, self.now_ms)
        log.info("audit.head", head=self.audit.head_text())
        self.vault = await open_vault(cfg, self.db, now_ms=self.now_ms,
                                      on_warning=lambda message: log.warn("vault.warning", message=message))
        accounts = AccountService(
            self.db.accounts, cfg.server_name, self.now_ms,
            time_cost=cfg.password_time_cost, memory_kib=cfg.password_memory_kib,
            parallelism=cfg.password_parallelism, token_cache_size=cfg.token_cache_size)
        await accounts.load()
        factory_holder: Dict[str, Any] = {}
        hub = Hub(lambda payload, binary: factory_holder["f"].prepareMessage(payload, binary), cfg.fanout_chunk)
        self.rooms = RoomService(
            store=self.db.events, accounts=accounts, hub=hub, signing_key=key,
            server_name=cfg.server_name, now_ms=self.now_ms, max_body_chars=cfg.max_body_chars,
            txn_cache_size=cfg.txn_cache_size)
        api_v1 = Resource()
        self.features = FeatureContext(
            config=cfg, db=self.db, rooms=self.rooms, accounts=accounts, hub=hub, api_v1=api_v1,
            data_dir=cfg.data_dir, now_ms=self.now_ms, audit=self.audit, vault=self.vault,
            connections=lambda: self.factory.connections if self.factory else ())
        wanted = None if cfg.features == "all" else [f.strip() for f in cfg.features.split(",") if f.strip()]
        install_all(self.features, wanted)
        await self.rooms.load()
        await self.features.load()
        self.factory = factory_holder["f"] = SharonServerFactory(
            None, rooms=self.rooms, accounts=accounts, hub=hub, handlers=HANDLERS,
            max_frame_bytes=cfg.max_frame_bytes, max_replay_buffer=cfg.max_replay_buffer)
        site = build_site(
            accounts=accounts, ws_resource=WebSocketResource(self.factory), health=self.health,
            server_name=cfg.server_name, signing_key=key, now_ms=self.now_ms,
            max_body=cfg.max_http_body_bytes, api_v1=api_v1)
        host = cfg.listen_host
        iface = host.replace(":", "\\:")
        endpoint = endpoints.serverFromString(
            self._reactor, f"tcp:{cfg.listen_port}:interface={iface}:backlog=1024")
        self.port = await endpoint.listen(site).asFuture(_loop(self._reactor))
        bound = self.port.getHost().port
        accounts.prepare_dummy_hash()  # in a worker thread, off the start-up path (decision 0015)
        log.info("server.listening", host=host, port=bound, url=f"ws://{host}:{bound}/ws",
                 server_name=cfg.server_name, database=self.db.dialect,
                 startup_ms=int((self._reactor.seconds() - started) * 1000))
        return bound

    def health(self) -> Dict[str, Any]:
        """The body of GET /health."""
        report: Dict[str, Any] = {"status": "ok", "server_name": self.config.server_name, "version": __version__}
        if self.rooms is not None and self.factory is not None:
            report["connections"] = len(self.factory.connections)
            report["live_connections"] = self.factory.hub.live_count()
            report.update(self.rooms.memory_report())
        return report

    async def stop(self) -> None:
        """Stop listening, let pending commits finish, close storage."""
        if self.port is not None:
            await self.port.stopListening().asFuture(_loop(self._reactor))
        if self.db is not None:
            await self.db.close()
        log.info("server.stopped")


def _loop(reactor: Any) -> Any:
    return reactor._asyncioEventloop  # noqa: SLF001 - the asyncio reactor's own loop
