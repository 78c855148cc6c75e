"""Accounts and devices: registration, pseudonym lookup, access-token lookup."""

from __future__ import annotations

import asyncio
from typing import Dict, Iterable, List, Optional

import attr
import sqlalchemy as sa

from protocol.errors import PseudonymTaken
from sharon_server.storage._sql import Engines, insert_for
from sharon_server.storage.rows import AccountRow, DeviceRow
from sharon_server.storage.schema import accounts, devices

__all__ = ["AccountStore"]

_IN_CHUNK = 500  # user IDs per IN (...) query: well under every backend's bind limit

_ROW_COLUMNS = [accounts.c[name] for name in attr.fields_dict(AccountRow)]
_ACCOUNT_BY_KEY = sa.select(*_ROW_COLUMNS).where(accounts.c.pseudonym_key == sa.bindparam("key"))
_ACCOUNT_BY_ID = sa.select(*_ROW_COLUMNS).where(accounts.c.user_id == sa.bindparam("user_id"))
_ALL_PSEUDONYMS = sa.select(accounts.c.user_id, accounts.c.pseudonym)
_SOME_PSEUDONYMS = _ALL_PSEUDONYMS.where(accounts.c.user_id.in_(sa.bindparam("ids", expanding=True)))
_DEVICE_BY_TOKEN = sa.select(*devices.c).where(devices.c.token_hash == sa.bindparam("token_hash"))
_DEVICES_BY_TOKENS = sa.select(*devices.c).where(devices.c.token_hash.in_(sa.bindparam("hashes", expanding=True)))
_DEVICES_OF = (
    sa.select(*devices.c)
    .where(devices.c.user_id == sa.bindparam("user_id"))
    .order_by(devices.c.created_ts, devices.c.device_id)
)
_DELETE_DEVICE = sa.delete(devices).where(
    devices.c.user_id == sa.bindparam("user_id"), devices.c.device_id == sa.bindparam("device_id")
)
_TOUCH_DEVICE = (
    sa.update(devices)
    .where(devices.c.user_id == sa.bindparam("b_user_id"), devices.c.device_id == sa.bindparam("b_device_id"))
    .values(last_seen_ts=sa.bindparam("b_ts"))
)


