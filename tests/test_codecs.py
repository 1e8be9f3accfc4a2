"""The JSON codec delivers what was sent, or refuses it saying how to convert (issue 16)."""

from __future__ import annotations

import dataclasses
import enum
import math
import uuid
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from redrelay import EncodeError, Relay
from redrelay.codecs import JsonCodec


class Colour(enum.Enum):
    RED = "red"


class Size(enum.IntEnum):
    BIG = 3


@dataclasses.dataclass
class Order:
    id: int


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (math.nan, "body is nan"),
        ({"x": [1, math.inf]}, "body['x'][1] is inf"),
        (-math.inf, "body is -inf"),
        (datetime(2025, 1, 1, tzinfo=timezone.utc), "datetime.fromisoformat"),
        ({"on": date(2025, 1, 1)}, "body['on'].isoformat()"),
        (Colour.RED, "Colour(value)"),
        (Order(1), "dataclasses.asdict(body)"),
        (uuid.UUID(int=1), "str(value)"),
        (Decimal("1.5"), "is a Decimal"),
        ({1, 2}, "is a set"),
    ],
)
def test_refused_with_where_and_how(value: Any, says: str) -> None:
    with pytest.raises(EncodeError) as info:
        JsonCodec().dumps({"b": value})
    assert says in str(info.value)
    assert "Nothing was written" in str(info.value)
    assert isinstance(info.value, TypeError)


def test_documented_conversions_round_trip() -> None:
    codec = JsonCodec()
    sent = {"t": (1, 2), "e": Size.BIG, "f": 1.5, "n": None, "nested": [{"a": True}]}
    got = codec.loads(codec.dumps({"b": sent}))["b"]
    assert got == {"t": [1, 2], "e": 3, "f": 1.5, "n": None, "nested": [{"a": True}]}
    assert type(got["e"]) is int


def test_a_refused_put_writes_nothing(relay: Relay) -> None:
    q = relay.queue("codec")
    with pytest.raises(EncodeError, match="nan"):
        q.put({"price": math.nan})
    with pytest.raises(EncodeError, match="datetime"):
        relay.channel("codec").publish(datetime.now(timezone.utc))
    assert q.stats().ready == 0
