"""Structured logging: one JSON object per line (or a short text line) on standard output.

Code logs through ``twisted.logger.Logger`` with an event name as the format string and
fields as keyword arguments: ``log.info("room.created", room_id=..., kind=...)``. Fields
never carry tokens, passwords or message bodies; identity data never reaches this layer.
"""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Any, Dict

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    globalLogBeginner,
)
from zope.interface import provider

__all__ = ["start_logging", "json_observer", "text_observer"]

_SKIP = frozenset({
    "log_logger", "log_source", "log_format", "log_level", "log_time", "log_namespace",
    "log_failure", "log_io", "log_trace", "log_system", "log_flattened", "format",
    "message", "time", "isError", "system", "log_text", "log_legacy",
})


def _name(event: Dict[str, Any]) -> str:
    """Our events use a bare name as the format; Twisted's own are formatted to text."""
    fmt = event.get("log_format")
    if fmt and "{" not in fmt:
        return fmt
    return formatEvent(event)


def _fields(event: Dict[str, Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in event.items():
        if key in _SKIP or key.startswith("log_"):
            continue
        if isinstance(value, (str, int, float, bool)) or value is None:
            out[key] = value
        else:
            out[key] = str(value)
    return out


def json_observer(stream: IO[str]) -> ILogObserver:
    """An observer writing ``{"ts", "level", "ns", "event", ...fields}`` lines to ``stream``."""

    @provider(ILogObserver)
    def observe(event: Dict[str, Any]) -> None:
        record = {
            "ts": round(event.get("log_time", time.time()), 3),
            "level": event["log_level"].name if "log_level" in event else "info",
            "ns": event.get("log_namespace", ""),
            "event": _name(event),
        }
        record.update(_fields(event))
        failure = event.get("log_failure")
        if failure is not None:
            record["error"] = failure.getErrorMessage()
            record["traceback"] = failure.getTraceback()
        stream.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        stream.flush()

    return observe


def text_observer(stream: IO[str]) -> ILogObserver:
    """An observer writing ``HH:MM:SS level event k=v ...`` lines for people at a terminal."""

    @provider(ILogObserver)
    def observe(event: Dict[str, Any]) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(event.get("log_time", time.time())))
        level = event["log_level"].name if "log_level" in event else "info"
        name = _name(event)
        extra = " ".join(f"{k}={v}" for k, v in _fields(event).items())
        stream.write(f"{stamp} {level:5} {name} {extra}".rstrip() + "\n")
        failure = event.get("log_failure")
        if failure is not None:
            stream.write(failure.getTraceback())
        stream.flush()

    return observe


def start_logging(fmt: str = "json", level: str = "info", stream: IO[str] | None = None) -> None:
    """Route every Twisted log event to standard output at ``level`` and above."""
    out = stream or sys.stdout
    base = json_observer(out) if fmt == "json" else text_observer(out)
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(level))
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(base, [predicate])], redirectStandardIO=False)
