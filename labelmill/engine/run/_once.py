"""One pass over a corpus: open the store and the teacher, run, close them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from labelmill.cache import ResponseStore
from labelmill.engine._config import AnnotateConfig
from labelmill.engine.money import Spending
from labelmill.engine.run._result import RunResult
from labelmill.engine.run._run import Run
from labelmill.engine.run._sender import OnlineSender, Sender
from labelmill.engine.teacher import (
    AdaptiveConcurrency,
    CircuitBreaker,
    Pacing,
    PricedTeacher,
    RateLimits,
    TeacherClient,
    find_counter,
)

SenderFactory = Callable[[Spending], Sender]


async def run_once(
    config: AnnotateConfig, interrupt: asyncio.Event | None = None, sender: SenderFactory | None = None
) -> RunResult:
    """Annotate (or, with `config.replay`, replay) the corpus once. `sender(spending)` replaces
    the online sender (tests plug in a fake); a replay needs none."""
    spending = Spending(config.prices, config.budget, config.auto_rate)
    with ResponseStore(config.cache_dir) as store:
        if config.replay:
            return await Run(config, store, None, spending, interrupt).execute()
        if sender is not None:
            return await Run(config, store, sender(spending), spending, interrupt).execute()
        async with TeacherClient(config.base_url, config.api_key, config.concurrency, config.timeout_s) as client:
            teacher = PricedTeacher(
                client,
                spending,
                retry=config.retry,
                limits=RateLimits(config.rpm, config.tpm),
                concurrency=AdaptiveConcurrency(config.concurrency),
                breaker=CircuitBreaker(window_s=config.breaker_s),
                pacing=pacing_for(config),
            )
            return await Run(config, store, OnlineSender(teacher), spending, interrupt).execute()


def pacing_for(config: AnnotateConfig) -> Pacing:
    """Exact prompt counts from a tokenizer on disk when one is named, or when a --tpm limit will
    use them; otherwise the byte count, calibrated as answers come (a limit learned from headers
    mid-run uses that). Loading tiktoken is not free: a run without a token limit skips it."""
    if config.tokenizer is None and config.tpm is None:
        return Pacing()
    counter, name = find_counter(config.model, config.tokenizer)
    return Pacing(counter, name)
