"""The one exception tree of labelmill.

    LabelmillError                 base of everything labelmill raises on purpose
    ├── UsageError                 a bad option or argument: the CLI exits 2
    ├── StoreError                 the response store cannot be opened or read
    │   └── StoreCorruptError      an entry does not parse or does not hash to its key
    ├── ShardFormatError           a shard line is not a valid record (says file:line)
    ├── InputError                 the input corpus cannot be read at all
    ├── TaskError                  a task name or task file is invalid
    └── TeacherError               the teacher API failed in a way retries cannot fix
        ├── TeacherStatusError     an HTTP status that must not be retried (400/401/403/404/...)
        └── CircuitOpenError       only 429/5xx for a sustained period: the run stops

Errors carry a message that says what to do; the CLI prints it without a traceback.
"""

from __future__ import annotations


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


class TeacherError(LabelmillError):
    """The teacher API failed in a way retries cannot fix."""


class TeacherStatusError(TeacherError):
    """An HTTP status that is not retried (400, 401, 403, 404, ...), with the server's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"teacher answered HTTP {status}: {message}")
        self.status = status
        self.server_message = message


class CircuitOpenError(TeacherError):
    """The teacher answered only 429/5xx for a sustained period."""
