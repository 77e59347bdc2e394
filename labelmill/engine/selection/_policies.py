"""One small object per selection policy. Each answers two questions about an example:

- which variant does it get? `variants(id)` lists the acceptable ones, preferred first (a stored
  answer of any of them will do, so nothing paid for is thrown away); `decide(id)` picks the one
  to buy, just before it is sent, with what is known of costs by then;
- what happens when the money runs out? `fallback(variant)` names a cheaper variant to try, or
  None: the example becomes a `budget_exhausted` row and the run drains.

    FixedRate      a pure function of (id, seed, rate); a rerun asks for the same subset
    BudgetPlan     the rate that spends the budget, re-planned as real costs come in
    Uncertainty    explain the ids the label pass was least sure of (its second pass)
"""

from __future__ import annotations

from typing import Protocol

from labelmill.engine.money import Commitment, Spending
from labelmill.engine.selection._score import selection_score, wants_rationale
from labelmill.engine.tasks import VARIANT_LABEL, VARIANT_RATIONALE

_BOTH = (VARIANT_RATIONALE, VARIANT_LABEL)


class Selection(Protocol):
    def variants(self, example_id: str) -> tuple[str, ...]: ...

    def decide(self, example_id: str) -> tuple[str, Commitment | None]: ...

    def fallback(self, variant: str) -> str | None: ...


class FixedRate:
    def __init__(self, rate: float, seed: int) -> None:
        self.rate = rate
        self.seed = seed

    def variants(self, example_id: str) -> tuple[str, ...]:
        return (VARIANT_RATIONALE,) if wants_rationale(example_id, self.seed, self.rate) else (VARIANT_LABEL,)

    def decide(self, example_id: str) -> tuple[str, Commitment | None]:
        return self.variants(example_id)[0], None

    def fallback(self, variant: str) -> str | None:
        return None


class BudgetPlan:
    """Explain an example if its score falls under the planner's current rate when it is sent."""

    def __init__(self, spending: Spending, seed: int) -> None:
        self.spending = spending
        self.seed = seed
        self.total = 0  # rows in the input (counted before the run)
        self.settled_early = 0  # rows that never reach `decide`: stored, failed (reader thread)
        self.decided = 0  # event loop only

    def variants(self, example_id: str) -> tuple[str, ...]:
        return _BOTH

    def decide(self, example_id: str) -> tuple[str, Commitment]:
        left = max(1, self.total - self.settled_early - self.decided)
        self.decided += 1
        explain = selection_score(example_id, self.seed) < self.spending.rate(left)
        return (VARIANT_RATIONALE if explain else VARIANT_LABEL), self.spending.commit(explain)

    def fallback(self, variant: str) -> str | None:
        return VARIANT_LABEL if variant == VARIANT_RATIONALE else None


class Uncertainty:
    """The second pass of `--select uncertainty`: a rationale for `explain`, a label for the rest.
    The first pass is `Uncertainty(frozenset())`: labels for all."""

    def __init__(self, explain: frozenset[str]) -> None:
        self.explain = explain

    def variants(self, example_id: str) -> tuple[str, ...]:
        return _BOTH if example_id in self.explain else (VARIANT_LABEL,)

    def decide(self, example_id: str) -> tuple[str, Commitment | None]:
        return self.variants(example_id)[0], None

    def fallback(self, variant: str) -> str | None:
        return VARIANT_LABEL if variant == VARIANT_RATIONALE else None
