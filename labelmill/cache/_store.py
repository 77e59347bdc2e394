"""The response store: every raw teacher response, by request key, kept forever.

Built on diskcache (SQLite underneath) with the settings that make it a store rather than a cache:
- `eviction_policy="none"` and a size limit no corpus reaches: diskcache evicts by default
  (1 GiB, least-recently-stored), which would make us pay twice;
- values are JSON text we serialise ourselves, never pickle: the store is data anyone can read;
- every value stays inside SQLite (`disk_min_file_size` is huge), so a put is one transaction;
- `sqlite_synchronous=2` (FULL): a put that returned survives a crash of the process and of the
  machine. Batched puts pay one fsync per batch, not per entry;
- no memory map and a small page cache, so reading a large store keeps memory flat.
SQLite's locking makes two processes on one store safe.

Raw responses are stored, not parsed ones: parsing happens on read, so a parser fix re-parses
everything for free.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diskcache

from labelmill._exceptions import StoreCorruptError, StoreError
from labelmill._json import dumps, loads
from labelmill.cache._keys import request_key

ENTRY_VERSION = 1
# diskcache's row for a str key (raw = 1) and a str value inside SQLite (mode 1 = MODE_RAW).
_UPSERT = (
    "INSERT INTO Cache(key, raw, store_time, expire_time, access_time, access_count, tag, size, mode, filename, value)"
    " VALUES (?, 1, ?, NULL, ?, 0, NULL, 0, 1, NULL, ?)"
    " ON CONFLICT(key, raw) DO UPDATE SET store_time = excluded.store_time, expire_time = NULL,"
    " access_time = excluded.access_time, access_count = 0, tag = NULL, size = 0, mode = 1, filename = NULL,"
    " value = excluded.value"
)
_NO_LIMIT = 2**62  # bytes; effectively unbounded, and eviction is off anyway

STORE_SETTINGS: dict[str, Any] = {
    "eviction_policy": "none",
    "size_limit": _NO_LIMIT,
    "cull_limit": 0,
    "disk_min_file_size": 2**40,
    "sqlite_synchronous": 2,
    # Bounded memory: no memory map of the database (its pages would count against the process as
    # a large store is read) and an 8 MiB page cache.
    "sqlite_mmap_size": 0,
    "sqlite_cache_size": 2048,
    "statistics": 0,
}


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """One store entry: the request that was sent, what it cost, and the raw response body."""

    key: str
    request: dict[str, Any]
    prompt_version: str
    response: dict[str, Any]
    cost_usd: float | None = None

    def to_json(self) -> str:
        return dumps(
            {
                "v": ENTRY_VERSION,
                "request": self.request,
                "prompt_version": self.prompt_version,
                "response": self.response,
                "cost_usd": self.cost_usd,
            }
        )

    @classmethod
    def from_json(cls, key: str, text: str) -> StoredResponse:
        try:
            data = loads(text)
            request, response = data["request"], data["response"]
            return cls(
                key=key,
                request=request if type(request) is dict else dict(request),  # freshly parsed: no copy
                prompt_version=str(data["prompt_version"]),
                response=response if type(response) is dict else dict(response),
                cost_usd=data.get("cost_usd"),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreCorruptError(f"store entry {key} does not parse: {exc}") from exc


@dataclass(frozen=True, slots=True)
class StoreStats:
    entries: int
    bytes: int
    path: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    checked: int
    bad: list[tuple[str, str]]  # (key, what is wrong)

    @property
    def ok(self) -> bool:
        return not self.bad


class ResponseStore:
    """A durable key -> raw response store. Use as a context manager or call `close()`."""

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._cache = diskcache.Cache(str(self.path), **STORE_SETTINGS)
        except (OSError, diskcache.Timeout) as exc:
            raise StoreError(f"cannot open the response store at {self.path}: {exc}") from exc

    # -- sync API -----------------------------------------------------------------------------
    def put(self, entry: StoredResponse) -> None:
        """Store one entry; durable when this returns."""
        self.put_many([entry])

    def put_many(self, entries: Sequence[StoredResponse]) -> None:
        """Store entries in one transaction (one fsync); durable when this returns.

        One statement for the batch, written into diskcache's table the way `Cache.set` writes a
        str key and a str value kept in SQLite (raw key, MODE_RAW, no file, no expiry, no tag);
        diskcache's own triggers keep its count and size. `Cache.set` per entry cost a quarter
        of the engine's CPU per request (a SELECT, Python bookkeeping and a cull check each).
        """
        now = time.time()
        rows = [(entry.key, now, now, entry.to_json()) for entry in entries]
        with self._cache.transact():
            self._cache._con.executemany(_UPSERT, rows)

    def get(self, key: str) -> StoredResponse | None:
        text = self._cache.get(key)
        if text is None:
            return None
        return StoredResponse.from_json(key, text)

    def get_many(self, keys: Sequence[str]) -> dict[str, StoredResponse]:
        """The entries among `keys` that are stored, in one query per 500 keys.

        One SELECT per key costs more than everything else on a replay; this reads diskcache's
        table directly, which is safe for the entries this class writes: str keys (stored raw),
        str values kept inside SQLite (`disk_min_file_size`), no expiry.
        """
        found: dict[str, StoredResponse] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._cache._sql(
                f"SELECT key, value FROM Cache WHERE raw = 1 AND key IN ({marks})", chunk
            ).fetchall()
            for key, text in rows:
                found[key] = StoredResponse.from_json(key, text)
        return found

    def __contains__(self, key: object) -> bool:
        return key in self._cache

    def __len__(self) -> int:
        return len(self._cache)

    def keys(self) -> Iterator[str]:
        for key in self._cache.iterkeys():
            yield str(key)

    def settings(self) -> dict[str, Any]:
        """The settings in force, as diskcache reports them (tests prove no eviction)."""
        return {name: getattr(self._cache, name) for name in STORE_SETTINGS}

    def stats(self) -> StoreStats:
        return StoreStats(entries=len(self._cache), bytes=int(self._cache.volume()), path=str(self.path))

    def verify(self) -> VerifyReport:
        """Re-read every entry: it must parse and its request must hash to its key."""
        checked = 0
        bad: list[tuple[str, str]] = []
        for key in self.keys():
            checked += 1
            raw = self._cache.get(key)
            try:
                if not isinstance(raw, str):
                    raise StoreCorruptError(f"value is {type(raw).__name__}, not JSON text")
                entry = StoredResponse.from_json(key, raw)
            except StoreCorruptError as exc:
                bad.append((key, str(exc)))
                continue
            actual = request_key(entry.request, entry.prompt_version)
            if actual != key:
                bad.append((key, f"stored request hashes to {actual}"))
        return VerifyReport(checked=checked, bad=bad)

    def close(self) -> None:
        self._cache.close()

    def __enter__(self) -> ResponseStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Committed = Callable[[BaseException | None], None]


class AsyncStoreWriter:
    """Puts from async code without blocking the event loop.

    Each `await put(entry)` returns once the entry is committed; `submit(entry, committed)`
    calls `committed(None)` then (or `committed(error)` if the write failed) without a task or a
    future per entry. Entries that arrive while a batch is being written are gathered into the
    next batch: one transaction and one fsync for many entries, run in a worker thread.
    """

    def __init__(self, store: ResponseStore, max_batch: int = 512) -> None:
        self._store = store
        self._max_batch = max_batch
        self._pending: list[tuple[StoredResponse, Committed]] = []
        self._writing = 0  # entries in the batch being written
        self._wake = asyncio.Event()
        self._flushed: list[asyncio.Future[None]] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def put(self, entry: StoredResponse) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def committed(error: BaseException | None) -> None:
            if future.done():
                return
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

        self.submit(entry, committed)
        await future

    def submit(self, entry: StoredResponse, committed: Committed) -> None:
        """Queue `entry`; `committed` (which must not raise) runs in the event loop once the
        batch holding it is written."""
        if self._closed:
            raise StoreError("the store writer is closed")
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="labelmill-store-writer")
        self._pending.append((entry, committed))
        self._wake.set()

    async def flush(self) -> None:
        """Return once every entry submitted so far is written (or has failed)."""
        if self._pending or self._writing:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._flushed.append(future)
            await future

    async def _run(self) -> None:
        while not (self._closed and not self._pending):
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            self._writing = len(batch)
            error: BaseException | None = None
            try:
                await asyncio.to_thread(self._store.put_many, [entry for entry, _ in batch])
            except Exception as exc:  # every waiter learns the write failed
                error = StoreError(f"store write failed: {exc}")
            self._writing = 0
            for _, committed in batch:
                committed(error)
            if not self._pending:
                for future in self._flushed:
                    if not future.done():
                        future.set_result(None)
                self._flushed.clear()

    async def aclose(self) -> None:
        """Write what is pending, then stop the writer task."""
        self._closed = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def make_entry(
    request: Mapping[str, Any], prompt_version: str, response: Mapping[str, Any], cost_usd: float | None
) -> StoredResponse:
    """An entry keyed by its own request: the only way the engine builds one."""
    return StoredResponse(
        key=request_key(request, prompt_version),
        request=dict(request),
        prompt_version=prompt_version,
        response=dict(response),
        cost_usd=cost_usd,
    )
