"""`labelmill batches status|collect|cancel`, and the one-line account of a run's batches."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from labelmill._exceptions import UsageError
from labelmill.cache import ResponseStore
from labelmill.engine.batch._route import BatchRoute, BatchSettings
from labelmill.engine.batch._state import BatchState
from labelmill.engine.money import Prices
from labelmill.engine.teacher import BatchAPI


async def manage_batches(action: str, out_dir: Path, cache_dir: Path, prices: Prices | None,
                         api_key: str | None, base_url: str | None = None) -> dict[str, Any]:  # fmt: skip
    """`labelmill batches status|collect|cancel`: what is in flight for OUT; collect what is finished
    (without submitting anything); or cancel what is live and collect what it had done."""
    state = BatchState.load(out_dir)
    if not state.batches:
        raise UsageError(f"{out_dir} has no batches (no {state.path.name}): nothing to {action}")
    url = base_url or state.base_url
    if action == "status":
        live = [{"name": b.name, "batch_id": b.batch_id, "status": b.status, "requests": b.requests}
                for b in state.live()]  # fmt: skip
        return {**state.summary(), "live": live, "base_url": url}
    with ResponseStore(cache_dir) as store:
        async with BatchAPI(url, api_key) as api:
            route = BatchRoute(BatchSettings(prices, resubmit=False, poll_s=1.0), state, store, api)
            await route.recover(submit=False)  # adopt what the server has; start nothing (a rerun submits)
            if action == "cancel":
                for record in state.live():
                    if record.batch_id is not None:
                        record.status = str((await route.api.cancel(record.batch_id))["status"])
                state.save()
                while any(b.batch_id is not None for b in state.live()):  # cancelling -> cancelled
                    if not await route.collect_finished():
                        await asyncio.sleep(0.25)
            else:
                await route.collect_finished()
    return {**state.summary(), "spent_now_usd": round(route.spent, 8)}
