"""The producer: reads rows in a thread, renders and resolves them, and feeds the workers.

Rows the store answers, and rows that fail to render or repeat an id, become outcomes at once;
the rest go to the workers' queue as requests. Backpressure: row `n` is admitted only while
fewer than `window` rows are between the last one written and `n`, so memory stays bounded
whatever the corpus size.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import replace

from labelmill.engine.money import Spending
from labelmill.engine.run._failures import Failure, IdRegistry
from labelmill.engine.run._requests import Outcome, Request, Requests
from labelmill.engine.run._resolve import ReplayPool, Resolved, Resolver
from labelmill.engine.run._stats import OrderedOutput, RunStats
from labelmill.engine.run._stop import Stop
from labelmill.engine.selection import BudgetPlan, Selection
from labelmill.engine.tasks import Row, iter_rows

_READ_BATCH = 512
_FIRST_BATCH = 32  # small at first, so that the first requests go out at once


class Producer:
    def __init__(self, source: str, limit: int | None, requests: Requests, resolver: Resolver, ids: IdRegistry,
                 output: OrderedOutput, stats: RunStats, stop: Stop, window: asyncio.Semaphore,
                 selection: Selection, spending: Spending) -> None:  # fmt: skip
        self.source, self.limit = source, limit
        self.requests, self.resolver, self.ids = requests, resolver, ids
        self.output, self.stats, self.stop, self.window = output, stats, stop, window
        self.selection, self.spending = selection, spending

    async def produce(self, queue: asyncio.Queue[Request | None], ends: int) -> None:
        """Feed `queue`, then put `ends` end marks. Not in a `finally`: when every worker has
        stopped on a fatal status, those puts would block on a full queue nobody reads."""
        rows = iter_rows(self.source)
        seq = 0
        batch_size = _FIRST_BATCH
        while not self.stop.halts:
            max_rows = batch_size if self.limit is None else min(batch_size, self.limit - seq)
            batch_size = min(_READ_BATCH, batch_size * 4)
            if max_rows <= 0:
                break
            prepared = await asyncio.to_thread(self._prepare, rows, max_rows)
            if not prepared:
                break
            for item in prepared:
                await self.window.acquire()
                if self.stop.halts:
                    return
                if isinstance(item, Request):
                    await queue.put(replace(item, seq=seq))
                else:
                    self.output.put(seq, item)
                seq += 1
        self.stats.total = seq
        for _ in range(ends):
            await queue.put(None)

    async def replay_in(self, pool: ReplayPool) -> None:
        """A replay through worker processes: every row is an outcome, written in input order."""

        def write(resolved: Resolved) -> None:  # the next batch in input order: nothing else writes
            items = self._without_duplicates(resolved)
            self.output.write([item for item in items if not isinstance(item, Request)])

        await pool.replay(self.source, self.limit, write, lambda: self.stop.halts)
        self.stats.total = self.output.next_seq

    def _prepare(self, rows: Iterator[Row], max_rows: int) -> list[Outcome | Request]:
        """Runs in a thread: read up to `max_rows` rows and resolve them (`Resolver`)."""
        batch = list(itertools.islice(rows, max_rows))
        self._set_priors(batch)
        items = self._without_duplicates(self.resolver.resolve(batch))
        if isinstance(self.selection, BudgetPlan):  # rows the plan never decides
            self.selection.settled_early += sum(1 for p in items if not (isinstance(p, Request) and p.fallback))
        return items

    def _set_priors(self, batch: list[Row]) -> None:
        """A budget plan's cost priors, from the first prompts, before any usage is seen."""
        first = next((r for r in batch if r.data is not None), None)
        if first is None or self.spending.planner is not None or not isinstance(self.selection, BudgetPlan):
            return
        with contextlib.suppress(ValueError):
            example = self.requests.task.render(first.data or {}, first.index)
            options = self.requests.candidates(first, example)
            self.spending.set_priors(*(len(r.body["messages"][-1]["content"]) for r in reversed(options)))

    def _without_duplicates(self, resolved: Resolved) -> list[Outcome | Request]:
        """A repeated id is a failure that names both lines, whatever the store holds."""
        repeated = self.ids.first_lines([(r.id, r.line) for r in resolved.rendered])
        for i, first_line in repeated.items():
            r = resolved.rendered[i]
            resolved.hits.discard(r.position)
            detail = f"duplicate id {r.id!r}: line {r.line} repeats line {first_line}"
            resolved.items[r.position] = Failure(r.index, None, r.file, r.line, "duplicate_id", detail)
        self.stats.cache_hits += len(resolved.hits)
        return resolved.items
