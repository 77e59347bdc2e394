"""The workers: take a request, decide its variant, hand it to the sender, and turn what comes
back into an outcome; then the committer makes the record once the answer is in the store.

Why a worker hands its answer to the store writer instead of finishing it: the next request goes
out in the same step the answer arrives in, before the store write, the parse and the record.
On Python 3.11 every other hop (a semaphore handed to another task, a new task) waits behind
everything already queued, and when a hundred answers arrive together those hops, not the
teacher, set the pace. A response is committed before its example counts as done, so a killed
run re-pays at most what was in flight: at most 2 x concurrency requests.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import replace

from labelmill._exceptions import (
    BudgetExhausted,
    CircuitOpenError,
    RequestRejected,
    RetryableError,
    TeacherStatusError,
)
from labelmill.cache import AsyncStoreWriter, ResponseStore, StoredResponse
from labelmill.engine.money import Commitment, Spending
from labelmill.engine.run._requests import Outcome, Request, Requests
from labelmill.engine.run._sender import NotBought, Sender
from labelmill.engine.run._stats import OrderedOutput
from labelmill.engine.run._stop import RefusalWatch, Stop, StopReason
from labelmill.engine.selection import Selection
from labelmill.engine.tasks import VARIANT_LABEL, VARIANT_RATIONALE, confidence_of


class Workers:
    def __init__(self, sender: Sender | None, selection: Selection, spending: Spending, requests: Requests,
                 store: ResponseStore, output: OrderedOutput, stop: Stop, concurrency: int,
                 with_confidence: bool) -> None:  # fmt: skip
        self.sender, self.selection, self.spending = sender, selection, spending
        self.requests, self.store, self.output, self.stop = requests, store, output, stop
        self.writer = AsyncStoreWriter(store)
        self.unsettled = asyncio.Semaphore(2 * concurrency)  # in flight + answered, not yet committed
        self.with_confidence = with_confidence  # --select uncertainty: records carry the label's
        self.refusals = RefusalWatch()
        self.error: BaseException | None = None  # raised by the supervisor: nothing is lost silently
        self.fatal: TeacherStatusError | None = None

    async def work(self, queue: asyncio.Queue[Request | None]) -> None:
        while (item := await queue.get()) is not None:
            if self.stop.halts:
                return  # what is queued is left for the rerun
            await self.unsettled.acquire()
            try:
                result = await self.process(item)
            except BaseException:
                self.unsettled.release()
                raise
            if isinstance(result, tuple):
                self.writer.submit(result[1], functools.partial(self.settle, *result))
            else:
                self.unsettled.release()
                self.output.put(item.seq, result)

    async def process(self, item: Request) -> Outcome | tuple[Request, StoredResponse]:
        """A failure row, or the request as sent (the plan may have changed it) with its answer."""
        if self.stop.reason is not None:
            return self.requests.failure(item, self.stop.drain_reason, self.stop.message)
        commitment = None
        if item.fallback is not None:  # only a request with a choice left is decided now
            variant, commitment = self.selection.decide(item.example.id)
            if variant != item.variant:
                item = replace(item.fallback, seq=item.seq)
        try:
            return await self.buy(item, commitment)
        finally:
            self.spending.uncommit(commitment)

    async def buy(self, item: Request, commitment: Commitment | None) -> Outcome | tuple[Request, StoredResponse]:
        assert self.sender is not None, "a replay sends nothing: its misses are not_cached rows"
        if "response_format" in item.body and not self.requests.sends_schema:  # refused since it was made
            return await self._in_text(item, commitment)
        try:
            entry = await self.sender.send(item, commitment)
        except NotBought as exc:
            return self.requests.failure(item, exc.reason, exc.detail)
        except BudgetExhausted as exc:
            return await self._out_of_money(item, commitment, exc)
        except RequestRejected as exc:
            if self.requests.refused_schema(item, exc.server_message):
                if self.requests.sends_schema:  # asked for json_schema: every request would be refused
                    self.stop.set(StopReason.REFUSED, f"the teacher refuses structured outputs ({exc.server_message})"
                                  "; use --output-format auto or text")  # fmt: skip
                    return self.requests.failure(item, "refused", exc.server_message)
                return await self._in_text(item, commitment)
            if self.refusals.refused(exc.server_message):
                self.stop.set(StopReason.REFUSED, f"{exc}: the teacher refused the first {self.refusals.first} "
                              "requests with this same answer; check --model and --base-url")  # fmt: skip
            return self.requests.failure(item, "refused", exc.server_message)
        except RetryableError as exc:
            return self.requests.failure(item, "gave_up", f"after retrying: {exc}")
        except CircuitOpenError as exc:
            self.stop.set(StopReason.CIRCUIT_OPEN, str(exc))
            return self.requests.failure(item, "not_attempted", str(exc))
        except TeacherStatusError as exc:  # 401, 403, 404...: nothing else will work either
            self.fatal = self.fatal or exc
            self.stop.set(StopReason.FATAL, str(exc))
            raise self.fatal from None
        self.refusals.success()
        return item, entry

    async def _in_text(self, item: Request, commitment: Commitment | None) -> Outcome | tuple[Request, StoredResponse]:
        """The request again in text, after the server refused its schema (nothing was paid for it)."""
        text = self.requests.make(item.row, item.example, item.variant, item.seq, text=True)
        stored = self.store.get(text.key)  # bought in text by an earlier run
        return (text, stored) if stored is not None else await self.buy(text, commitment)

    async def _out_of_money(
        self, item: Request, commitment: Commitment | None, exc: BudgetExhausted
    ) -> Outcome | tuple[Request, StoredResponse]:
        cheaper = self.selection.fallback(item.variant)
        if cheaper is None:
            self.stop.set(StopReason.BUDGET_EXHAUSTED, f"the budget is spent: {exc}")
            return self.requests.failure(item, "budget_exhausted", str(exc))
        self.spending.uncommit(commitment)
        fallback = self.requests.make(item.row, item.example, cheaper, item.seq)
        stored = self.store.get(fallback.key)  # e.g. the label an uncertainty pass already bought
        if stored is not None:
            return fallback, stored
        return await self.buy(fallback, None)

    def settle(self, item: Request, entry: StoredResponse, error: BaseException | None) -> None:
        """Once an answer is committed, make its record: durable before the example counts as done."""
        self.unsettled.release()
        try:
            if error is not None:
                raise error
            confidence = None
            if item.variant == VARIANT_RATIONALE and self.with_confidence:
                label = self.store.get(self.requests.make(item.row, item.example, VARIANT_LABEL).key)
                confidence = confidence_of(label.response) if label is not None else None
            self.output.put(item.seq, self.requests.finish(item, entry, confidence))
        except Exception as exc:
            self.error = self.error or exc
