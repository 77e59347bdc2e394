"""The seam between a run and the way its requests are bought.

A run hands each request it cannot answer from the store to a `Sender` and gets back the stored
answer, or one of the errors below, which the run turns into failure rows or a stop:

    BudgetExhausted    the request's worst case does not fit the budget
    RequestRejected    400/413/422: this request only
    RetryableError     the sender gave up retrying
    CircuitOpenError   only errors for a sustained period
    TeacherStatusError any other status (401/403/404): nothing else will work either
    NotBought          the sender buys nothing and says why: a failure row with that reason, and
                       nothing else (no stop, no refusal count): the batch route's leftovers

`OnlineSender` buys each answer over HTTP through the one priced attempt. A batch sender plugs in
here, and unit tests plug in a fake.
"""

from __future__ import annotations

from typing import Protocol

from labelmill.cache import StoredResponse
from labelmill.engine.money import Commitment
from labelmill.engine.run._requests import Request
from labelmill.engine.tasks import VARIANT_RATIONALE
from labelmill.engine.teacher import PricedTeacher, TeacherCounters


class NotBought(Exception):
    """No answer for this request, for `reason` (a failure row's reason) and `detail`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


class Sender(Protocol):
    counters: TeacherCounters

    async def send(self, request: Request, commitment: Commitment | None) -> StoredResponse: ...


class OnlineSender:
    def __init__(self, teacher: PricedTeacher) -> None:
        self.teacher = teacher
        self.counters = teacher.counters

    async def send(self, request: Request, commitment: Commitment | None) -> StoredResponse:
        rationale = request.variant == VARIANT_RATIONALE
        response, dollars = await self.teacher.buy(request.body, rationale=rationale, commitment=commitment)
        return StoredResponse(request.key, request.body, request.tag, response, dollars)
