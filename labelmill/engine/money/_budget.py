"""Money: prices, the ledger that never lets spend exceed the budget, and the explanation planner.

The ledger's invariant is `spent + reserved <= budget` at every instant. Before a request is sent
its worst case is reserved (prompt-token upper bound x input price + max_tokens x output price);
the answer settles it against `usage`. An answer without `usage`, and an attempt that timed out or
lost its connection after sending (the provider may have billed it), keep the whole reservation as
spent. A 429 or 5xx answer was not billed and releases it.

The planner picks the explanation rate that spends the budget (DESIGN.md):
`r = clip((B_left - n_left * c_L) / (n_left * (c_R - c_L)), 0, 1)`, with c_L and c_R the running
mean costs of a label-only and a label+rationale request, re-estimated as usage comes in.
"""

from __future__ import annotations

import asyncio
import json
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from labelmill._exceptions import UsageError


@dataclass(frozen=True, slots=True)
class Prices:
    input_per_m: float
    output_per_m: float

    def cost(self, prompt_tokens: int | float, completion_tokens: int | float) -> float:
        return (prompt_tokens * self.input_per_m + completion_tokens * self.output_per_m) / 1e6


def price_table() -> dict[str, Any]:
    """The built-in table (a data file with its date)."""
    text = resources.files("labelmill.engine").joinpath("data/prices.json").read_text(encoding="utf-8")
    table: dict[str, Any] = json.loads(text)
    return table


def resolve_prices(
    model: str, price_in: float | None, price_out: float | None, prices_file: str | Path | None = None
) -> Prices | None:
    """Flags win, then a TOML override file (`[models."name"] input = .. output = ..`), then the table."""
    models: dict[str, Any] = dict(price_table()["models"])
    if prices_file is not None:
        try:
            data = tomllib.loads(Path(prices_file).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise UsageError(f"cannot read prices from {prices_file}: {exc}") from exc
        models.update(data.get("models", {}))
    listed = models.get(model)
    if listed is None:
        # dated snapshots (gpt-4o-mini-2024-07-18) cost what their family costs
        family = max((name for name in models if model.startswith(name + "-")), key=len, default=None)
        listed = models.get(family) if family else None
    price_in = price_in if price_in is not None else (listed or {}).get("input")
    price_out = price_out if price_out is not None else (listed or {}).get("output")
    if price_in is None or price_out is None:
        return None
    return Prices(float(price_in), float(price_out))


@dataclass(slots=True)
class Reservation:
    amount: float
    open: bool = True


class Ledger:
    """Reservations and spend against a budget; `spent + reserved <= budget` always holds."""

    def __init__(self, budget: float) -> None:
        if budget < 0:
            raise UsageError("the budget cannot be negative")
        self.budget = budget
        self.spent = 0.0
        self.reserved = 0.0
        self.reserved_peak = 0.0
        self._changed = asyncio.Event()

    @property
    def left(self) -> float:
        return self.budget - self.spent - self.reserved

    def try_reserve(self, amount: float) -> Reservation | None:
        if self.spent + self.reserved + amount > self.budget:
            return None
        self.reserved += amount
        self.reserved_peak = max(self.reserved_peak, self.reserved)
        return Reservation(amount)

    async def reserve(self, amount: float) -> Reservation | None:
        """Reserve `amount`, waiting while open reservations may still free room; None if it cannot fit."""
        while (reservation := self.try_reserve(amount)) is None:
            if self.reserved <= 0 or self.spent + amount > self.budget:
                return None
            self._changed.clear()
            await self._changed.wait()
        return reservation

    def settle(self, reservation: Reservation, actual: float | None) -> float:
        """Turn a reservation into spend: `actual` (capped at the reservation), or all of it if unknown."""
        if not reservation.open:
            return 0.0
        cost = reservation.amount if actual is None else min(actual, reservation.amount)
        reservation.open = False
        self.reserved -= reservation.amount
        self.spent += cost
        self._changed.set()
        return cost

    def release(self, reservation: Reservation) -> None:
        """Nothing was billed (a 429 or 5xx answer): give the room back."""
        if reservation.open:
            reservation.open = False
            self.reserved -= reservation.amount
            self._changed.set()


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


class BudgetExhausted(Exception):
    """This request's worst case cannot fit in what is left of the budget."""


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
            raise BudgetExhausted(f"${worst_case:.6f} needed, ${self.ledger.left:.6f} left of ${self.ledger.budget}")
        return reservation

    def answered(
        self, reservation: Reservation | None, cost: float | None, rationale: bool, commitment: Commitment | None
    ) -> float:
        """Settle an answered request; returns the dollars it counts as (unknown usage: its worst case)."""
        self.uncommit(commitment)  # its cost is in `spent` from now on: count it once
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

    def summary(self, examples: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "paid": round(self.paid, 8),
            "dollars_per_example": round(self.paid / examples, 10) if examples else None,
            "per_variant": {
                name: {"requests": n, "dollars": round(d, 8), "dollars_per_request": round(d / n, 10) if n else None}
                for name, (n, d) in self.per_variant.items()
            },
        }
        if self.ledger is not None:
            out.update(
                budget=self.ledger.budget,
                spent=round(self.ledger.spent, 8),
                reserved_peak=round(self.ledger.reserved_peak, 8),
            )
        return out
