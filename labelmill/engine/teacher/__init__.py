"""Talking to the teacher: the HTTP client, retries, client-side limits, and the one priced attempt.

Imports `engine.money` and `engine.tasks`, nothing above it.
"""

from labelmill._exceptions import RequestRejected, RetryableError
from labelmill.engine.teacher._attempt import Completer, PricedTeacher, TeacherCounters
from labelmill.engine.teacher._batch_api import BatchAPI
from labelmill.engine.teacher._client import (
    RETRYABLE_STATUSES,
    BeforeSend,
    Reply,
    TeacherClient,
    parse_duration,
    parse_retry_after,
)
from labelmill.engine.teacher._guards import AdaptiveConcurrency, CircuitBreaker
from labelmill.engine.teacher._limits import RateLimiter, RateLimits
from labelmill.engine.teacher._oneshot import OneShot
from labelmill.engine.teacher._pacing import Calibration, Pacing
from labelmill.engine.teacher._retry import RetryPolicy, call_with_retries
from labelmill.engine.teacher._tokenizers import find_counter

__all__ = [
    "RETRYABLE_STATUSES",
    "AdaptiveConcurrency",
    "BatchAPI",
    "BeforeSend",
    "Calibration",
    "CircuitBreaker",
    "Completer",
    "OneShot",
    "Pacing",
    "PricedTeacher",
    "RateLimiter",
    "RateLimits",
    "Reply",
    "RequestRejected",
    "RetryPolicy",
    "RetryableError",
    "TeacherClient",
    "TeacherCounters",
    "call_with_retries",
    "find_counter",
    "parse_duration",
    "parse_retry_after",
]
