"""Codecs turn envelope dicts into bytes and back.

JSON (orjson) is the default; msgpack is opt-in (``pip install redrelay[msgpack]``).
pickle is deliberately absent: a queue is an input channel, and unpickling input runs code.
Each codec has a one-byte ``kind`` that is stored in every entry, so a consumer decodes an
entry with the codec that wrote it, whatever its own default is.

The JSON codec sends what arrives as it was sent, or refuses (issue 16): ``dict`` (str
keys), ``list``, ``str``, ``int``, finite ``float``, ``bool`` and ``None`` pass; a
``tuple`` arrives as a ``list`` (as with :func:`json.dumps`); a ``str``/``int`` subclass
(``StrEnum``, ``IntEnum``) arrives as the plain ``str``/``int`` it equals. Everything else
(``datetime``, ``date``, ``UUID``, ``Decimal``, dataclasses, plain ``Enum``, sets, NaN and
infinities) raises :class:`~redrelay.EncodeError` naming where it is and how to convert
it, because orjson would otherwise turn it silently into a string, a dict or ``null``.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from datetime import date, time
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
    """orjson over plain JSON values: what arrives is what was sent (see the module doc)."""

    name = "json"
    kind = b"j"

    def dumps(self, value: Any) -> bytes:
        body = _offender(value)
        problem = _not_json(body, "body")
        if problem is not None:
            raise EncodeError(self.name, body, TypeError(problem))
        try:
            return orjson.dumps(value)
        except TypeError as exc:
            raise EncodeError(self.name, body, exc) from exc

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


_PLAIN = (str, int, bool, type(None))


def _not_json(value: Any, where: str) -> str | None:
    """Why ``value`` would not arrive as sent (None: it would); ``where`` names its path."""
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            problem = _not_json(item, f"{where}[{key!r}]")
            if problem is not None:
                return problem
        return None
    if kind is list or kind is tuple:
        for i, item in enumerate(value):
            problem = _not_json(item, f"{where}[{i}]")
            if problem is not None:
                return problem
        return None
    if kind is float:
        if math.isfinite(value):
            return None
        return (
            f"{where} is {value!r}, which JSON cannot carry (it would arrive as None); "
            "send None or a string such as 'nan' instead"
        )
    if kind in _PLAIN:
        return None
    return _convert_hint(value, where)


def _convert_hint(value: Any, where: str) -> str | None:
    name = type(value).__name__
    if isinstance(value, enum.Enum) and not isinstance(value, (str, int)):
        return (
            f"{where} is the Enum member {value!r}; send {where}.value and rebuild it "
            f"with {name}(value)"
        )
    if isinstance(value, (str, int)):
        return None  # StrEnum, IntEnum and other subclasses: equal to the plain value
    if isinstance(value, float):
        return _not_json(float(value), where)
    if isinstance(value, (date, time)):
        return (
            f"{where} is a {name}; send {where}.isoformat() and parse it back with "
            f"{name}.fromisoformat(value)"
        )
    if dataclasses.is_dataclass(value):
        return (
            f"{where} is the dataclass {name}; send dataclasses.asdict({where}) and "
            f"rebuild it with {name}(**value)"
        )
    if isinstance(value, dict):
        return _not_json(dict(value), where)
    if isinstance(value, (list, tuple)):
        return _not_json(list(value), where)
    return (
        f"{where} is a {name}, which is not a JSON value; convert it to str, int, "
        "float, bool, None, list or dict (say str(value) for a UUID or Decimal)"
    )


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
