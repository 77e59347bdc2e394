"""Store and shard throughput, in records per second.

    .venv/bin/python benchmarks/cache.py [--n 20000] [--json]

Measures, in a temporary directory on this machine's disk:
- store put, one transaction (and fsync) per entry;
- store put through AsyncStoreWriter (what the engine uses: concurrent puts batched into one
  transaction per batch);
- store get;
- shard write (ShardWriter, rotation every 10,000 records) and shard read (iter_records).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from labelmill.cache import (
    AsyncStoreWriter,
    ResponseStore,
    ShardRecord,
    ShardWriter,
    StoredResponse,
    TeacherRef,
    Usage,
    iter_records,
    make_entry,
)


def make_entries(n: int) -> list[StoredResponse]:
    content = "The answer is (b) apple. Apples grow on trees and are eaten as fruit by many people."
    return [
        make_entry(
            {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"Question {i}: " + "x" * 300}]},
            "cqa/label+rationale@3f2a",
            {"choices": [{"message": {"content": content}}], "usage": {"prompt_tokens": 90, "completion_tokens": 30}},
            2.9e-5,
        )
        for i in range(n)
    ]


def make_records(n: int) -> list[ShardRecord]:
    return [
        ShardRecord(
            id=f"ex-{i:07d}",
            index=i,
            text="Where would you find a fruit that grows on trees? " * 2,
            label="orchard",
            rationale="Fruit trees are grown in orchards, so that is where one finds their fruit.",
            choices=["orchard", "desert", "ocean", "garage", "moon"],
            gold="orchard",
            teacher=TeacherRef("gpt-4o-mini", "cqa/label+rationale@3f2a", f"sha256:{i:064x}"),
            usage=Usage(90, 30),
            cost_usd=2.9e-5,
        )
        for i in range(n)
    ]


def put_each(store: ResponseStore, entries: list[StoredResponse]) -> None:
    for entry in entries:
        store.put(entry)


def rate(n: int, func: Callable[[], object]) -> float:
    start = time.perf_counter()
    func()
    return n / (time.perf_counter() - start)


def run(n: int) -> dict[str, float]:
    entries = make_entries(n)
    records = make_records(n)
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        root = Path(tmp)
        single_n = min(n, 2000)  # one fsync each: keep it short
        with ResponseStore(root / "single") as store:
            results["store_put_single"] = rate(single_n, lambda: put_each(store, entries[:single_n]))

        async def batched(store: ResponseStore) -> None:
            writer = AsyncStoreWriter(store)
            await asyncio.gather(*(writer.put(e) for e in entries))
            await writer.aclose()

        with ResponseStore(root / "batched") as store:
            results["store_put_async_batched"] = rate(n, lambda: asyncio.run(batched(store)))
            results["store_get"] = rate(n, lambda: [store.get(e.key) for e in entries])

        def write_shards() -> None:
            with ShardWriter(root / "out") as writer:
                for r in records:
                    writer.write(r)

        results["shard_write"] = rate(n, write_shards)
        results["shard_read"] = rate(n, lambda: sum(1 for _ in iter_records(root / "out")))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = run(args.n)
    if args.json:
        print(json.dumps({"n": args.n, "records_per_s": results}))
        return
    print(f"n = {args.n}", file=sys.stderr)
    print("| operation | records/s |")
    print("|---|---:|")
    for name, value in results.items():
        print(f"| {name} | {value:,.0f} |")


if __name__ == "__main__":
    main()
