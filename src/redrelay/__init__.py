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
from .errors import Cancelled as Cancelled
from .errors import ConfigurationError as ConfigurationError
from .errors import DecodeError as DecodeError
from .errors import DrainFailed as DrainFailed
from .errors import DrainTimeout as DrainTimeout
from .errors import DurabilityNotConfirmed as DurabilityNotConfirmed
from .errors import EncodeError as EncodeError
from .errors import InvalidName as InvalidName
from .errors import JobCancelled as JobCancelled
from .errors import JobFailed as JobFailed
from .errors import MessageError as MessageError
from .errors import MessageNotFound as MessageNotFound
from .errors import MessageTooLarge as MessageTooLarge
from .errors import NotFound as NotFound
from .errors import QueueNotFound as QueueNotFound
from .errors import RedrelayError as RedrelayError
from .errors import Reject as Reject
from .errors import ResultNotFound as ResultNotFound
from .errors import ResultTimeout as ResultTimeout
from .errors import Retry as Retry
from .errors import SignatureError as SignatureError
from .errors import TimeLimitExceeded as TimeLimitExceeded
from .failures import Failure as Failure
from .message import Message as Message
from .message import MessageId as MessageId
from .protocol.results import Status as Status
from .protocol.schedule import ScheduleSpec as ScheduleSpec
from .protocol.transitions import Backoff as Backoff
from .queue import DeadLetter as DeadLetter
from .queue import Queue as Queue
from .queue import QueueStats as QueueStats
from .relay import Relay as Relay
from .schedules import ScheduleInfo as ScheduleInfo
from .tasks import Task as Task
from .tasks import TaskHandle as TaskHandle
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
    "Cancelled",
    "Channel",
    "ConfigurationError",
    "DeadLetter",
    "DecodeError",
    "DrainFailed",
    "DrainTimeout",
    "DurabilityNotConfirmed",
    "EncodeError",
    "Failure",
    "GapReport",
    "GroupStats",
    "InvalidName",
    "JobCancelled",
    "JobFailed",
    "Message",
    "MessageError",
    "MessageId",
    "MessageNotFound",
    "MessageTooLarge",
    "NotFound",
    "Queue",
    "QueueNotFound",
    "QueueStats",
    "RedrelayError",
    "Reject",
    "Relay",
    "ResultNotFound",
    "ResultTimeout",
    "Retry",
    "ScheduleInfo",
    "ScheduleSpec",
    "SignatureError",
    "Status",
    "Task",
    "TaskHandle",
    "TimeLimitExceeded",
    "Topic",
    "TopicStats",
]
