"""`annotate()`: the engine's entry point for a run (one pass, or two for `--select uncertainty`)."""

from __future__ import annotations

import asyncio

from labelmill.engine._config import AnnotateConfig
from labelmill.engine.run import RunResult, SenderFactory, annotate_by_uncertainty, run_once


async def annotate(
    config: AnnotateConfig, *, interrupt: asyncio.Event | None = None, sender: SenderFactory | None = None
) -> RunResult:
    """Annotate (or, with `config.replay`, replay) a corpus into shards.

    Setting `interrupt` stops the run gracefully: requests in flight finish (for up to
    `config.grace_s`), what is done is written, and the result's status is INTERRUPTED.
    Cancelling the task does the same, then raises CancelledError."""
    if config.route != "online" and not config.replay:
        from labelmill.engine.batch import annotate_by_batch

        if config.select == "uncertainty" and config.explain_ids is None:  # a label batch, then a rationale batch
            return await annotate_by_uncertainty(config, interrupt, sender, once=annotate_by_batch)
        return await annotate_by_batch(config, interrupt, sender)
    if config.select == "uncertainty" and config.explain_ids is None and not config.replay:
        return await annotate_by_uncertainty(config, interrupt, sender)
    return await run_once(config, interrupt, sender)
