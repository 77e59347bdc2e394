"""What a run returns: a status (an enum, not an exit code: those belong to the CLI), the
summary the CLI prints as JSON, and notes for the user."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from labelmill.engine.money import Money, Spending
from labelmill.engine.run._stats import RunStats
from labelmill.engine.run._stop import Stop, StopReason


class RunStatus(enum.Enum):
    COMPLETE = "complete"  # every row is a record
    PARTIAL = "partial"  # every row is a record or a failure row, and some are failures
    INTERRUPTED = "interrupted"  # stopped early: the rest is left for the rerun


@dataclass(slots=True)
class RunResult:
    status: RunStatus
    summary: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    money: Money | None = None  # typed; `summary["money"]` is its rendering

    def with_money(self, money: Money) -> RunResult:
        """The same result with `money` in place of its own (the summary's money and dollars too)."""
        summary = dict(self.summary)
        summary["money"] = money.to_dict()
        if summary.get("dollars") is not None:
            summary["dollars"] = round(money.paid, 8)
        return RunResult(self.status, summary, self.notes, money)

    @property
    def complete(self) -> bool:
        return self.status is RunStatus.COMPLETE


def build_result(stats: RunStats, spending: Spending, stop: Stop, source: str, unpriced: str | None) -> RunResult:
    """The summary, status and notes of a finished (or stopped) run. `unpriced` says why the
    cost is unknown (None: it is known)."""
    summary = stats.summary()
    notes = []
    if stop.reason is StopReason.INTERRUPTED:
        status = RunStatus.INTERRUPTED
    elif stop.reason is not None or stats.failures:
        status = RunStatus.PARTIAL
        if stop.message:
            notes.append(stop.message)
    else:
        status = RunStatus.COMPLETE
    if stats.done == 0 and stop.reason is None:
        notes.append(f"the input {source} has no rows: nothing to annotate")
    summary["status"] = status.value
    summary["complete"] = status is not RunStatus.INTERRUPTED
    money = spending.money(stats.done)
    if unpriced is not None and stats.requests:
        summary["dollars"] = None
        money.unknown_because = unpriced
        notes.append(f"the cost is unknown: {unpriced}")
    exhausted = stats.failure_reasons.get("budget_exhausted", 0)
    if exhausted:
        label = spending.per_variant["label"]
        per_label = label[1] / label[0] if label[0] else None
        more = round(exhausted * per_label, 6) if per_label is not None else None
        money.budget_exhausted, money.more_needed_usd = exhausted, more
        notes.append(f"{exhausted} examples left unannotated; about ${more} more would label them")
    summary["money"] = money.to_dict()
    return RunResult(status, summary, notes, money)
