"""Server configuration: defaults, then a TOML file, then SHARON_* environment, then flags.

Every setting has a working default, so ``sharon-server`` with no arguments serves SQLite in
``./sharon-data`` on 127.0.0.1:8448. docs/operations.md lists every key.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import attr

from protocol.errors import BadField
from protocol.ids import ServerName

__all__ = ["Config", "ConfigError", "load_config", "parse_listen"]


class ConfigError(Exception):
    """A configuration value is unusable; the message names the key and the reason."""


def parse_listen(value: str) -> Tuple[str, int]:
    """Parse ``HOST:PORT`` (``[v6]:PORT`` for IPv6) into (host, port); port 0 picks a free one."""
    host, sep, port_s = value.rpartition(":")
    if not sep or not port_s.isdigit():
        raise ConfigError(f"listen: expected HOST:PORT, got {value!r}")
    port = int(port_s)
    if not 0 <= port <= 65535:
        raise ConfigError(f"listen: port must be 0..65535, got {port}")
    host = host.strip("[]") or "127.0.0.1"
    return host, port


@attr.s(frozen=True, slots=True, auto_attribs=True, kw_only=True)
class Config:
    """All server settings (units in the names: ``_ms``, ``_bytes``, ``_kib``)."""

    data_dir: Path = Path("sharon-data")
    listen_host: str = "127.0.0.1"
    listen_port: int = 8448
    server_name: str = "localhost"
    database_url: Optional[str] = None
    max_frame_bytes: int = 65536
    max_body_chars: int = 4000
    max_http_body_bytes: int = 65536
    password_time_cost: int = 3
    password_memory_kib: int = 65536
    password_parallelism: int = 2
    txn_cache_size: int = 200_000
    token_cache_size: int = 50_000
    max_replay_buffer: int = 20_000
    fanout_chunk: int = 4000
    log_format: str = "json"
    log_level: str = "info"
    features: str = "all"
    pseudonym_blocklist: str = ""
    """A file of words a pseudonym may not contain, one per line (added to the built-in list)."""
    unmask_reasons: str = "risk_to_life,safeguarding,clinical_review,police_request,court_order"
    """Comma-separated reason codes staff may cite in an unmask request."""
    unmask_ttl_ms: int = 900_000
    """How long an approved unmask stays viewable."""
    invite_ttl_ms: int = 14 * 24 * 3600 * 1000
    """How long a clinician's invite code stays valid."""
    lexicon_path: str = ""
    """An extra risk lexicon (TOML) loaded over the shipped default."""

    @property
    def effective_database_url(self) -> str:
        """The configured database URL, or the embedded SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'sharon.db').resolve()}"

    @property
    def key_path(self) -> Path:
        """Where the server's Ed25519 signing key lives (created mode 0600 on first start)."""
        return self.data_dir / "signing.key"


_INT_KEYS = {
    "listen_port", "max_frame_bytes", "max_body_chars", "max_http_body_bytes",
    "password_time_cost", "password_memory_kib", "password_parallelism",
    "txn_cache_size", "token_cache_size", "max_replay_buffer", "fanout_chunk",
    "unmask_ttl_ms", "invite_ttl_ms",
}
_STR_KEYS = {
    "server_name", "database_url", "log_format", "log_level", "features",
    "pseudonym_blocklist", "unmask_reasons", "lexicon_path",
}
_KEYS = _INT_KEYS | _STR_KEYS | {"data_dir", "listen"}


def _coerce(values: Mapping[str, Any], source: str) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in values.items():
        if key not in _KEYS:
            raise ConfigError(f"{source}: unknown setting {key!r}")
        if key == "listen":
            out["listen_host"], out["listen_port"] = parse_listen(str(value))
        elif key == "data_dir":
            out["data_dir"] = Path(str(value))
        elif key in _INT_KEYS:
            try:
                number = int(value)
            except (TypeError, ValueError):
                raise ConfigError(f"{source}: {key} must be an integer, got {value!r}") from None
            if number < 0:
                raise ConfigError(f"{source}: {key} must not be negative")
            out[key] = number
        else:
            out[key] = str(value)
    return out


def _validate(cfg: Config) -> Config:
    try:
        ServerName.parse(cfg.server_name, "server_name")
    except BadField as exc:
        raise ConfigError(f"server_name: {exc.reason}") from None
    if cfg.log_format not in ("json", "text"):
        raise ConfigError("log_format: must be 'json' or 'text'")
    if cfg.max_frame_bytes < 1024:
        raise ConfigError("max_frame_bytes: must be at least 1024")
    if not 1 <= cfg.max_body_chars <= 60000:
        raise ConfigError("max_body_chars: must be 1..60000 (an event must fit in 64 KiB)")
    return cfg


def build_arg_parser() -> argparse.ArgumentParser:
    """The ``sharon-server`` command line."""
    p = argparse.ArgumentParser(prog="sharon-server", description="Run the SHaRON server.")
    p.add_argument("--config", metavar="FILE", help="TOML config file (default: DATA_DIR/sharon.toml if present)")
    p.add_argument("--data-dir", metavar="DIR", help="data directory (default ./sharon-data)")
    p.add_argument("--listen", metavar="HOST:PORT", help="address to listen on (default 127.0.0.1:8448)")
    p.add_argument("--server-name", metavar="NAME", help="this server's name in user IDs (default localhost)")
    p.add_argument("--database-url", metavar="URL", help="SQLAlchemy URL; default SQLite in the data directory")
    p.add_argument("--log-format", choices=("json", "text"), help="log line format (default json)")
    return p


def load_config(argv: Optional[Sequence[str]] = None, environ: Optional[Mapping[str, str]] = None) -> Config:
    """Merge defaults < config file < SHARON_* environment < command-line flags."""
    env = os.environ if environ is None else environ
    args = build_arg_parser().parse_args(argv)
    merged: Dict[str, Any] = {}
    data_dir = Path(args.data_dir or env.get("SHARON_DATA_DIR") or "sharon-data")
    config_path = args.config or env.get("SHARON_CONFIG")
    if config_path is None and (data_dir / "sharon.toml").exists():
        config_path = str(data_dir / "sharon.toml")
    if config_path:
        try:
            with open(config_path, "rb") as fh:
                merged.update(_coerce(tomllib.load(fh), config_path))
        except FileNotFoundError:
            raise ConfigError(f"config file {config_path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_path}: {exc}") from None
    from_env = {k[len("SHARON_"):].lower(): v for k, v in env.items() if k.startswith("SHARON_")}
    from_env.pop("config", None)
    merged.update(_coerce({k: v for k, v in from_env.items() if k in _KEYS}, "environment"))
    flags = {
        "data_dir": args.data_dir, "listen": args.listen, "server_name": args.server_name,
        "database_url": args.database_url, "log_format": args.log_format,
    }
    merged.update(_coerce({k: v for k, v in flags.items() if v is not None}, "command line"))
    return _validate(Config(**merged))
