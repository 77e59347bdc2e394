from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from labelmill._exceptions import StoreCorruptError, StoreError
from labelmill.cache import AsyncStoreWriter, ResponseStore, StoredResponse, make_entry, request_key
from tests.conftest import REPO, run_python


def entry(i: int, text: str = "Answer: (a) apple") -> StoredResponse:
    request = {"model": "m", "messages": [{"role": "user", "content": f"q{i}"}], "max_tokens": 8}
    response = {"choices": [{"message": {"content": text}}], "usage": {"prompt_tokens": 3}}
    return make_entry(request, "t/label@1", response, cost_usd=1e-6)


def test_put_get_roundtrip_keeps_raw_response(tmp_path: Path) -> None:
    e = entry(1, "ünïcode ✓")
    with ResponseStore(tmp_path) as store:
        store.put(e)
        got = store.get(e.key)
        assert got == e
        assert store.get("sha256:missing") is None
        assert len(store) == 1


def test_keys_are_stable_across_versions_and_see_every_part_of_the_request() -> None:
    request = {"model": "m", "messages": [{"role": "user", "content": "q2"}], "max_tokens": 8}
    # Pinned: a store written by an earlier version must still answer the same request.
    assert (
        request_key(request, "t/label@1") == "sha256:7e07aa9d8ee12af3b545c107872e3ee4cae657223ed6af71fbdaeece78962fc4"
    )
    assert request_key(dict(reversed(list(request.items()))), "t/label@1") == request_key(request, "t/label@1")
    changed = [
        {**request, "model": "m2"},
        {**request, "max_tokens": 9},
        {**request, "messages": [{"role": "user", "content": "q3"}]},
        {**request, "temperature": 0.0},
    ]
    keys = {request_key(r, "t/label@1") for r in changed} | {request_key(request, "t/label@2")}
    assert len(keys) == 5 and request_key(request, "t/label@1") not in keys


def test_settings_prove_no_eviction_and_no_pickle(tmp_path: Path) -> None:
    with ResponseStore(tmp_path) as store:
        settings = store.settings()
        assert settings["eviction_policy"] == "none"
        assert settings["size_limit"] >= 2**60
        store.put(entry(3))
        raw = store._cache.get(entry(3).key)
        assert isinstance(raw, str) and raw.startswith("{")  # JSON text, not a pickle


def test_store_does_not_evict_past_the_diskcache_default_limit(tmp_path: Path) -> None:
    # diskcache's default would cull at 1 GiB; here a store holding more than a small
    # hypothetical limit still returns every entry (eviction is off, not merely far away).
    with ResponseStore(tmp_path) as store:
        big = "x" * 200_000
        entries = [entry(i, big) for i in range(60)]  # ~12 MB
        store.put_many(entries)
        store._cache.reset("size_limit", 1_000_000)  # even a 1 MB limit must not cull
        store.put(entry(999))
        assert all(e.key in store for e in entries)


def test_batched_puts_write_the_rows_diskcache_itself_writes(tmp_path: Path) -> None:
    # put_many writes diskcache's table directly: the rows must be the ones `Cache.set` writes,
    # so diskcache (and any store written by an earlier version) reads and counts them the same.
    columns = "key, raw, expire_time, access_count, tag, size, mode, filename, value"
    with ResponseStore(tmp_path / "ours") as ours, ResponseStore(tmp_path / "theirs") as theirs:
        entries = [entry(i) for i in range(3)]
        ours.put_many(entries)
        ours.put_many([entries[0]])  # written again: replaced, not added
        for e in entries:
            theirs._cache.set(e.key, e.to_json())
        for store in (ours, theirs):
            assert len(store) == 3 and store._cache.volume() > 0
        select = f"SELECT {columns} FROM Cache ORDER BY key"
        assert ours._cache._sql(select).fetchall() == theirs._cache._sql(select).fetchall()
        assert ours._cache.get(entries[1].key) == entries[1].to_json()
        assert ours._cache.reset("count") == theirs._cache.reset("count") == 3


KILL_AFTER_PUT = """
import os, signal, sys
from labelmill.cache import ResponseStore, make_entry
store = ResponseStore(sys.argv[1])
e = make_entry({"model": "m", "messages": []}, "v", {"ok": True}, None)
store.put(e)
print(e.key, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_entry_survives_sigkill_right_after_put(tmp_path: Path) -> None:
    result = run_python(KILL_AFTER_PUT, str(tmp_path))
    assert result.returncode == -signal.SIGKILL
    key = result.stdout.strip()
    with ResponseStore(tmp_path) as store:
        got = store.get(key)
    assert got is not None and got.response == {"ok": True}


WRITER = """
import sys
from labelmill.cache import ResponseStore, make_entry
store = ResponseStore(sys.argv[1])
tag = sys.argv[2]
for i in range(300):
    store.put(make_entry({"model": tag, "messages": [{"content": str(i)}]}, "v", {"i": i}, None))
