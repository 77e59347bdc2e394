"""The annotation pipeline: input -> task -> store or teacher -> parse -> ordered shards.

    producer (reads rows in a thread, renders them, checks ids, answers store hits)
        -> bounded queue -> C workers: limits -> teacher (retries)
        -> store writer (batched fsync) -> a callback per committed answer: record
        -> reorder window (input order) -> shard writer / failures.jsonl

Backpressure: the producer admits row `n` only while fewer than `window` rows are between the
last one written and `n`, so memory is bounded whatever the corpus size. A response is committed
to the store before its example counts as done, so a killed run re-pays at most what was in
flight: requests sent plus answers not yet committed, at most 2 x concurrency. Replay is the same
pipeline with no teacher: a miss becomes a `not_cached` failure.

Why a worker hands its answer to the store writer instead of finishing it: the next request goes
out in the same step the answer arrives in, before the store write, the parse and the record.
On Python 3.11 every other hop (a semaphore handed to another task, a new task) waits behind
everything already queued, and when a hundred answers arrive together those hops, not the
teacher, set the pace.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from labelmill._exceptions import CircuitOpenError, TeacherStatusError, UsageError
from labelmill.cache import AsyncStoreWriter, ResponseStore, ShardWriter, StoredResponse
from labelmill.engine._config import AnnotateConfig
from labelmill.engine.money import BudgetExhausted, Commitment, Spending, token_upper_bound
from labelmill.engine.run._failures import Failure, FailureLog, IdRegistry
from labelmill.engine.run._requests import Outcome, Request, Requests
from labelmill.engine.run._resolve import ReplayPool, Resolved, Resolver
from labelmill.engine.run._result import RunResult
from labelmill.engine.run._runtime import run_settings
from labelmill.engine.run._stats import OrderedOutput, Progress, RunStats, run_result
from labelmill.engine.selection._score import selection_score
from labelmill.engine.tasks._input import Row, count_rows, iter_rows
from labelmill.engine.tasks._records import confidence_of
from labelmill.engine.tasks._tasks import VARIANT_LABEL, VARIANT_RATIONALE
from labelmill.engine.teacher._client import RequestRejected, RetryableError, TeacherClient
from labelmill.engine.teacher._limits import AdaptiveConcurrency, CircuitBreaker, RateLimits
from labelmill.engine.teacher._retry import call_with_retries

log = logging.getLogger("labelmill")

_READ_BATCH = 512
_FIRST_BATCH = 32


class _Run:
    def __init__(self, config: AnnotateConfig, store: ResponseStore, teacher: TeacherClient | None) -> None:
        self.config = config
        self.task = config.task
        self.store = store
        self.teacher = teacher
        self.stats = RunStats()
        self.writer = AsyncStoreWriter(store)
        config.out_dir.mkdir(parents=True, exist_ok=True)
        self.shards = ShardWriter(config.out_dir, shard_size=config.shard_size)
        self.failures = FailureLog(config.out_dir)
        self.ids = IdRegistry(config.out_dir)
        self.limits = RateLimits(config.rpm, config.tpm)
        self.concurrency = AdaptiveConcurrency(config.concurrency)
        self.breaker = CircuitBreaker(window_s=config.breaker_s)
        self.window = asyncio.Semaphore(config.window)
        self.unsettled = asyncio.Semaphore(2 * config.concurrency)  # in flight + answered, not yet committed
        self.settle_error: BaseException | None = None
        self.queue: asyncio.Queue[Request | None] = asyncio.Queue(maxsize=config.concurrency)
        self.output = OrderedOutput(self.shards, self.failures, self.stats, on_written=self.window.release)
        self.stop_reason: str | None = None  # "circuit_open" (drain as failures) or "interrupted"
        self.stop_message = ""
        self.fatal: TeacherStatusError | None = None  # a status that ends the run (401, 403, 404, ...)
        self.requests = Requests(config)
        self.resolver = Resolver(config, self.requests, store)
        self.pool: ReplayPool | None = None
        self.tags = self.requests.tags
        self.spending = Spending(config.prices, config.budget, config.auto_rate)
        self.total: int | None = None  # rows in the input, counted first when a plan needs it
        self.decided = 0  # examples the planner has decided (event loop only)
        self.settled_early = 0  # examples that never reach the planner (reader thread only)

    # -- producer -----------------------------------------------------------------------------
    def _prepare(self, rows: Iterator[Row], max_rows: int) -> tuple[list[Outcome | Request], int]:
        """Runs in a thread: read up to `max_rows` rows and resolve them (`Resolver`)."""
        batch = list(itertools.islice(rows, max_rows))
        if self.config.auto_rate and self.spending.planner is None:  # priors from the first prompts
            first = next((r for r in batch if r.data is not None), None)
            with contextlib.suppress(ValueError):
                if first is not None:
                    options = self.requests.candidates(first, self.task.render(first.data or {}, first.index))
                    self.spending.set_priors(*(len(r.body["messages"][-1]["content"]) for r in reversed(options)))
        resolved = self.resolver.resolve(batch)
        items = self._without_duplicates(resolved)
        # rows the planner will never see: answered from the store, failed, or at a fixed rate
        self.settled_early += sum(1 for p in items if not (isinstance(p, Request) and p.fallback is not None))
        return items, len(resolved.hits)

    def _without_duplicates(self, resolved: Resolved) -> list[Outcome | Request]:
        """A repeated id is a failure that names both lines, whatever the store holds."""
        repeated = self.ids.first_lines([(r.id, r.line) for r in resolved.rendered])
        for i, first_line in repeated.items():
            r = resolved.rendered[i]
            resolved.hits.discard(r.position)
            detail = f"duplicate id {r.id!r}: line {r.line} repeats line {first_line}"
            resolved.items[r.position] = Failure(r.index, None, r.file, r.line, "duplicate_id", detail)
        return resolved.items

    def plan(self, item: Request) -> tuple[Request, Commitment | None]:
        """Under a budget, decided just before sending, with what is known of costs by then:
        explain this example if its score falls under the planner's current rate. Returns the
        request and its expected cost, committed until it is answered."""
        if item.fallback is None:
            return item, None
        left = max(1, (self.total or 0) - self.settled_early - self.decided)
        self.decided += 1
        explain = selection_score(item.example.id, self.config.seed) < self.spending.rate(left)
        chosen = replace(item, fallback=None) if explain else replace(item.fallback, seq=item.seq)
        return chosen, self.spending.commit(explain)

    async def produce(self) -> None:
        await self._produce()
        # One end-of-input mark per worker, only after the input ended normally (not in a
        # `finally`): when every worker has stopped on a fatal status, these puts block on a full
        # queue that nobody reads, and only a cancellation, which a `finally` would swallow into
        # the next put, lets the run end.
        for _ in range(self.config.concurrency):
            await self.queue.put(None)

    async def _produce(self) -> None:
        if self.pool is not None:
            await self._produce_in_workers(self.pool)
            return
        rows = iter_rows(self.config.source)
        seq = 0
        limit = self.config.limit
        batch_size = _FIRST_BATCH  # small at first, so that the first requests go out at once
        while self.stop_reason != "interrupted":
            max_rows = batch_size if limit is None else min(batch_size, limit - seq)
            batch_size = min(_READ_BATCH, batch_size * 4)
            if max_rows <= 0:
                break
            prepared, hits = await asyncio.to_thread(self._prepare, rows, max_rows)
            if not prepared:
                break
            self.stats.cache_hits += hits
            for item in prepared:
                await self.window.acquire()
                if self.stop_reason == "interrupted":
                    return
                if isinstance(item, Request):
                    await self.queue.put(replace(item, seq=seq))
                else:
                    self.emit(seq, item)
                seq += 1
        self.stats.total = seq

    async def _produce_in_workers(self, pool: ReplayPool) -> None:
        def write(resolved: Resolved) -> None:  # the next batch in input order: nothing else writes
            items = self._without_duplicates(resolved)
            self.stats.cache_hits += len(resolved.hits)
            self.output.write([item for item in items if not isinstance(item, Request)])

        await pool.replay(self.config.source, self.config.limit, write, lambda: self.stop_reason == "interrupted")
        self.stats.total = self.output.next_seq

    # -- workers ------------------------------------------------------------------------------
    async def work(self) -> None:
        while (item := await self.queue.get()) is not None:
            if self.stop_reason == "interrupted":
                return  # an interrupted run writes what is done; queued rows are left for the rerun
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
                self.emit(item.seq, result)

    def settle(self, item: Request, entry: StoredResponse, error: BaseException | None) -> None:
        """Once an answer is committed, make its record: durable before the example counts as done."""
        self.unsettled.release()
        try:
            if error is not None:
                raise error
            confidence = None
            if item.variant == VARIANT_RATIONALE and self.config.select == "uncertainty":
                label = self.store.get(self.requests.make(item.row, item.example, VARIANT_LABEL).key)
                confidence = confidence_of(label.response) if label is not None else None
            self.emit(item.seq, self.requests.finish(item, entry, confidence))
        except Exception as exc:  # raised by the supervisor: nothing may be lost silently
            self.settle_error = self.settle_error or exc

    async def process(self, item: Request) -> Outcome | tuple[Request, StoredResponse]:
        """A failure, or the request as sent (the plan may have changed it) with its answer."""
        if self.stop_reason is not None:
            reason = "budget_exhausted" if self.stop_reason == "budget_exhausted" else "not_attempted"
            return self.requests.failure(item, reason, self.stop_message)
        item, commitment = self.plan(item)
        try:
            return await self._process(item, commitment)
        finally:
            self.spending.uncommit(commitment)

    async def _process(
        self, item: Request, commitment: Commitment | None = None
    ) -> Outcome | tuple[Request, StoredResponse]:
        try:
            entry = await self.buy(item, commitment)
        except BudgetExhausted as exc:
            if self.config.prefers_stored and item.variant == VARIANT_RATIONALE:
                self.spending.uncommit(commitment)
                return await self._process(self.requests.make(item.row, item.example, VARIANT_LABEL, item.seq))
            self.stop_reason = "budget_exhausted"
            self.stop_message = f"the budget is spent: {exc}"
            return self.requests.failure(item, "budget_exhausted", str(exc))
        except RequestRejected as exc:
            return self.requests.failure(item, "refused", exc.server_message)
        except RetryableError as exc:
            return self.requests.failure(item, "gave_up", f"after {self.config.retry.attempts} attempts: {exc}")
        except CircuitOpenError as exc:
            self.stop_reason, self.stop_message = "circuit_open", str(exc)
            return self.requests.failure(item, "not_attempted", str(exc))
        except TeacherStatusError as exc:  # 401, 403, 404...: nothing else will work either
            self.fatal = self.fatal or exc
            raise self.fatal from None
        return item, entry

    async def buy(self, item: Request, commitment: Commitment | None) -> StoredResponse:
        assert self.teacher is not None
        body, rationale = item.body, item.variant == VARIANT_RATIONALE
        teacher, tokens = self.teacher, token_upper_bound(body)
        worst_case = self.spending.worst_case(tokens - int(body["max_tokens"]), int(body["max_tokens"]), rationale)
        settled: list[float] = []

        async def attempt() -> dict[str, Any]:
            self.breaker.check()
            await self.limits.acquire(tokens)
            await self.concurrency.acquire()
            reservation = None
            try:
                if self.fatal is not None:  # checked after the wait: it may have been set meanwhile
                    raise self.fatal
                reservation = await self.spending.reserve(worst_case)  # each attempt may be billed
                self.stats.requests += 1
                reply = await teacher.complete(body)
            except RetryableError as exc:
                self.spending.failed(reservation, maybe_billed=exc.status is None)
                self._count_failure(exc)
                raise
            except BaseException as exc:
                # A cancelled request may have reached the provider: count it, to stay on the safe side.
                self.spending.failed(reservation, maybe_billed=isinstance(exc, asyncio.CancelledError))
                if isinstance(exc, TeacherStatusError) and not isinstance(exc, RequestRejected):
                    self.fatal = self.fatal or exc  # set before the slot is released: nothing else is sent
                raise
            finally:
                self.concurrency.release()
            usage = reply.body.get("usage") or {}
            cost = self.config.cost(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
            settled.append(self.spending.answered(reservation, cost if usage else None, rationale, commitment))
            self.breaker.record_success()
            self.concurrency.on_success()
            self.limits.observe(reply.headers)
            return reply.body

        def on_retry(error: RetryableError, wait_s: float) -> None:
            self.stats.retries += 1

        response = await call_with_retries(attempt, self.config.retry, on_retry)
        usage = response.get("usage") or {}
        cost = settled[-1] if self.config.prices is not None else None
        self.stats.prompt_tokens += int(usage.get("prompt_tokens") or 0)
        self.stats.completion_tokens += int(usage.get("completion_tokens") or 0)
        self.stats.dollars = self.spending.paid
        return StoredResponse(item.key, body, item.tag, response, cost)

    def _count_failure(self, exc: RetryableError) -> None:
        if exc.status == 429:
            self.stats.rate_limited += 1
            self.concurrency.on_throttle()
            if exc.retry_after:
                self.limits.pause(min(exc.retry_after, self.config.retry.retry_after_cap_s))
        elif exc.status is not None and exc.status >= 500:
            self.stats.server_errors += 1
        self.breaker.record_failure(str(exc))

    # -- ordered output -----------------------------------------------------------------------
    def emit(self, seq: int, outcome: Outcome) -> None:
        self.output.put(seq, outcome)

    # -- the whole run ------------------------------------------------------------------------
    def interrupt(self) -> None:
        if self.stop_reason != "interrupted":
            log.warning("interrupted: finishing requests in flight, then writing what is done")
            self.stop_reason, self.stop_message = "interrupted", "interrupted"

    async def run(self) -> RunResult:
        started_at = time.time()
        if processes := ReplayPool.wanted(self.config):
            self.pool = ReplayPool(self.config, self.requests, processes)  # before any thread starts
        if (self.config.auto_rate and not self.config.replay) or self.config.progress:
            self.total = await asyncio.to_thread(count_rows, self.config.source)  # for the plan and the ETA
            if self.total is None and self.config.auto_rate:
                raise UsageError("a budget plan counts the rows first: give a file INPUT, not standard input")
            if self.total is not None and self.config.limit is not None:
                self.total = min(self.total, self.config.limit)
            self.stats.total = self.total
        workers = [asyncio.create_task(self.work()) for _ in range(self.config.concurrency)]
        producer = asyncio.create_task(self.produce())
        progress = Progress(self.stats, self.config.progress, self.config.prices_known, self.config.budget)
        if self.config.budget is not None:
            log.info("budget $%s: each request reserves its worst case, counting a prompt's UTF-8 bytes as its "
                     "token bound (no tokenizer is downloaded)", self.config.budget)  # fmt: skip
        complete = False
        try:
            with progress:
                await self._supervise(producer, workers, progress)
            complete = self.stop_reason != "interrupted"
        finally:
            for task in [producer, *workers]:
                task.cancel()
            await asyncio.gather(producer, *workers, return_exceptions=True)
            await self.writer.aclose()  # answers already paid for are committed and recorded
            if self.pool is not None:
                self.pool.close()
            self.ids.close()
            self.failures.close()
            self.shards.manifest_extra = self.manifest_extra(started_at)
            self.shards.close(complete=complete)
        return self.result()

    async def _supervise(
        self, producer: asyncio.Task[None], workers: list[asyncio.Task[None]], progress: Progress
    ) -> None:
        """Wait until the workers finish; raise a task's error; after an interrupt, allow a grace."""
        grace_deadline: float | None = None
        while True:
            for task in [producer, *workers]:
                if task.done() and not task.cancelled() and (error := task.exception()) is not None:
                    raise error
            if self.settle_error is not None:
                raise self.settle_error
            if all(w.done() for w in workers):
                await self.writer.flush()
                if self.settle_error is not None:
                    raise self.settle_error
                return
            if self.stop_reason == "interrupted":
                grace_deadline = grace_deadline or time.monotonic() + self.config.grace_s
                if time.monotonic() >= grace_deadline:
                    return
            running = [t for t in [producer, *workers] if not t.done()]
            await asyncio.wait(running, timeout=0.25, return_when=asyncio.FIRST_EXCEPTION)
            progress.refresh()

    def manifest_extra(self, started_at: float) -> dict[str, Any]:
        return {
            "task": self.task.name,
            "prompts": self.tags,
            "settings": self.config.request_settings(),
            "run": {
                **self.stats.summary(),
                "money": self.spending.summary(self.stats.done),
                "started_at": started_at,
                "finished_at": time.time(),
            },
        }

    def result(self) -> RunResult:
        return run_result(self.stats, self.spending, self.stop_reason, self.stop_message, self.config.source)


async def annotate(config: AnnotateConfig) -> RunResult:
    """Annotate (or, with `config.replay`, replay) a corpus into shards; see the module doc."""
    if config.select == "uncertainty" and config.explain_ids is None and not config.replay:
        from labelmill.engine.run._uncertainty import annotate_by_uncertainty

        return await annotate_by_uncertainty(config, annotate)
    with ResponseStore(config.cache_dir) as store:
        if config.replay:
            return await _run_with_signals(_Run(config, store, None))
        async with TeacherClient(config.base_url, config.api_key, config.concurrency, config.timeout_s) as teacher:
            return await _run_with_signals(_Run(config, store, teacher))


async def _run_with_signals(run: _Run) -> RunResult:
    with run_settings(run.interrupt):
        return await run.run()
