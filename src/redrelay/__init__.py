"""redrelay: Redis as the message broker of Flask and Django apps.

Layout: ``protocol/`` decides (keys, Lua, entry format, rules) and never does I/O;
``io/`` talks to Redis; ``queue``/``channel``/``topic`` are the primitives; ``worker/`` runs
handlers; ``relay`` ties them together; ``cli``, ``embedded``, ``testing`` and
``contrib/`` sit on top.
"""

from .channel import Channel as Channel
from .channel import GapReport as GapReport
from .errors import BrokerError as BrokerError
from .errors import BrokerFull as BrokerFull
from .errors import BrokerLoading as BrokerLoading
from .errors import BrokerUnavailable as BrokerUnavailable
from .errors import ConfigurationError as ConfigurationError
from .errors import DecodeError as DecodeError
from .errors import DrainFailed as DrainFailed
from .errors import DrainTimeout as DrainTimeout
from .errors import DurabilityNotConfirmed as DurabilityNotConfirmed
from .errors import EncodeError as EncodeError
from .errors import InvalidName as InvalidName
from .errors import MessageError as MessageError
from .errors import MessageNotFound as MessageNotFound
from .errors import MessageTooLarge as MessageTooLarge
from .errors import NotFound as NotFound
from .errors import QueueNotFound as QueueNotFound
from .errors import RedrelayError as RedrelayError
from .errors import Reject as Reject
from .errors import Retry as Retry
from .errors import SignatureError as SignatureError
from .errors import TimeLimitExceeded as TimeLimitExceeded
from .message import Message as Message
from .protocol.schedule import ScheduleSpec as ScheduleSpec
from .protocol.transitions import Backoff as Backoff
from .queue import DeadLetter as DeadLetter
from .queue import Queue as Queue
from .queue import QueueStats as QueueStats
from .relay import Relay as Relay
from .schedules import ScheduleInfo as ScheduleInfo
from .topic import GroupStats as GroupStats
from .topic import Topic as Topic
from .topic import TopicStats as TopicStats

__version__ = "0.1.0"

__all__ = [
    "Backoff",
    "BrokerError",
    "BrokerFull",
    "BrokerLoading",
    "BrokerUnavailable",
    "Channel",
    "ConfigurationError",
    "DeadLetter",
    "DecodeError",
    "DrainFailed",
    "DrainTimeout",
    "DurabilityNotConfirmed",
    "EncodeError",
    "GapReport",
    "GroupStats",
    "InvalidName",
    "Message",
    "MessageError",
    "MessageNotFound",
    "MessageTooLarge",
    "NotFound",
    "Queue",
    "QueueNotFound",
    "QueueStats",
    "RedrelayError",
    "Reject",
    "Relay",
    "Retry",
    "ScheduleInfo",
    "ScheduleSpec",
    "SignatureError",
    "TimeLimitExceeded",
    "Topic",
    "TopicStats",
]
