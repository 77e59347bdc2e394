"""`Money`: what a run paid and how it stands against its budget, typed.

The summary's `money` is rendered from it (`to_dict`), and everything that adds to a run's money
does so here, not by patching a dict: the batch route adds what its batches cost (`with_batches`),
the two passes of `--select uncertainty` add up (`then`). So `paid` is always everything paid.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(slots=True)
class VariantSpend:
    requests: int = 0
    dollars: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        per_request = round(self.dollars / self.requests, 10) if self.requests else None
        return {"requests": self.requests, "dollars": round(self.dollars, 8), "dollars_per_request": per_request}


@dataclass(slots=True)
class Money:
    paid: float  # every dollar this invocation paid, online and in batches
    examples: int  # the examples the run accounted for (the divisor of dollars_per_example)
    per_variant: dict[str, VariantSpend] = field(default_factory=dict)  # online requests by variant
    budget: float | None = None
    spent: float | None = None  # settled against the budget (None: no budget and no batches)
    reserved_peak: float | None = None
    paid_batch: float | None = None  # of `paid`, what batches cost (the batch route only)
    cache_saved: float = 0.0  # what cached prompt prefixes took off the full price
    unknown_because: str | None = None  # set: some price is unknown, so `paid` is not reported
    budget_exhausted: int = 0  # rows left unannotated because the budget ran out...
    more_needed_usd: float | None = None  # ...and about what they would have cost (None: unknown)

    @property
    def dollars_per_example(self) -> float | None:
        if self.unknown_because is not None or not self.examples:
            return None
        return self.paid / self.examples

    def with_batches(self, spent: float, budget: float | None, cache_saved: float = 0.0) -> Money:
        """The money of the batch route's final pass (run on what the batches left of `budget`)
        plus what its batches cost (and what cached prefixes saved them)."""
        return replace(self, paid=self.paid + spent, paid_batch=(self.paid_batch or 0.0) + spent,
                       spent=(self.spent or 0.0) + spent, budget=budget,
                       cache_saved=self.cache_saved + cache_saved)  # fmt: skip

    def then(self, second: Money) -> Money:
        """Two passes over one corpus (the second's examples are the run's), against one budget."""
        variants = {name: VariantSpend(spend.requests, spend.dollars) for name, spend in self.per_variant.items()}
        for name, spend in second.per_variant.items():
            total = variants.setdefault(name, VariantSpend())
            total.requests, total.dollars = total.requests + spend.requests, total.dollars + spend.dollars
        return replace(
            second, paid=self.paid + second.paid, per_variant=variants, budget=self.budget,
            spent=None if self.spent is None and second.spent is None else (self.spent or 0.0) + (second.spent or 0.0),
            reserved_peak=_most(self.reserved_peak, second.reserved_peak),
            paid_batch=None if self.paid_batch is None and second.paid_batch is None
            else (self.paid_batch or 0.0) + (second.paid_batch or 0.0),
            unknown_because=self.unknown_because or second.unknown_because,
            cache_saved=self.cache_saved + second.cache_saved,
            budget_exhausted=self.budget_exhausted + second.budget_exhausted,
            more_needed_usd=None if self.more_needed_usd is None and second.more_needed_usd is None
            else (self.more_needed_usd or 0.0) + (second.more_needed_usd or 0.0),
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        per_example = self.dollars_per_example
        out: dict[str, Any] = {
            "paid": None if self.unknown_because is not None else round(self.paid, 8),
            "dollars_per_example": None if per_example is None else round(per_example, 10),
            "per_variant": {name: spend.to_dict() for name, spend in self.per_variant.items()},
            "cache_saved_usd": round(self.cache_saved, 8),
        }
        if self.budget is not None:
            out.update(budget=self.budget, reserved_peak=round(self.reserved_peak or 0.0, 8))
        if self.spent is not None:
            out["spent"] = round(self.spent, 8)
        if self.paid_batch is not None:
            out["paid_batch"] = round(self.paid_batch, 8)
        if self.unknown_because is not None:
            out["unknown_because"] = self.unknown_because
        if self.budget_exhausted:
            out["more_needed_usd"] = self.more_needed_usd
        return out


def _most(a: float | None, b: float | None) -> float | None:
    return None if a is None and b is None else max(a or 0.0, b or 0.0)
