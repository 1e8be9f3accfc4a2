"""The bytes of one queue entry or channel message, and their decoding.

An entry is either a redrelay envelope::

    \\x1frr1:<deliveries>:<failures>:<kind><payload>

or anything else, which is a *raw* body (what ``LPUSH key hello`` or ``PUBLISH ch hello``
from another program sends). The two counters sit in a plain-text header so that the Lua
scripts can bump ``deliveries`` when they recover a dead consumer's messages without knowing
the codec, and a retry rewrites only the header, never the payload.

Between the counters and ``kind`` an entry may carry ``!<priority>:`` and ``@<limit key>:``
(see :mod:`redrelay.protocol.flow`); a priority-0 entry without a key has neither.

``kind`` is ``j`` (JSON) or ``m`` (msgpack), whose payload is the codec's encoding of
``{"i": id, "b": body, "h": headers, "t": enqueued_at_ms, ...}``, or ``r``, a raw body that
was retried or recovered: ``<id>|<raw bytes>``.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from ..codecs import Codec, JsonCodec, MsgpackCodec
from ..errors import DecodeError, SignatureError
from .flow import read_marks

__all__ = [
    "MAGIC",
    "TRACKED",
    "Decoded",
    "decode_entry",
    "encode_entry",
    "entry_tracking",
    "fresh_envelope",
    "is_fresh_json",
    "new_id",
    "rewrite_header",
    "untracked_batch",
]

#: First bytes of every redrelay envelope (0x1f is the ASCII unit separator).
MAGIC = b"\x1frr1:"
_MAGIC_LEN = len(MAGIC)
_RAW_KIND = b"r"[0]
_JSON_KIND = b"j"[0]
_MARKS = (b"!", b"@")
_json_loads = orjson.loads
#: The header of an unsigned JSON entry never delivered: the worker's hot path.
_FRESH_JSON = MAGIC + b"0:0:j"
_FRESH_LEN = len(_FRESH_JSON)

_ID_PREFIX = os.urandom(3).hex()
_counter = itertools.count()


#: The ms and the id's first 17 characters last made (ms + process part): a put in the
#: same millisecond as the previous one only formats the counter.
_ID_HEAD: tuple[int, str] = (-1, "")


def _new_id_prefix() -> None:
    """A forked child draws its own process part (a hook, not a ``getpid()`` per id:
    that system call cost about 1 µs of every ``put`` on a VM)."""
    global _ID_PREFIX, _ID_HEAD
    _ID_PREFIX, _ID_HEAD = os.urandom(3).hex(), (-1, "")


os.register_at_fork(after_in_child=_new_id_prefix)
_codecs: dict[int, Codec] = {}


def new_id() -> str:
    """A unique, time-sortable message id: 11 hex digits of ms, 6 of process, 6 of counter.

    Cheaper than uuid4 on the put path, and sorting ids sorts by creation time. A forked
    child (gunicorn --preload, a forking supervisor) draws a new process part.
    """
    global _ID_HEAD
    ms = time.time_ns() // 1_000_000
    head = _ID_HEAD
    if head[0] != ms:
        head = _ID_HEAD = (ms, f"{ms:011x}{_ID_PREFIX}")
    return f"{head[1]}{next(_counter) & 0xFFFFFF:06x}"


def sign(key: bytes, kind: bytes, payload: bytes) -> bytes:
    """HMAC-SHA256 of the kind byte and the payload (the counters are not covered: they
    change on every retry, and forging them can only dead-letter a message sooner)."""
    return hmac.new(key, kind + payload, hashlib.sha256).digest()


def encode_entry(
    payload: bytes,
    kind: bytes,
    deliveries: int = 0,
    failures: int = 0,
    *,
    key: bytes | None = None,
) -> bytes:
    """Frame an encoded payload as a queue entry; with ``key``, a signed one.

    A signed entry has an upper-case kind, then the 32-byte signature, then the payload.
    """
    if key is not None:
        kind = kind.upper()
        payload = sign(key, kind, payload) + payload
    return b"%s%d:%d:%s%s" % (MAGIC, deliveries, failures, kind, payload)


def rewrite_header(
    entry: bytes, deliveries: int, failures: int, *, raw_id: str = ""
) -> bytes:
    """Return ``entry`` with new counters; a raw entry is wrapped as kind ``r`` with ``raw_id``."""
    if not entry.startswith(MAGIC):
        return encode_entry(raw_id.encode() + b"|" + entry, b"r", deliveries, failures)
    second = entry.index(b":", entry.index(b":", _MAGIC_LEN) + 1)
    return b"%s%d:%d:%s" % (MAGIC, deliveries, failures, entry[second + 1 :])


@dataclass(slots=True)  # not frozen: built once per delivery, and frozen init is slower
class Decoded:
    """An entry taken apart: counters, and either an envelope dict or a raw body."""

    deliveries: int
    failures: int
    envelope: dict[str, Any] | None
    raw: bytes | None
    raw_id: str | None


def _codec_for(kind: int) -> Codec:
    codec = _codecs.get(kind)
    if codec is None:
        if kind == b"j"[0]:
            codec = JsonCodec()
        elif kind == b"m"[0]:
            codec = MsgpackCodec()
        else:
            raise KeyError(kind)
        _codecs[kind] = codec
    return codec


def decode_entry(entry: bytes, key: bytes | None = None) -> Decoded:
    """Decode one entry; raise :class:`DecodeError` (and only that) if it is malformed.

    With ``key``, only entries signed with it decode: an unsigned or forged one raises
    :class:`SignatureError` (a subclass). Without, signatures are not checked.
    """
    if not entry.startswith(MAGIC):
        if key is not None:
            raise SignatureError(
                entry,
                "unsigned raw entry; this relay requires signed envelopes (signing_key=)",
            )
        return Decoded(0, 0, None, entry, None)
    # One split in C instead of two index() calls: this runs once per delivery.
    parts = entry.split(b":", 3)
    try:
        deliveries = int(parts[1])
        failures = int(parts[2])
        rest = parts[3]
        if rest[:1] in _MARKS:  # a priority or a limit key (protocol/flow.py)
            rest = read_marks(rest)[2]
        kind = rest[0]
    except (ValueError, IndexError):
        raise DecodeError(entry, "bad envelope header") from None
    payload = rest[1:]
    kind, payload = _verified(entry, kind, payload, key)
    if kind == _JSON_KIND:
        try:
            envelope = _json_loads(payload)
        except Exception as exc:
            raise DecodeError(entry, f"json payload does not decode: {exc}") from None
        return _checked(entry, deliveries, failures, envelope)
    if kind == _RAW_KIND:
        bar = payload.find(b"|")
        if bar < 0:
            raise DecodeError(entry, "raw entry without an id")
        return Decoded(
            deliveries,
            failures,
            None,
            payload[bar + 1 :],
            payload[:bar].decode("ascii", "replace"),
        )
    try:
        codec = _codec_for(kind)
    except KeyError:
        raise DecodeError(entry, f"unknown codec kind {bytes([kind])!r}") from None
    except Exception as exc:
        raise DecodeError(entry, f"codec unavailable: {exc}") from None
    try:
        envelope = codec.loads(payload)
    except Exception as exc:
        raise DecodeError(
            entry, f"{codec.name} payload does not decode: {exc}"
        ) from None
    return _checked(entry, deliveries, failures, envelope)


def fresh_envelope(entry: bytes) -> dict[str, Any] | None:
    """The checked envelope of an unsigned JSON entry on its first delivery (deliveries
    and failures 0), or None for any other entry: decode that with :func:`decode_entry`.

    The same checks as :func:`decode_entry` (DecodeError likewise), without parsing the
    header or building a :class:`Decoded`: this runs once per message a worker drains.
    Only for relays without a signing key (unsigned entries are refused there).
    """
    if entry[:_FRESH_LEN] == _FRESH_JSON:
        payload = entry[_FRESH_LEN:]
    else:  # a priority or a limit key between the counters and the kind?
        marked = _marked_json(entry)
        if marked is None:
            return None
        payload = marked
    try:
        envelope = _json_loads(payload)
    except Exception as exc:
        raise DecodeError(entry, f"json payload does not decode: {exc}") from None
    if (
        type(envelope) is dict
        and type(envelope.get("i")) is str
        and "b" in envelope
        and envelope.get("h") is None
        and type(envelope.get("t", 0)) in _NUMBER_TYPES
    ):
        return envelope
    _checked(entry, 0, 0, envelope)  # raises, or passes an envelope with headers
    return envelope  # type: ignore[no-any-return]


_NUMBER_TYPES = (int, float)
_FRESH_HEAD = _FRESH_JSON[:-1]


def is_fresh_json(entry: bytes) -> bool:
    """Whether :func:`fresh_envelope` decodes ``entry`` (or raises DecodeError for it)
    rather than returning None: a first delivery of an unsigned JSON entry."""
    return entry[:_FRESH_LEN] == _FRESH_JSON or _marked_json(entry) is not None


def _marked_json(entry: bytes) -> bytes | None:
    """The JSON payload of a fresh unsigned entry with marks (protocol/flow.py), or None."""
    if (
        entry[: _FRESH_LEN - 1] != _FRESH_HEAD
        or entry[_FRESH_LEN - 1 : _FRESH_LEN] not in _MARKS
    ):
        return None
    try:
        rest = read_marks(entry[_FRESH_LEN - 1 :])[2]
    except ValueError:
        return None  # decode_entry() says what is wrong
    return rest[1:] if rest[:1] == b"j" else None


def _verified(
    entry: bytes, kind: int, payload: bytes, key: bytes | None
) -> tuple[int, bytes]:
    """Strip and check the signature of a signed entry (upper-case kind)."""
    if 65 <= kind <= 90:
        signature, payload = payload[:32], payload[32:]
        if key is not None and not hmac.compare_digest(
            signature, sign(key, bytes([kind]), payload)
        ):
            raise SignatureError(
                entry, "bad signature: forged, altered, or signed with another key"
            )
        return kind + 32, payload
    if key is not None:
        raise SignatureError(
            entry,
            "unsigned envelope; this relay requires signed envelopes (signing_key=)",
        )
    return kind, payload


def _checked(entry: bytes, deliveries: int, failures: int, envelope: Any) -> Decoded:
    if (
        type(envelope) is not dict
        or type(envelope.get("i")) is not str
        or "b" not in envelope
    ):
        raise DecodeError(entry, "envelope is not a mapping with an id and a body")
    headers = envelope.get("h")
    if headers is not None and not (
        isinstance(headers, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
    ):
        raise DecodeError(entry, "headers must map str to str")
    stamp = envelope.get("t", 0)
    if type(stamp) is not int and type(stamp) is not float:
        raise DecodeError(entry, "the enqueue time (t) is not a number")
    return Decoded(deliveries, failures, envelope, None, None)


#: The envelope field of a tracked message (``"r": 1``), which ``Queue.encode`` puts right
#: after the id. A worker marks only those running and deletes only their records: the
#: messages of a producer that does not track them cost an outcome and nothing more.
TRACKED = "r"
#: The field as orjson writes it, anywhere in a JSON envelope (the body included).
_ANY_FLAG = b'"r":'
#: The header of a first delivery of an unsigned JSON entry without marks.
_FRESH_HEADER = MAGIC + b"0:0:j"
#: The id of a plain JSON entry, and the flag when it follows the id, in one match.
_JSON_ID = re.compile(rb'\x1frr1:\d+:\d+:j\{"i":"([^"\\]{1,64})"(,"r":1,)?')


def untracked_batch(entries: Sequence[bytes]) -> bool:
    """Whether none of ``entries`` is tracked, for sure, in two passes at C speed: every
    one a first delivery of an unsigned JSON envelope without marks, and none with the
    field anywhere. False means "look at each" (:func:`entry_tracking`), not "tracked"."""
    return _ANY_FLAG not in b"".join(entries) and all(
        map(bytes.startswith, entries, itertools.repeat(_FRESH_HEADER))
    )


def entry_tracking(entry: bytes, tag: str) -> tuple[str | bytes, bool]:
    """The message id of one entry (its tag for a raw or malformed one: those are never
    tracked), and whether it is tracked. One regular expression for a plain JSON entry
    (the id as bytes), a decode for any other."""
    found = _JSON_ID.match(entry)
    if found is not None and (found[2] is not None or _ANY_FLAG not in entry):
        return found[1], found[2] is not None
    try:
        env = fresh_envelope(entry)
        raw_id = None
        if env is None:  # the id only: the worker checks the signature
            decoded = decode_entry(entry)
            env, raw_id = decoded.envelope, decoded.raw_id
    except DecodeError:
        return tag, False
    if env is None:
        return raw_id or tag, False
    return str(env["i"]), env.get(TRACKED) == 1