class AccountStore:
    """Accounts (unique case-folded pseudonyms) and their devices (unique token hashes)."""

    def __init__(self, engines: Engines) -> None:
        self._w = engines.write
        self._r = engines.read
        stmt = insert_for(engines.dialect)(accounts)
        self._insert_account = stmt.on_conflict_do_nothing(index_elements=[accounts.c.pseudonym_key])
        self._token_waiters: Dict[bytes, List["asyncio.Future[Optional[DeviceRow]]"]] = {}
        self._token_lookup_running = False
        self.token_queries = 0

    async def create_account(
        self, user_id: str, pseudonym: str, pseudonym_key: str, password_hash: str, created_ts: int,
        pseudonym_skeleton: Optional[str] = None,
    ) -> AccountRow:
        """Create an account; raises PseudonymTaken if ``pseudonym_key`` or (when given)
        ``pseudonym_skeleton`` is already used.

        ``pseudonym_key`` is the case-folded pseudonym and ``pseudonym_skeleton`` its
        look-alike form (``sharon_server.accounts.pseudonym_skeleton``), computed by the caller.
        """
        row = AccountRow(user_id, pseudonym, pseudonym_key, password_hash, created_ts, pseudonym_skeleton)
        params = {
            "user_id": user_id,
            "pseudonym": pseudonym,
            "pseudonym_key": pseudonym_key,
            "password_hash": password_hash,
            "created_ts": created_ts,
            "pseudonym_skeleton": pseudonym_skeleton,
        }
        try:
            async with self._w.begin() as conn:
                result = await conn.execute(self._insert_account, params)
                inserted = result.rowcount
        except sa.exc.IntegrityError:
            if pseudonym_skeleton is None or not await self.skeleton_taken(pseudonym_skeleton):
                raise
            raise PseudonymTaken("that pseudonym is too similar to one already in use", "pseudonym") from None
        if inserted != 1:
            raise PseudonymTaken("that pseudonym is in use", "pseudonym")
        return row

    async def skeleton_taken(self, skeleton: str) -> bool:
        """True if an account has this pseudonym skeleton."""
        async with self._r.connect() as conn:
            row = (await conn.execute(sa.select(accounts.c.user_id).where(
                accounts.c.pseudonym_skeleton == skeleton).limit(1))).first()
        return row is not None

    async def get_by_pseudonym_key(self, key: str) -> Optional[AccountRow]:
        """The account whose case-folded pseudonym is ``key``, or None."""
        async with self._r.connect() as conn:
            row = (await conn.execute(_ACCOUNT_BY_KEY, {"key": key})).first()
        return None if row is None else AccountRow(*row)

    async def get(self, user_id: str) -> Optional[AccountRow]:
        """The account ``user_id``, or None."""
        async with self._r.connect() as conn:
            row = (await conn.execute(_ACCOUNT_BY_ID, {"user_id": user_id})).first()
        return None if row is None else AccountRow(*row)

    async def pseudonyms(self, user_ids: Optional[Iterable[str]] = None) -> Dict[str, str]:
        """Map user ID to pseudonym for every account, or for the given ones that exist."""
        out: Dict[str, str] = {}
        async with self._r.connect() as conn:
            if user_ids is None:
                out.update((uid, name) for uid, name in await conn.execute(_ALL_PSEUDONYMS))
                return out
            ids = list(dict.fromkeys(user_ids))
            for i in range(0, len(ids), _IN_CHUNK):
                chunk = ids[i : i + _IN_CHUNK]
                out.update((uid, name) for uid, name in await conn.execute(_SOME_PSEUDONYMS, {"ids": chunk}))
        return out

    async def create_device(
        self, user_id: str, device_id: str, name: Optional[str], token_hash: bytes, created_ts: int
    ) -> DeviceRow:
        """Add a device to an existing account; ``token_hash`` must be unique."""
        row = DeviceRow(user_id, device_id, name, token_hash, created_ts, None)
        async with self._w.begin() as conn:
            await conn.execute(
                devices.insert(),
                {
                    "user_id": user_id,
                    "device_id": device_id,
                    "name": name,
                    "token_hash": token_hash,
                    "created_ts": created_ts,
                    "last_seen_ts": None,
                },
            )
        return row

    async def device_for_token(self, token_hash: bytes) -> Optional[DeviceRow]:
        """The device whose access-token hash is ``token_hash``, or None.

        Lookups that arrive while one is running (a burst of clients authenticating on a
        cold token cache) are answered together by the next query, ``_IN_CHUNK`` hashes per
        ``IN (...)``: one thread hop and one query for many clients instead of one each.
        """
        loop = asyncio.get_running_loop()
        future: "asyncio.Future[Optional[DeviceRow]]" = loop.create_future()
        self._token_waiters.setdefault(token_hash, []).append(future)
        if not self._token_lookup_running:
            self._token_lookup_running = True
            loop.create_task(self._lookup_tokens())
        return await future

    async def _lookup_tokens(self) -> None:
        try:
            while self._token_waiters:
                waiting = self._token_waiters
                self._token_waiters = {}
                hashes = list(waiting)
                try:
                    found: Dict[bytes, DeviceRow] = {}
                    async with self._r.connect() as conn:
                        for i in range(0, len(hashes), _IN_CHUNK):
                            self.token_queries += 1
                            chunk = hashes[i:i + _IN_CHUNK]
                            if len(chunk) == 1:
                                rows = await conn.execute(_DEVICE_BY_TOKEN, {"token_hash": chunk[0]})
                            else:
                                rows = await conn.execute(_DEVICES_BY_TOKENS, {"hashes": chunk})
                            for row in rows:
                                device = DeviceRow(*row)
                                found[device.token_hash] = device
                except BaseException as exc:  # noqa: BLE001 - every waiter hears of it
                    for futures in waiting.values():
                        for f in futures:
                            if not f.done():
                                f.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for token_hash, futures in waiting.items():
                    device = found.get(token_hash)
                    for f in futures:
                        if not f.done():
                            f.set_result(device)
        finally:
            self._token_lookup_running = False

    async def delete_device(self, user_id: str, device_id: str) -> bool:
        """Remove a device (revoking its token); False if there was no such device."""
        async with self._w.begin() as conn:
            result = await conn.execute(_DELETE_DEVICE, {"user_id": user_id, "device_id": device_id})
            deleted = result.rowcount
        return deleted > 0

    async def devices(self, user_id: str) -> List[DeviceRow]:
        """The account's devices, oldest first."""
        async with self._r.connect() as conn:
            result = await conn.execute(_DEVICES_OF, {"user_id": user_id})
            return [DeviceRow(*row) for row in result]

    async def touch_device(self, user_id: str, device_id: str, last_seen_ts: int) -> bool:
        """Record when a device was last seen (ms); False if there is no such device."""
        async with self._w.begin() as conn:
            result = await conn.execute(
                _TOUCH_DEVICE, {"b_user_id": user_id, "b_device_id": device_id, "b_ts": last_seen_ts}
            )
            touched = result.rowcount
        return touched > 0