"""


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), tag], env=env) for tag in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    with ResponseStore(tmp_path) as store:
        assert len(store) == 600
        assert store.verify().ok


async def test_async_writer_batches_and_is_durable_when_awaited(tmp_path: Path) -> None:
    with ResponseStore(tmp_path) as store:
        writer = AsyncStoreWriter(store, max_batch=16)
        entries = [entry(i) for i in range(100)]
        await asyncio.gather(*(writer.put(e) for e in entries))
        assert all(e.key in store for e in entries)
        await writer.aclose()


async def test_submitted_entries_report_their_commit_in_order_and_flush_waits(tmp_path: Path) -> None:
    with ResponseStore(tmp_path) as store:
        writer = AsyncStoreWriter(store, max_batch=7)
        entries = [entry(i) for i in range(20)]
        reports: list[tuple[str, BaseException | None]] = []
        for e in entries:
            writer.submit(e, functools.partial(lambda key, error: reports.append((key, error)), e.key))
        await writer.flush()
        assert reports == [(e.key, None) for e in entries]  # all committed, in submission order
        assert all(e.key in store for e in entries)
        await writer.flush()  # nothing pending: returns at once
        await writer.aclose()


async def test_a_failed_batch_reports_the_error_to_each_entry(tmp_path: Path) -> None:
    with ResponseStore(tmp_path) as store:

        def failing_put_many(entries: Sequence[StoredResponse]) -> None:
            raise OSError("disk full")

        store.put_many = failing_put_many  # type: ignore[method-assign]
        writer = AsyncStoreWriter(store)
        errors: list[BaseException | None] = []
        writer.submit(entry(1), errors.append)
        with pytest.raises(StoreError, match="disk full"):
            await writer.put(entry(2))
        await writer.flush()
        assert len(errors) == 1 and isinstance(errors[0], StoreError)
        await writer.aclose()


async def test_async_writer_does_not_block_the_event_loop(tmp_path: Path) -> None:
    # The write waits until the event loop has run other code. If the writer ran the write on
    # the loop's own thread, the loop could not run that code and the wait would time out.
    loop_ran = threading.Event()
    with ResponseStore(tmp_path) as store:
        real_put_many = store.put_many

        def slow_put_many(entries: Sequence[StoredResponse]) -> None:
            assert loop_ran.wait(timeout=10), "the event loop was blocked during a store write"
            real_put_many(entries)

        store.put_many = slow_put_many  # type: ignore[method-assign]
        writer = AsyncStoreWriter(store)
        put = asyncio.create_task(writer.put(entry(1)))
        await asyncio.sleep(0)  # let the writer start its write
        await asyncio.sleep(0)
        loop_ran.set()
        await put
        await writer.aclose()
        assert entry(1).key in store


def test_verify_finds_corrupt_and_mismatched_entries(tmp_path: Path) -> None:
    with ResponseStore(tmp_path) as store:
        good = entry(1)
        store.put(good)
        store._cache.set("sha256:bogus", good.to_json())
        store._cache.set("sha256:garbage", "{not json")
        report = store.verify()
    assert report.checked == 3
    bad = dict(report.bad)
    assert set(bad) == {"sha256:bogus", "sha256:garbage"}
    assert "hashes to" in bad["sha256:bogus"]
    assert "does not parse" in bad["sha256:garbage"]


def test_corrupt_entry_raises_a_clear_error_on_get(tmp_path: Path) -> None:
    with ResponseStore(tmp_path) as store:
        store._cache.set("sha256:garbage", "[1, 2]")
        with pytest.raises(StoreCorruptError, match="sha256:garbage"):
            store.get("sha256:garbage")


def test_get_many_agrees_with_get(tmp_path: Path) -> None:
    with ResponseStore(tmp_path) as store:
        entries = [entry(i) for i in range(1200)]  # more than one 500-key query
        store.put_many(entries[::2])
        keys = [e.key for e in entries] + ["sha256:missing"]
        found = store.get_many(keys)
        assert set(found) == {e.key for e in entries[::2]}
        assert all(found[k] == store.get(k) for k in found)
