"""A batch of rows -> what the store already answers: render, build requests, look up, parse.

The reader thread of an annotate run calls `Resolver.resolve` on each batch. A large replay is
nothing but this work (render, key, decode, parse, serialise: all CPU, no waiting), so it runs
in worker processes, one per core: `ReplayPool` forks them before the run starts any thread (or
spawns them if the caller already runs threads), sends them raw JSONL lines in batches and gets
back record lines in input order.

Duplicate ids are checked by the caller, which alone sees every row.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import itertools
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from labelmill.cache import ResponseStore, StoredResponse
from labelmill.engine._config import AnnotateConfig
from labelmill.engine.run._failures import Failure
from labelmill.engine.run._requests import Done, Outcome, Request, Requests
from labelmill.engine.tasks._input import Row, iter_jsonl_lines, jsonl_row
from labelmill.engine.tasks._records import confidence_of

# A replay reads its input in worker processes when it is at least this big (about 10,000 CQA
# rows): below it, forking and feeding the workers costs more than it saves.
PARALLEL_MIN_BYTES = 4 * 1024 * 1024
BATCH_ROWS = 500


@dataclass(slots=True)  # per row: not frozen (a frozen __init__ is 5x slower)
class Rendered:
    """Where an example sits in its batch, for the duplicate-id check."""

    position: int
    id: str
    index: int
    file: str
    line: int


@dataclass(slots=True)
class Resolved:
    items: list[Outcome | Request] = field(default_factory=list)  # in input order
    rendered: list[Rendered] = field(default_factory=list)
    hits: set[int] = field(default_factory=set)  # positions answered from the store


class Resolver:
    def __init__(self, config: AnnotateConfig, requests: Requests, store: ResponseStore) -> None:
        self.config = config
        self.requests = requests
        self.store = store

    def resolve(self, rows: list[Row]) -> Resolved:
        """Outcomes for rows that fail to render or whose answer is stored; requests for the rest."""
        out = Resolved()
        options_at: dict[int, list[Request]] = {}
        for row in rows:
            position = len(out.items)
            if row.data is None:
                out.items.append(Failure(row.index, None, row.file, row.line, "bad_input", row.error or ""))
                continue
            try:
                example = self.config.task.render(row.data, row.index)
            except ValueError as exc:
                out.items.append(Failure(row.index, None, row.file, row.line, "bad_input", str(exc)))
                continue
            options = self.requests.candidates(row, example)
            options_at[position] = options
            out.items.append(options[0])
            out.rendered.append(Rendered(position, example.id, row.index, row.file, row.line))
        stored = self.store.get_many([r.key for options in options_at.values() for r in options])
        self._look_up_text_twins(options_at, stored)
        for position, options in options_at.items():
            first = options[0]
            # Under a plan (or on replay) a stored answer of either variant will do; an example
            # chosen for a rationale by uncertainty wants the rationale (its label is the fallback).
            acceptable = [first] if self.config.explain_ids is not None and not self.config.replay else options
            found = next((r for r in acceptable if r.key in stored), None)
            if found is not None:
                out.hits.add(position)
                label = options[-1]
                # the label answer's confidence, when the record's own answer is another one
                confidence = (
                    confidence_of(stored[label.key].response) if label is not found and label.key in stored else None
                )
                out.items[position] = self.requests.finish(found, stored[found.key], confidence)
            elif self.config.replay:
                detail = "no response in the store for this request"
                out.items[position] = self.requests.failure(first, "not_cached", detail)
            elif len(options) > 1:  # the selection decides between them when it is sent
                out.items[position] = replace(first, fallback=options[-1])
        return out

    def _look_up_text_twins(self, options_at: dict[int, list[Request]], stored: dict[str, StoredResponse]) -> None:
        """Under auto, an example none of whose schema requests is stored may have a text answer:
        its requests become their text twins where the twin is stored (looked up for misses only)."""
        if self.requests.output_format != "auto":
            return
        missed = {p: options for p, options in options_at.items() if not any(r.key in stored for r in options)}
        twins = {p: [self.requests.text_twin(r) or r for r in options] for p, options in missed.items()}
        found = self.store.get_many([t.key for options in twins.values() for t in options if t.key not in stored])
        for position, options in twins.items():
            if any(t.key in found for t in options):
                options_at[position] = options
                stored.update((t.key, found[t.key]) for t in options if t.key in found)


# -- replay in worker processes ---------------------------------------------------------------
_worker: Resolver | None = None

Compact = tuple[str, bool, int, int, int | None, bool | None] | Failure  # a Done as a tuple: cheaper to pickle


def _init_worker(config: AnnotateConfig, requests: Requests) -> None:
    global _worker
    _worker = Resolver(config, requests, ResponseStore(config.cache_dir))
    # A batch keeps its rows' objects alive while it is resolved, and the cyclic collector
    # would scan them again and again (a third of the time per record, measured). Nothing here
    # makes cycles that outlive a batch; each batch ends with a collection instead.
    gc.disable()


RenderedTuple = tuple[int, str, int, int]  # (position, id, index, line): cheaper to pickle


def _resolve_lines(
    file: str, lines: list[tuple[int, int, str]]
) -> tuple[list[Compact], list[RenderedTuple], list[int]]:
    assert _worker is not None, "the replay worker was not initialised"
    resolved = _worker.resolve([jsonl_row(index, file, number, text) for index, number, text in lines])
    rendered = [(r.position, r.id, r.index, r.line) for r in resolved.rendered]
    items: list[Compact] = []
    for item in resolved.items:
        if isinstance(item, Done):
            items.append((item.line, item.rationale, item.prompt_tokens, item.completion_tokens,
                          item.rationale_words, item.rationale_agrees))  # fmt: skip
        else:
            assert isinstance(item, Failure), "a replay resolves every row"
            items.append(item)
    hits = sorted(resolved.hits)
    del resolved
    gc.collect(1)
    return items, rendered, hits


def _outcome(item: Compact) -> Outcome:
    return item if isinstance(item, Failure) else Done(*item)


class ReplayPool:
    """Worker processes that resolve batches of raw JSONL lines. Create it before any thread."""

    def __init__(self, config: AnnotateConfig, requests: Requests, workers: int) -> None:
        # fork: the workers start at once with the parent's modules and settings (no re-import).
        # Forking is only safe while no other thread exists (one could hold a lock the child then
        # never sees released): a library caller that already runs threads gets spawned workers.
        method = "fork" if threading.active_count() == 1 else "spawn"
        self.executor = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context(method), initializer=_init_worker,
            initargs=(config, requests),
        )  # fmt: skip
        self.workers = workers
        self.executor.submit(int).result()  # fork now, before the event loop starts threads

    @staticmethod
    def wanted(config: AnnotateConfig) -> int:
        """How many workers a replay of `config.source` uses (0: none, resolve in-process)."""
        jsonl = config.source != "-" and Path(config.source).suffix.lower() in (".jsonl", ".json", ".ndjson")
        if not config.replay or not jsonl or "fork" not in multiprocessing.get_all_start_methods():
            return 0
        if config.replay_workers is not None:
            return config.replay_workers
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        if cores < 2 or Path(config.source).stat().st_size < PARALLEL_MIN_BYTES:
            return 0
        return min(cores, 8)

    async def resolve(self, file: str, lines: list[tuple[int, int, str]]) -> Resolved:
        loop = asyncio.get_running_loop()
        items, rendered, hits = await loop.run_in_executor(self.executor, _resolve_lines, file, lines)
        return Resolved(
            [_outcome(item) for item in items], [Rendered(p, i, x, file, n) for p, i, x, n in rendered], set(hits)
        )

    async def replay(
        self, source: str, limit: int | None, write: Callable[[Resolved], None], stopped: Callable[[], bool]
    ) -> None:
        """Resolve `source` in batches, a few ahead of the one being written, and hand each to
        `write` in input order."""
        lines = iter_jsonl_lines(source)
        if limit is not None:
            lines = itertools.islice(lines, limit)
        ahead: collections.deque[asyncio.Future[Resolved]] = collections.deque()
        try:
            while not stopped():
                while len(ahead) < 2 * self.workers and (batch := list(itertools.islice(lines, BATCH_ROWS))):
                    ahead.append(asyncio.ensure_future(self.resolve(source, batch)))
                if not ahead:
                    return
                write(await ahead.popleft())
        finally:
            for future in ahead:
                future.cancel()

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
