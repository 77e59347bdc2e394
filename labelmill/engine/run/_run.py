"""One annotate (or replay) run, top to bottom.

    producer (reads rows in a thread, renders them, checks ids, answers store hits)
        -> queue -> C workers: selection decides the variant -> sender (limits, budget, teacher, retries)
        -> store writer (batched fsync) -> a callback per committed answer: record
        -> ordered output (input order) -> shard writer / failures.jsonl

Everything the run opens is opened in `execute` and closed by one exit stack, on every path:
an error keeps the earlier run's shards, a finished or interrupted run swaps its own in. The run
touches no process-wide state: the caller interrupts it by setting `interrupt` (the CLI does so
on Ctrl-C) or by cancelling it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from typing import Any

from labelmill._exceptions import UsageError
from labelmill.cache import ResponseStore
from labelmill.engine._config import AnnotateConfig
from labelmill.engine.money import Spending
from labelmill.engine.run._files import RunFiles
from labelmill.engine.run._producer import Producer
from labelmill.engine.run._requests import Request, Requests
from labelmill.engine.run._resolve import ReplayPool, Resolver
from labelmill.engine.run._result import RunResult, build_result
from labelmill.engine.run._sender import Sender
from labelmill.engine.run._stats import OrderedOutput, Progress, RunStats
from labelmill.engine.run._stop import Stop, StopReason
from labelmill.engine.run._workers import Workers
from labelmill.engine.selection import BudgetPlan, FixedRate, Selection, Uncertainty
from labelmill.engine.tasks import check_input, count_rows

log = logging.getLogger("labelmill")


def selection_for(config: AnnotateConfig, spending: Spending) -> Selection:
    if config.explain_ids is not None:
        return Uncertainty(config.explain_ids)
    if config.prefers_stored:  # a budget plan, or the replay of a plan or of an uncertainty run
        return BudgetPlan(spending, config.seed)
    return FixedRate(config.rationale_rate, config.seed)


class Run:
    def __init__(self, config: AnnotateConfig, store: ResponseStore, sender: Sender | None, spending: Spending,
                 interrupt: asyncio.Event | None = None) -> None:  # fmt: skip
        self.config, self.store, self.sender, self.spending = config, store, sender, spending
        self.interrupt = interrupt or asyncio.Event()
        self.stats, self.stop = RunStats(), Stop()
        self.selection = selection_for(config, self.spending)
        self.requests = Requests(config, self.selection)
        if sender is not None:
            self.stats.teacher = sender.counters
        self.stats.output_format = self.requests.format_report

    async def execute(self) -> RunResult:
        config, started_at = self.config, time.time()
        check_input(config.source)  # before anything is created
        pool = ReplayPool(config, self.requests, n) if (n := ReplayPool.wanted(config)) else None  # before threads
        async with contextlib.AsyncExitStack() as stack:
            if pool is not None:
                stack.callback(pool.close)
            await self._count_rows()
            files = stack.enter_context(RunFiles(config.out_dir, config.shard_size))
            window = asyncio.Semaphore(config.window)
            output = OrderedOutput(files.shards, files.failures, self.stats, on_written=window.release)
            resolver = Resolver(config, self.requests, self.store)
            producer = Producer(config.source, config.limit, self.requests, resolver, files.ids, output,
                                self.stats, self.stop, window, self.selection, self.spending)  # fmt: skip
            workers = Workers(self.sender, self.selection, self.spending, self.requests, self.store, output,
                              self.stop, config.concurrency, config.select == "uncertainty")  # fmt: skip
            stack.push_async_callback(workers.writer.aclose)  # answers already paid for are committed
            if pool is not None:
                tasks = [asyncio.create_task(producer.replay_in(pool))]
            else:
                queue: asyncio.Queue[Request | None] = asyncio.Queue(maxsize=config.concurrency)
                tasks = [asyncio.create_task(workers.work(queue)) for _ in range(config.concurrency)]
                tasks.append(asyncio.create_task(producer.produce(queue, ends=config.concurrency)))
            stack.push_async_callback(_cancel_all, tasks)
            try:
                with Progress(self.stats, config.progress, config.prices_known, config.budget) as progress:
                    await self._supervise(tasks, workers, progress)
            except asyncio.CancelledError:
                self.stop.set(StopReason.INTERRUPTED, "interrupted")
                await _cancel_all(tasks)
                await workers.writer.aclose()
                files.commit(self.manifest_extra(started_at), complete=False)
                raise
            await _cancel_all(tasks)
            await workers.writer.aclose()
            if self.stop.reason is StopReason.REFUSED:
                raise UsageError(self.stop.message)
            self.stats.dollars = self.spending.paid
            files.commit(self.manifest_extra(started_at), complete=self.stop.reason is not StopReason.INTERRUPTED)
        return build_result(self.stats, self.spending, self.stop, config.source, self._unpriced())

    async def _count_rows(self) -> None:
        """For the plan, and for the ETA of a live progress line: the rows in the input, counted
        before the run (a pass over the input, so only when something will use the count)."""
        config = self.config
        if not ((config.auto_rate and not config.replay) or (config.progress and sys.stderr.isatty())):
            return
        total = await asyncio.to_thread(count_rows, config.source)
        if total is None and config.auto_rate and not config.replay:
            raise UsageError("a budget plan counts the rows first: give a file INPUT, not standard input")
        if total is not None and config.limit is not None:
            total = min(total, config.limit)
        self.stats.total = total
        if isinstance(self.selection, BudgetPlan):
            self.selection.total = total or 0

    async def _supervise(self, tasks: list[asyncio.Task[None]], workers: Workers, progress: Progress) -> None:
        """Wait until the tasks finish; raise a task's error; after an interrupt, allow a grace."""
        grace_deadline: float | None = None
        while True:
            for task in tasks:
                if task.done() and not task.cancelled() and (error := task.exception()) is not None:
                    raise error
            if workers.error is not None:
                raise workers.error
            if all(task.done() for task in tasks):
                await workers.writer.flush()
                if workers.error is not None:
                    raise workers.error
                return
            if self.interrupt.is_set() and self.stop.set(StopReason.INTERRUPTED, "interrupted"):
                log.warning("interrupted: finishing requests in flight, then writing what is done")
            if self.stop.halts:
                grace_deadline = grace_deadline or time.monotonic() + self.config.grace_s
                if time.monotonic() >= grace_deadline:
                    return
            await asyncio.wait([t for t in tasks if not t.done()], timeout=0.25, return_when=asyncio.FIRST_EXCEPTION)
            progress.refresh()

    def _unpriced(self) -> str | None:
        if self.config.prices is not None:
            return None
        return (f"model {self.config.model!r} has no price in the built-in table; give --price-in and "
                "--price-out (USD per 1M tokens) or --prices FILE")  # fmt: skip

    def manifest_extra(self, started_at: float) -> dict[str, Any]:
        money = self.spending.money(self.stats.done).to_dict()
        return {
            "task": self.config.task.name,
            "prompts": self.requests.tags,
            "settings": {**self.config.request_settings(), "schema_refused": self.requests.schema_refused},
            "run": {**self.stats.summary(), "money": money, "started_at": started_at, "finished_at": time.time()},
        }


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
