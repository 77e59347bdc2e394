"""Why a run stops early, as an enum; the first reason wins.

    INTERRUPTED        Ctrl-C (or the caller's interrupt event, or a cancellation): requests in
                       flight finish, what is done is written, the rest is left for the rerun
    FATAL              a status no request gets past (401, 403, 404): the run raises it
    REFUSED            the first answers were all the same refusal (an unknown model): the run
                       raises a UsageError naming it
    CIRCUIT_OPEN       only 429/5xx for a sustained period: the rest become `not_attempted` rows
    BUDGET_EXHAUSTED   the next worst case no longer fits: the rest become `budget_exhausted` rows

The first two kinds *halt*: nothing more is read or sent. The last two *drain*: every remaining
row is written as a failure row without a request, so the output accounts for the whole input.
"""

from __future__ import annotations

import enum


class StopReason(enum.Enum):
    INTERRUPTED = "interrupted"
    FATAL = "fatal"
    REFUSED = "refused"
    CIRCUIT_OPEN = "circuit_open"
    BUDGET_EXHAUSTED = "budget_exhausted"


_HALTING = frozenset({StopReason.INTERRUPTED, StopReason.FATAL, StopReason.REFUSED})


class Stop:
    def __init__(self) -> None:
        self.reason: StopReason | None = None
        self.message = ""

    def set(self, reason: StopReason, message: str) -> bool:
        """Record `reason` unless one was recorded before; returns whether this one won."""
        if self.reason is not None:
            return False
        self.reason, self.message = reason, message
        return True

    @property
    def halts(self) -> bool:
        """Nothing more is read or sent."""
        return self.reason in _HALTING

    @property
    def drain_reason(self) -> str:
        """The failure reason of a row that reaches a stopped run."""
        return "budget_exhausted" if self.reason is StopReason.BUDGET_EXHAUSTED else "not_attempted"


class RefusalWatch:
    """Stops a run whose first answers are all the same refusal (HTTP 400 "Invalid model name"):
    the rest would only repeat it, one paid round trip each."""

    def __init__(self, first: int = 5) -> None:
        self.first = first
        self.answered = 0
        self.messages: set[str] = set()

    def success(self) -> None:
        self.answered += 1

    def refused(self, message: str) -> bool:
        """Count a refusal; True when the first `first` answers were all this same refusal."""
        if self.answered >= self.first:
            return False
        self.answered += 1
        self.messages.add(message)
        return self.answered >= self.first and len(self.messages) == 1
