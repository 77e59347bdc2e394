"""What the run asks about money: reserve, settle, and the explanation rate that spends the budget.

The planner picks the explanation rate that spends the budget (DESIGN.md):
`r = clip((B_left - n_left * c_L) / (n_left * (c_R - c_L)), 0, 1)`, with c_L and c_R the running
mean costs of a label-only and a label+rationale request, re-estimated as usage comes in.
"""

from __future__ import annotations

from dataclasses import dataclass

from labelmill._exceptions import BudgetExhausted
from labelmill.engine.money._ledger import Ledger, Reservation
from labelmill.engine.money._prices import Prices, format_usd
from labelmill.engine.money._summary import Money, VariantSpend


class Planner:
    """The explanation rate that spends what is left, from running mean costs per variant."""

    def __init__(self, prior_label: float, prior_rationale: float) -> None:
        self._sums = {"label": prior_label, "rationale": prior_rationale}
        self._counts = {"label": 1, "rationale": 1}

    def observe(self, rationale: bool, cost: float) -> None:
        name = "rationale" if rationale else "label"
        self._sums[name] += cost
        self._counts[name] += 1

    @property
    def label_cost(self) -> float:
        return self._sums["label"] / self._counts["label"]

    @property
    def rationale_cost(self) -> float:
        return max(self._sums["rationale"] / self._counts["rationale"], self.label_cost)

    def rate(self, money_left: float, examples_left: int) -> float:
        if examples_left <= 0:
            return 0.0
        extra = self.rationale_cost - self.label_cost
        if extra <= 0:
            return 1.0
        return min(1.0, max(0.0, (money_left - examples_left * self.label_cost) / (examples_left * extra)))


@dataclass(slots=True)
class Commitment:
    name: str  # "label" or "rationale"
    open: bool = True


# Priors for the planner before any usage is seen: about four characters a token, and typical
# completion lengths of a label and of a one-sentence rationale.
PRIOR_LABEL_COMPLETION = 8
PRIOR_RATIONALE_COMPLETION = 45


class Spending:
    """What the pipeline asks about money: reserve, settle, and the rate to explain at."""

    def __init__(self, prices: Prices | None, budget: float | None, plan: bool) -> None:
        self.prices = prices
        self.ledger = Ledger(budget) if budget is not None else None
        self.planner: Planner | None = None
        self.plan = plan
        self.paid = 0.0
        self.cache_saved = 0.0  # dollars cached prompt prefixes took off the full price
        self.outstanding = {"label": 0, "rationale": 0}  # decided requests not yet answered
        self.worst_label = 0.0  # the largest worst case of a label-only request seen
        self.per_variant = {"label": [0, 0.0], "rationale": [0, 0.0]}  # requests, dollars

    def set_priors(self, label_prompt_chars: int, rationale_prompt_chars: int) -> None:
        if self.plan and self.planner is None and self.prices is not None:
            self.planner = Planner(
                self.prices.cost(label_prompt_chars / 4, PRIOR_LABEL_COMPLETION),
                self.prices.cost(rationale_prompt_chars / 4, PRIOR_RATIONALE_COMPLETION),
            )

    def rate(self, examples_left: int) -> float:
        """The explanation rate that spends what is left over the examples not yet decided.

        What is left excludes what decided-but-unanswered requests are expected to cost, so a
        burst of decisions made before any money moves cannot plan the same dollars twice.
        """
        if self.planner is None or self.ledger is None:
            return 1.0
        planner = self.planner
        outstanding = (
            self.outstanding["rationale"] * planner.rationale_cost + self.outstanding["label"] * planner.label_cost
        )
        # Keep room for the worst case of the last label requests: the ledger reserves worst cases,
        # so a plan that counted on every last cent would end in budget_exhausted rows.
        margin = 2 * self.worst_label
        return planner.rate(self.ledger.budget - self.ledger.spent - outstanding - margin, examples_left)

    def commit(self, rationale: bool) -> Commitment:
        """Count a decided request until it is answered or fails (its expected cost is
        re-estimated as costs come in)."""
        commitment = Commitment("rationale" if rationale else "label")
        self.outstanding[commitment.name] += 1
        return commitment

    def uncommit(self, commitment: Commitment | None) -> None:
        if commitment is not None and commitment.open:
            commitment.open = False
            self.outstanding[commitment.name] -= 1

    def worst_case(self, prompt_upper_bound: int, max_tokens: int, rationale: bool) -> float:
        worst = 0.0 if self.prices is None else self.prices.cost(prompt_upper_bound, max_tokens)
        if not rationale:
            self.worst_label = max(self.worst_label, worst)
        return worst

    async def reserve(self, worst_case: float) -> Reservation | None:
        """A reservation (None without a budget); raises BudgetExhausted when it can never fit."""
        if self.ledger is None:
            return None
        reservation = await self.ledger.reserve(worst_case)
        if reservation is None:
            needed, left, budget = format_usd(worst_case, self.ledger.left, self.ledger.budget)
            raise BudgetExhausted(f"{needed} needed for the next request's worst case, {left} left of {budget}")
        return reservation

    def answered(
        self,
        reservation: Reservation | None,
        cost: float | None,
        rationale: bool,
        commitment: Commitment | None,
        cache_saved: float = 0.0,
    ) -> float:
        """Settle an answered request; returns the dollars it counts as (unknown usage: its worst
        case). `cache_saved`: what its cached prompt prefix took off the full price."""
        self.uncommit(commitment)  # its cost is in `spent` from now on: count it once
        self.cache_saved += cache_saved
        spent = cost or 0.0
        if reservation is not None and self.ledger is not None:
            spent = self.ledger.settle(reservation, cost)
        self.paid += spent
        variant = self.per_variant["rationale" if rationale else "label"]
        variant[0] += 1
        variant[1] += spent
        if self.planner is not None:
            self.planner.observe(rationale, spent)
        return spent

    def failed(self, reservation: Reservation | None, maybe_billed: bool) -> None:
        """An attempt without an answer: a timeout or a lost connection may have been billed."""
        if reservation is None or self.ledger is None:
            return
        if maybe_billed:
            self.paid += self.ledger.settle(reservation, None)
        else:
            self.ledger.release(reservation)

    def money(self, examples: int) -> Money:
        """What this run paid, over `examples` examples."""
        variants = {name: VariantSpend(int(n), d) for name, (n, d) in self.per_variant.items()}
        money = Money(self.paid, examples, variants, cache_saved=self.cache_saved)
        if self.ledger is not None:
            money.budget, money.spent, money.reserved_peak = (
                self.ledger.budget,
                self.ledger.spent,
                self.ledger.reserved_peak,
            )
        return money
