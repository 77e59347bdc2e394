"""`--route batch|auto`: buy the answers through the Batch API at its price, then run as usual.

    1. submit   every request not in the store and not in a live batch becomes a line of a batch
                input file (custom_id = its request key, body = exactly the online body), split at
                `batch_max_requests` lines and `batch_max_bytes`; each batch reserves the worst case
                of its lines at batch prices before it is uploaded
    2. collect  poll with backoff; each finished batch's answers go into the store under their keys,
                as online answers do, and settle to their `usage` at batch prices. Error lines: 429/5xx
                and `batch_expired` are resubmitted (up to `batch_attempts` submissions), others are
                kept as the reason for a failure row; a batch's reservation is released when it is collected
    3. run      a normal run over the corpus (`run_once`): the answers are store hits, so shards,
                replay and resume are the same whichever route bought them. Under `batch` a request
                still missing becomes a failure row with the batch's reason; under `auto` it is
                bought online.

What is in flight lives in `OUT/batches.json` (`_state.py`), so a killed run's rerun picks up
polling and downloading where it stopped, and never uploads a key that is in a live batch.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import os
import secrets
import time
from dataclasses import dataclass, replace
from typing import Any

from labelmill._exceptions import UsageError
from labelmill.cache import ResponseStore, fsync_dir, make_entry, request_key
from labelmill.engine._config import AnnotateConfig
from labelmill.engine.batch._errors import line_error, missing_line
from labelmill.engine.batch._files import missing_requests, request_line
from labelmill.engine.batch._final import Leftovers, add_batch_spend, plan_at_batch_prices, refused_whole
from labelmill.engine.batch._state import FINISHED, BatchRecord, BatchState, Meta, progress_line
from labelmill.engine.money import Ledger, Prices, cached_prompt_tokens, token_upper_bound
from labelmill.engine.run import LiveLine, RunResult, RunStatus, SenderFactory, run_once
from labelmill.engine.tasks import VARIANT_RATIONALE
from labelmill.engine.teacher import BatchAPI

log = logging.getLogger("labelmill")
SLACK_USD = 1e-9


async def annotate_by_batch(config: AnnotateConfig, interrupt: asyncio.Event | None,
                            sender: SenderFactory | None) -> RunResult:  # fmt: skip
    if config.source == "-":
        raise UsageError("the batch route reads INPUT twice (to submit, then to write the shards): give a file, not -")
    if config.select == "uncertainty" and config.detach:
        raise UsageError("--select uncertainty runs two passes, the second chosen from the first: drop --detach")
    started = time.monotonic()
    config = plan_at_batch_prices(config)
    state = BatchState.load(config.out_dir)
    state.base_url, state.model = config.base_url, config.model
    with ResponseStore(config.cache_dir) as store:
        async with BatchAPI(config.base_url, config.api_key) as api:
            route = BatchRoute(BatchSettings.of(config), state, store, api)
            await route.recover()
            await route.submit_missing(config)
            if config.detach:
                await route.collect_finished()
            else:
                await route.wait_and_collect(interrupt)
    if state.live():
        summary = {"route": config.route, "status": RunStatus.PARTIAL.value, "batches": state.summary()}
        note = f"{len(state.live())} batches still in flight: rerun the same command, or `labelmill batches collect`"
        return RunResult(RunStatus.PARTIAL, summary, [note])
    left = None if config.budget is None else max(0.0, config.budget - route.spent)
    leftovers: SenderFactory | None = sender
    if config.route == "batch":
        failures = dict(state.failures)
        leftovers = lambda spending: Leftovers(failures)  # noqa: E731 (a one-line factory)
    result = await run_once(replace(config, budget=left), interrupt, leftovers)  # run_once: no route dispatch
    if config.route == "batch":
        refused_whole(result.summary, state.failures)
    result.summary["route"] = config.route
    result.summary["batches"] = state.summary()
    result.summary["seconds"] = round(time.monotonic() - started, 3)  # the batches' wait included
    return add_batch_spend(result, route.spent, config.budget, route.cache_saved)


@dataclass(slots=True)
class BatchSettings:
    prices: Prices | None  # online (list) prices; batches pay `prices.batch()`
    budget: float | None = None
    attempts: int = 3
    max_requests: int = 50_000
    max_bytes: int = 200 * 1024 * 1024
    poll_s: float = 60.0
    resubmit: bool = True  # False: `batches collect`, which leaves unanswered lines to the next run
    progress: bool = False  # the live line on a terminal

    @classmethod
    def of(cls, config: AnnotateConfig) -> BatchSettings:
        return cls(config.prices, config.budget, config.batch_attempts, config.batch_max_requests,
                   config.batch_max_bytes, config.batch_poll_s, progress=config.progress)  # fmt: skip


class BatchRoute:
    def __init__(self, settings: BatchSettings, state: BatchState, store: ResponseStore, api: BatchAPI) -> None:
        self.settings, self.state, self.store, self.api = settings, state, store, api
        self.prices: Prices | None = settings.prices.batch() if settings.prices is not None else None
        # The one ledger, as online: each batch reserves its lines' worst case before it is
        # uploaded and settles to what its answers cost when it is collected. Batches an earlier
        # run left in flight are held from the state on disk.
        self.ledger = Ledger(settings.budget if settings.budget is not None else math.inf)
        self._held = {b.name: self.ledger.hold(b.reserved_usd) for b in state.live()}
        self.cache_saved = 0.0  # what cached prompt prefixes took off the batch price
        self.max_lines = settings.max_requests  # halved when a server refuses a batch's size
        self.token = secrets.token_hex(4)
        self._numbers = itertools.count(len(state.batches))
        self.deferred: list[tuple[Meta, dict[str, Any]]] = []  # lines waiting for the budget

    # -- money ----------------------------------------------------------------------------------
    @property
    def spent(self) -> float:
        """Settled in this invocation, at batch prices."""
        return self.ledger.spent

    def _left(self) -> float | None:
        return None if self.settings.budget is None else self.ledger.left

    def _release(self, record: BatchRecord, paid: float | None) -> None:
        """A batch collected (settled to `paid`) or dropped unsent (None: released)."""
        held = self._held.pop(record.name, None)
        if held is not None and paid is not None:
            self.ledger.settle(held, paid)
        elif held is not None:
            self.ledger.release(held)
        record.reserved_usd = 0.0

    def _worst(self, body: dict[str, Any]) -> float:
        bound, max_tokens = token_upper_bound(body), int(body["max_tokens"])
        return self.prices.cost(bound - max_tokens, max_tokens) if self.prices is not None else 0.0

    # -- submit ---------------------------------------------------------------------------------
    async def submit_missing(self, config: AnnotateConfig) -> None:
        """Every request of `config`'s corpus not in the store and not in a live batch, in new batches."""
        lines = []
        for item in missing_requests(config, self.store, self.state.live_keys()):
            lines.append(
                (Meta(item.key, item.tag, item.variant == VARIANT_RATIONALE, self._worst(item.body)), item.body)
            )
            self.state.failures.pop(item.key, None)  # submitted again: its old reason no longer holds
        await self._submit(lines, attempt=1)

    async def _submit(self, lines: list[tuple[Meta, dict[str, Any]]], attempt: int) -> None:
        fitting = [(meta, request_line(meta.key, body)) for meta, body in self._fit_budget(lines)]
        for chunk in self._chunks(fitting):
            record = self._prepare(chunk, attempt)
            await self._upload_and_create(record)

    def _fit_budget(self, lines: list[tuple[Meta, dict[str, Any]]]) -> list[tuple[Meta, dict[str, Any]]]:
        """The lines whose worst cases fit what the budget has left; the others wait (`deferred`)
        until collected batches settle to their real cost and free the rest of their reservations."""
        left = self._left()
        if left is None:
            return lines
        fitting, left = [], left - SLACK_USD  # the chunks' sums may round otherwise than this one
        for meta, body in lines:
            if meta.worst_usd > left:
                self.deferred.append((meta, body))
                continue
            left -= meta.worst_usd
            fitting.append((meta, body))
        return fitting

    async def submit_deferred(self) -> None:
        """Submit what the budget now covers; when nothing is in flight and nothing more fits, the
        rest is out of budget for good."""
        waiting, self.deferred = self.deferred, []
        await self._submit(waiting, attempt=1)
        if self.deferred and not self.state.live():
            left = max(0.0, self._left() or 0.0)
            for meta, _ in self.deferred:
                self.state.failures[meta.key] = ["budget_exhausted", f"its worst case (${meta.worst_usd:.6f}) "
                                                 f"does not fit the ${left:.6f} left"]  # fmt: skip
            self.deferred = []
            self.state.save()

    def _chunks(self, lines: list[tuple[Meta, str]]) -> list[list[tuple[Meta, str]]]:
        """(meta, input line) in files of at most `max_requests` lines and `max_bytes`."""
        chunks: list[list[tuple[Meta, str]]] = []
        size = 0
        for meta, line in lines:
            line_bytes = len(line.encode("utf-8"))
            if not chunks or len(chunks[-1]) >= self.max_lines or \
                    size + line_bytes > self.settings.max_bytes:  # fmt: skip
                chunks.append([])
                size = 0
            chunks[-1].append((meta, line))
            size += line_bytes
        return chunks

    def _prepare(self, chunk: list[tuple[Meta, str]], attempt: int) -> BatchRecord:
        """Write the input and meta files, reserve the chunk's worst case, and save: before upload."""
        name = f"labelmill-{self.token}-{next(self._numbers):05d}"
        record = BatchRecord(name, attempt, len(chunk), round(sum(m.worst_usd for m, _ in chunk), 10))
        self.state.files.mkdir(parents=True, exist_ok=True)
        with open(self.state.input_path(record), "w", encoding="utf-8") as inputs, \
                open(self.state.meta_path(record), "w", encoding="utf-8") as metas:  # fmt: skip
            for meta, line in chunk:
                inputs.write(line)
                metas.write(json.dumps({"key": meta.key, "tag": meta.tag, "rationale": meta.rationale,
                                        "worst_usd": meta.worst_usd}) + "\n")  # fmt: skip
            for handle in (inputs, metas):  # on disk before the state that names them says `prepared`
                handle.flush()
                os.fsync(handle.fileno())
        fsync_dir(self.state.files)
        reservation = self.ledger.try_reserve(record.reserved_usd)
        assert reservation is not None, "the lines were fitted to what the budget has left"
        self._held[name] = reservation
        self.state.batches.append(record)
        self.state.save()
        return record

    async def _upload_and_create(self, record: BatchRecord) -> None:
        uploaded = None
        if record.status == "prepared":
            uploaded = await self.api.upload(self.state.input_path(record), f"{record.name}.jsonl")
            record.file_id, record.status = str(uploaded["id"]), "uploaded"
            self.state.save()
        if record.status == "uploaded":  # also after a crash: the file may still be processing
            assert record.file_id is not None
            await self._until_processed(uploaded or await self.api.file(record.file_id))
            record.status = "creating"
            self.state.save()
        if record.status == "creating":
            assert record.file_id is not None
            created = await self.api.create(record.file_id, {"labelmill": record.name})
            record.batch_id, record.status = str(created["id"]), str(created["status"])
            self.state.save()

    async def _until_processed(self, uploaded: dict[str, Any]) -> None:
        """A batch can be created only from a file the server has processed."""
        wait, file = 0.1, uploaded
        while file.get("status") in ("uploaded", "pending"):
            await asyncio.sleep(wait)
            wait = min(self.settings.poll_s, wait * 2)
            file = await self.api.file(str(file["id"]))
        if file.get("status") == "error":
            raise UsageError(f"the server could not process batch input file {file['id']}: "
                             f"{file.get('status_details') or 'no details'}")  # fmt: skip

    # -- after a crash --------------------------------------------------------------------------
    async def recover(self, submit: bool = True) -> None:
        """Finish what a killed run left half done, asking the server what it already has. With
        `submit` false (cancelling), adopt what the server has and start nothing: a batch that
        never started is dropped, and its keys are left to the next run."""
        pending = [b for b in self.state.live() if b.status in ("prepared", "uploaded", "creating")]
        if not pending:
            return
        files = {f.get("filename"): str(f["id"]) for f in await self.api.files()}
        batches = {str(b.get("input_file_id")): b for b in await self.api.batches()}
        for record in pending:
            if record.status == "prepared" and f"{record.name}.jsonl" in files:
                record.file_id, record.status = files[f"{record.name}.jsonl"], "uploaded"  # reuse the upload
            if record.file_id in batches:
                found = batches[record.file_id]  # the batch was created: adopt it
                record.batch_id, record.status = str(found["id"]), str(found["status"])
            elif not submit:
                self._release(record, None)
                record.status = "collected"
            self.state.save()
            if submit:
                await self._upload_and_create(record)

    # -- collect --------------------------------------------------------------------------------
    async def wait_and_collect(self, interrupt: asyncio.Event | None) -> None:
        """Poll until no batch is live, with the batches' live line on a terminal (by state, lines
        answered, dollars, time waited), else a log line each time it changes."""
        wait = min(0.25, self.settings.poll_s)
        await self.submit_deferred()
        started, logged = time.monotonic(), ""

        def render() -> str:
            return f"{progress_line(self.state.summary())} | waited {time.monotonic() - started:.0f} s"

        with LiveLine(render, self.settings.progress) as live:
            while self.state.live():
                live.refresh()
                if not live.shown and (line := progress_line(self.state.summary())) != logged:
                    log.info("%s", line)
                    logged = line
                if interrupt is not None and interrupt.is_set():
                    return
                if await self.collect_finished():
                    await self.submit_deferred()
                else:
                    await asyncio.sleep(wait)
                    wait = min(self.settings.poll_s, wait * 1.5)

    async def collect_finished(self) -> bool:
        """Collect every live batch the server has finished; True when one was."""
        collected = False
        for record in list(self.state.live()):
            if record.batch_id is None:
                continue
            batch = await self.api.batch(record.batch_id)
            if record.status != batch["status"]:
                record.status = str(batch["status"])
                self.state.save()
            if record.status in FINISHED:
                await self._collect(record, batch)
                collected = True
        return collected

    async def _collect(self, record: BatchRecord, batch: dict[str, Any]) -> None:
        metas = {meta.key: meta for meta in self.state.metas(record)}
        bodies = self.state.bodies(record)
        answered = await self._store_answers(record, batch, metas, bodies)
        retry, split = await self._sort_errors(record, batch, metas, answered)
        if not self.settings.resubmit:  # left to the next run, which submits what is missing
            retry = []
        elif record.attempt >= self.settings.attempts:
            for key in retry:
                self.state.failures[key] = [
                    "gave_up",
                    f"not answered after {record.attempt} batches ({batch['status']})",
                ]
            retry = []
        record.resubmitted = len(retry)
        self._release(record, record.spent_usd)
        record.status = "collected"
        self.state.save()
        if retry:
            if split:  # the server refused the batch's size: half as many lines a batch
                self.max_lines = max(1, len(retry) // 2)
            await self._submit([(metas[key], bodies[key]) for key in retry], record.attempt + 1)

    async def _store_answers(self, record: BatchRecord, batch: dict[str, Any], metas: dict[str, Meta],
                             bodies: dict[str, dict[str, Any]]) -> set[str]:  # fmt: skip
        if not batch.get("output_file_id"):
            return set()
        entries, answered = [], set()
        for line in (await self.api.content(str(batch["output_file_id"]))).splitlines():
            row = json.loads(line)
            key, response = row.get("custom_id"), row.get("response") or {}
            meta = metas.get(key)
            if meta is None or response.get("status_code") != 200 or request_key(bodies[key], meta.tag) != key:
                log.warning("batch %s: an answer for a request it did not hold (%s): skipped", record.name, key)
                continue
            body = response["body"]
            usage = body.get("usage") or {}
            prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
            cached = cached_prompt_tokens(usage)
            paid = self.prices.cost(prompt, completion, cached) if self.prices is not None and usage else meta.worst_usd
            if self.prices is not None and usage:
                self.cache_saved += self.prices.cost(prompt, completion) - paid
            record.spent_usd += paid
            # The store holds the answer's list price, as an online answer's: records do not say
            # which route bought them (the manifest and the summary do).
            listed = self.settings.prices.cost(prompt, completion, cached) if self.settings.prices is not None else None
            entries.append(make_entry(bodies[key], meta.tag, body, listed))
            answered.add(key)
        self.store.put_many(entries)
        record.answered += len(answered)
        return answered

    async def _sort_errors(self, record: BatchRecord, batch: dict[str, Any], metas: dict[str, Meta],
                           answered: set[str]) -> tuple[list[str], bool]:  # fmt: skip
        """Error lines and missing lines: the keys to resubmit, and whether to split the batch."""
        reasons: dict[str, tuple[bool, str, str]] = {}  # key -> (retry?, reason, detail)
        if batch.get("error_file_id"):
            for line in (await self.api.content(str(batch["error_file_id"]))).splitlines():
                row = json.loads(line)
                reasons[str(row.get("custom_id"))] = line_error(row)
        problems = (batch.get("errors") or {}).get("data") or [{}]
        code, message = str(problems[0].get("code") or ""), str(problems[0].get("message") or batch["status"])
        split = batch["status"] == "failed" and code == "token_limit_exceeded"
        retry = []
        for key in metas:
            if key in answered:
                continue
            again, reason, detail = reasons.get(key) or missing_line(batch["status"], split, message)
            if again:
                retry.append(key)
            else:
                self.state.failures[key] = [reason, detail]
                record.failed += 1
        return retry, split
