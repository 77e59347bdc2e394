"""The one exception tree of labelmill.

    LabelmillError                 base of everything labelmill raises on purpose
    ├── UsageError                 a bad option or argument: the CLI exits 2
    ├── StoreError                 the response store cannot be opened or read
    │   └── StoreCorruptError      an entry does not parse or does not hash to its key
    ├── ShardFormatError           a shard line is not a valid record (says file:line)
    ├── InputError                 the input corpus cannot be read at all
    ├── TaskError                  a task name or task file is invalid
    ├── BudgetExhausted            a request's worst case no longer fits what is left of the budget
    └── TeacherError               the teacher API failed
        ├── TeacherStatusError     an HTTP status that is never retried (400/401/403/404/...)
        │   └── RequestRejected    400/413/422: this request only (too long, bad content); the run goes on
        ├── RetryableError         408/409/429/5xx, a timeout, a dropped connection: retried, raised
        │                          when the retries are spent
        └── CircuitOpenError       only 429/5xx for a sustained period: the run stops

A run turns BudgetExhausted, RequestRejected and RetryableError into failure rows; the others end it.

Errors carry a message that says what to do; the CLI prints it without a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping


class LabelmillError(Exception):
    """Base class of every error labelmill raises on purpose."""


class UsageError(LabelmillError):
    """A bad option or argument."""


class StoreError(LabelmillError):
    """The response store cannot be opened or read."""


class StoreCorruptError(StoreError):
    """A store entry does not parse or does not hash to its key."""


class ShardFormatError(LabelmillError):
    """A shard line is not a valid record; the message starts with `file:line:`."""

    def __init__(self, path: str, line: int, what: str) -> None:
        super().__init__(f"{path}:{line}: {what}")
        self.path = path
        self.line = line
        self.what = what


class InputError(LabelmillError):
    """The input corpus cannot be read."""


class TaskError(LabelmillError):
    """A task name or task file is invalid."""


class BudgetExhausted(LabelmillError):
    """This request's worst case cannot fit in what is left of the budget."""


class TeacherError(LabelmillError):
    """The teacher API failed."""


class TeacherStatusError(TeacherError):
    """An HTTP status that is not retried (400, 401, 403, 404, ...), with the server's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"teacher answered HTTP {status}: {message}")
        self.status = status
        self.server_message = message


class CircuitOpenError(TeacherError):
    """The teacher answered only 429/5xx for a sustained period."""


class RequestRejected(TeacherStatusError):
    """The server rejected this request (400/413/422), e.g. too long for the model's context."""


class RetryableError(TeacherError):
    """An attempt that may succeed if repeated: 408/409/429/5xx, a timeout, a dropped connection."""

    def __init__(
        self,
        kind: str,
        message: str,
        status: int | None = None,
        retry_after: float | None = None,
        headers: Mapping[str, str] | None = None,
    ):
        super().__init__(message)
        self.kind = kind  # "status", "timeout", "connection"
        self.status = status
        self.retry_after = retry_after  # seconds the server asked for, from any header it sends
        self.headers = headers or {}  # the answer's headers (a 429's x-ratelimit-* teach the limits)
