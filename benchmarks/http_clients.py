"""Which HTTP client the engine ships: the raw transport, measured against the mock teacher.

    .venv/bin/pip install '.[bench]'      # httpx and openai, only for this comparison
    .venv/bin/python benchmarks/http_clients.py [--n 3000]

Each client sends N chat-completion requests at the given concurrency to `labelmill mock-teacher`
(its own process, core 1) from one client core (core 0) and parses the JSON body; nothing else
(no store, no shards). Clients that are not installed are skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from labelmill.testing import mock_process

BODY = {
    "model": "mock",
    "messages": [{"role": "user", "content": "Question: Which of these is a fruit?\nChoices: (a) apple (b) stone"}],
    "max_tokens": 32,
}
Sender = Callable[[], Awaitable[Any]]


async def drive(send: Sender, n: int, concurrency: int) -> tuple[float, float]:
    """Requests per second and CPU milliseconds per request."""
    remaining = iter(range(n))

    async def worker() -> None:
        for _ in remaining:
            await send()

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - wall), (time.process_time() - cpu) / n * 1000


async def bench_aiohttp(url: str, n: int, concurrency: int) -> tuple[float, float]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency, ssl=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        payload = json.dumps(BODY).encode()
        headers = {"content-type": "application/json"}

        async def send() -> Any:
            async with session.post(url + "/chat/completions", data=payload, headers=headers) as response:
                return json.loads(await response.read())

        return await drive(send, n, concurrency)


async def bench_httpx(url: str, n: int, concurrency: int) -> tuple[float, float]:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits) as client:

        async def send() -> Any:
            return (await client.post(url + "/chat/completions", json=BODY)).json()

        return await drive(send, n, concurrency)


async def bench_openai(url: str, n: int, concurrency: int) -> tuple[float, float]:
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key="sk-bench", max_retries=0)

    async def send() -> Any:
        return await client.chat.completions.create(**BODY)

    try:
        return await drive(send, n, concurrency)
    finally:
        await client.close()


CLIENTS: dict[str, Callable[[str, int, int], Coroutine[Any, Any, tuple[float, float]]]] = {
    "aiohttp": bench_aiohttp,
    "httpx": bench_httpx,
    "openai SDK": bench_openai,
}


def run(name: str, url: str, n: int, concurrency: int, loop: str) -> tuple[float, float] | None:
    try:
        if loop == "uvloop":
            import uvloop

            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(CLIENTS[name](url, n, concurrency))
        return asyncio.run(CLIENTS[name](url, n, concurrency))
    except ImportError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=3000)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})
    print("| client | loop | latency | concurrency | req/s | CPU ms/req |")
    print("|---|---|---:|---:|---:|---:|")
    for latency, concurrency in ((0, 64), (200, 100)):
        n = args.n if latency == 0 else min(args.n, 2000)
        with mock_process("--latency-ms", str(latency)) as url:
            for name in CLIENTS:
                for loop in ("asyncio", "uvloop"):
                    result = run(name, url, n, concurrency, loop)
                    if result is None:
                        print(f"| {name} | {loop} | {latency} ms | {concurrency} | not installed | |")
                        continue
                    rate, cpu_ms = result
                    print(f"| {name} | {loop} | {latency} ms | {concurrency} | {rate:,.0f} | {cpu_ms:.3f} |")


if __name__ == "__main__":
    main()
