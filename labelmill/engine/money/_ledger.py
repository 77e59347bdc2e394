"""The ledger: reservations and spend against a budget, with `spent + reserved <= budget` always.

Before a request is sent its worst case is reserved (prompt-token upper bound x input price +
max_tokens x output price); the answer settles it against `usage`. An answer without `usage`, and
an attempt that timed out or lost its connection after sending (the provider may have billed it),
keep the whole reservation as spent. A 429 or 5xx answer was not billed and releases it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from labelmill._exceptions import UsageError


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

    def hold(self, amount: float) -> Reservation:
        """Count a reservation made before this ledger existed (a batch an earlier run left in
        flight): it is held even where it exceeds what is left, so nothing new fits until it settles."""
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
