"""Codecs turn envelope dicts into bytes and back.

JSON (orjson) is the default; msgpack is opt-in (``pip install redrelay[msgpack]``).
pickle is deliberately absent: a queue is an input channel, and unpickling input runs code.
Each codec has a one-byte ``kind`` that is stored in every entry, so a consumer decodes an
entry with the codec that wrote it, whatever its own default is.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from .errors import ConfigurationError, EncodeError

__all__ = ["Codec", "JsonCodec", "MsgpackCodec", "resolve_codec"]


class Codec(Protocol):
    """What a codec must provide."""

    #: Name used in settings and error messages.
    name: str
    #: One byte stored in each entry; identifies the codec on the consumer side.
    kind: bytes

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class JsonCodec:
    """orjson: str keys, JSON types, plus datetimes, UUIDs and dataclasses on the way in."""

    name = "json"
    kind = b"j"

    def dumps(self, value: Any) -> bytes:
        try:
            return orjson.dumps(value)
        except TypeError as exc:
            raise EncodeError(self.name, _offender(value), exc) from exc

    def loads(self, data: bytes) -> Any:
        return orjson.loads(data)


class MsgpackCodec:
    """msgpack: compact, binary-safe bodies (``bytes`` round-trips)."""

    name = "msgpack"
    kind = b"m"

    def __init__(self) -> None:
        try:
            import msgpack
        except ImportError as exc:  # pragma: no cover - depends on the extra
            raise ConfigurationError(
                "codec='msgpack' needs the msgpack package: pip install 'redrelay[msgpack]'"
            ) from exc
        self._msgpack = msgpack

    def dumps(self, value: Any) -> bytes:
        try:
            data: bytes = self._msgpack.packb(value, use_bin_type=True)
        except (TypeError, ValueError) as exc:
            raise EncodeError(self.name, _offender(value), exc) from exc
        return data

    def loads(self, data: bytes) -> Any:
        return self._msgpack.unpackb(data, raw=False)


def _offender(value: Any) -> Any:
    """The body inside an envelope dict, so errors name the user's type, not ``dict``."""
    if isinstance(value, dict) and "b" in value:
        return value["b"]
    return value


def resolve_codec(codec: str | Codec) -> Codec:
    """Turn a codec name (``"json"``, ``"msgpack"``) or object into a codec object."""
    if not isinstance(codec, str):
        return codec
    if codec == "json":
        return JsonCodec()
    if codec == "msgpack":
        return MsgpackCodec()
    raise ConfigurationError(
        f"unknown codec {codec!r} (codec=); choose 'json' or 'msgpack'"
    )
