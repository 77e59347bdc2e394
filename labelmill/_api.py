"""The Python API: `annotate`, `replay` (sync), `annotate_async`, `replay_async` (inside a running
loop, such as Jupyter's), `read_records`.

Keyword arguments are named like the CLI's options (`--base-url` is `base_url`, `--from` is
`from_`). The library touches no process-wide state: no signal handlers, no GIL switch interval,
no exit codes. Stop a run with the `interrupt` event, or by cancelling its task: what is done is
written either way.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, TypedDict, Unpack

from labelmill._exceptions import UsageError
from labelmill.cache import iter_records as _iter_records
from labelmill.cache import read_manifest
from labelmill.engine import (
    DEFAULT_CONCURRENCY,
    DEFAULT_MODEL,
    AnnotateConfig,
    Prices,
    RetryPolicy,
    RunResult,
    SenderFactory,
    Task,
    env_base_url,
    load_task,
    resolve_prices,
)
from labelmill.engine import annotate as _annotate
from labelmill.engine.tasks import OutputFormat

DEFAULT_CACHE = ".labelmill-cache"
Route = Literal["online", "batch", "auto"]
Select = Literal["random", "uncertainty"]


class AnnotateOptions(TypedDict, total=False):
    """The keyword options of `annotate` and `annotate_async` (defaults: `annotate_config`)."""

    cache: str | Path
    model: str
    base_url: str | None
    api_key: str | None
    budget: float | None
    rationale_rate: float | str
    select: Select
    seed: int
    concurrency: int
    rpm: float | None
    tpm: float | None
    tokenizer: str | Path | None
    max_tokens: int | None
    price_in: float | None
    price_out: float | None
    price_cached_in: float | None
    prices: Prices | str | Path | None
    limit: int | None
    shard_size: int
    timeout: float
    attempts: int
    shots: int
    output_format: OutputFormat | None
    progress: bool
    route: Route
    detach: bool
    batch_discount: float | None
    batch_poll_s: float
    batch_max_requests: int
    batch_max_mb: float


class ReplayOptions(TypedDict, total=False):
    """The keyword options of `replay` and `replay_async` (defaults: `replay_config`)."""

    cache: str | Path
    from_: str | Path | None
    model: str | None
    rationale_rate: float | str | None
    seed: int | None
    max_tokens: int | None
    limit: int | None
    shard_size: int
    workers: int | None
    progress: bool


def annotate_config(
    input: str | Path, *, task: str | Task, out: str | Path, cache: str | Path = DEFAULT_CACHE,
    model: str = DEFAULT_MODEL, base_url: str | None = None, api_key: str | None = None,
    budget: float | None = None, rationale_rate: float | str = "auto", select: Select = "random", seed: int = 0,
    concurrency: int = DEFAULT_CONCURRENCY, rpm: float | None = None, tpm: float | None = None,
    tokenizer: str | Path | None = None, max_tokens: int | None = None, price_in: float | None = None,
    price_out: float | None = None, price_cached_in: float | None = None,
    prices: Prices | str | Path | None = None, limit: int | None = None, shard_size: int = 10_000,
    timeout: float = 60.0, attempts: int = 6, shots: int = 0, output_format: OutputFormat | None = None,
    progress: bool = False, route: Route = "online",
    detach: bool = False, batch_discount: float | None = None, batch_poll_s: float = 60.0,
    batch_max_requests: int = 50_000, batch_max_mb: float = 200.0,
) -> AnnotateConfig:  # fmt: skip
    """The settings of an annotate run, checked; the same defaults as `labelmill annotate`."""
    resolved: Prices | None
    if isinstance(prices, Prices):
        resolved = Prices(
            price_in if price_in is not None else prices.input_per_m,
            price_out if price_out is not None else prices.output_per_m,
            batch_discount if batch_discount is not None else prices.batch_discount,
            price_cached_in if price_cached_in is not None else prices.cached_input_per_m,
        )  # fmt: skip
    else:
        resolved = resolve_prices(model, price_in, price_out, prices, batch_discount, price_cached_in)
    auto = rationale_rate == "auto" and budget is not None
    return AnnotateConfig(
        source=str(input), task=load_task(task) if isinstance(task, str) else task, out_dir=Path(out),
        cache_dir=Path(cache), model=model, base_url=base_url or env_base_url(),
        api_key=api_key if api_key is not None else os.environ.get("OPENAI_API_KEY"),
        rationale_rate=1.0 if auto else parse_rate(rationale_rate), auto_rate=auto and select == "random",
        select=select, budget=budget, prices=resolved, seed=seed, concurrency=concurrency, rpm=rpm, tpm=tpm,
        tokenizer=None if tokenizer is None else str(tokenizer), max_tokens=max_tokens, limit=limit,
        shard_size=shard_size, timeout_s=timeout,
        retry=RetryPolicy(attempts=attempts), shots=shots, output_format=output_format, progress=progress,
        route=route, detach=detach,
        batch_poll_s=batch_poll_s, batch_max_requests=batch_max_requests,
        batch_max_bytes=int(batch_max_mb * 1024 * 1024),
    )  # fmt: skip


def replay_config(
    input: str | Path, *, task: str | Task, out: str | Path, cache: str | Path = DEFAULT_CACHE,
    from_: str | Path | None = None, model: str | None = None, rationale_rate: float | str | None = None,
    seed: int | None = None, max_tokens: int | None = None, limit: int | None = None, shard_size: int = 10_000,
    workers: int | None = None, progress: bool = False,
) -> AnnotateConfig:  # fmt: skip
    """The settings of a replay: what is not given comes from the manifest of `from_` (else `out`)."""
    settings = _manifest_settings(Path(from_ or out))
    return AnnotateConfig(
        source=str(input), task=load_task(task) if isinstance(task, str) else task, out_dir=Path(out),
        cache_dir=Path(cache), model=model or settings.get("model") or DEFAULT_MODEL,
        rationale_rate=parse_rate(rationale_rate) if rationale_rate is not None
        else float(settings.get("rationale_rate", 1.0)),
        seed=seed if seed is not None else int(settings.get("seed", 0)),
        max_tokens=max_tokens or settings.get("max_tokens"),
        auto_rate=rationale_rate is None and settings.get("selection") == "auto",
        select="uncertainty" if rationale_rate is None and settings.get("selection") == "uncertainty" else "random",
        temperature=float(settings.get("temperature", 0.0)), shard_size=shard_size, limit=limit, replay=True,
        progress=progress, shots=int(settings.get("shots", 0)), replay_workers=workers,
        output_format=_replayed_format(settings),
    )  # fmt: skip


async def annotate_async(
    input: str | Path, *, task: str | Task, out: str | Path, interrupt: asyncio.Event | None = None,
    sender: SenderFactory | None = None, **options: Unpack[AnnotateOptions],
) -> RunResult:  # fmt: skip
    """Annotate `input` into `out`/shards; see `annotate_config` for the options."""
    return await _annotate(annotate_config(input, task=task, out=out, **options), interrupt=interrupt, sender=sender)


async def replay_async(
    input: str | Path,
    *,
    task: str | Task,
    out: str | Path,
    interrupt: asyncio.Event | None = None,
    **options: Unpack[ReplayOptions],
) -> RunResult:
    """Rebuild `out`'s shards from the store alone, opening no socket; see `replay_config`."""
    return await _annotate(replay_config(input, task=task, out=out, **options), interrupt=interrupt)


def annotate(input: str | Path, *, task: str | Task, out: str | Path, **options: Unpack[AnnotateOptions]) -> RunResult:
    """`annotate_async` for code outside an event loop (a script). In a notebook, await
    `annotate_async` instead: its loop is already running."""
    return _run_sync(annotate_async(input, task=task, out=out, **options))


def replay(input: str | Path, *, task: str | Task, out: str | Path, **options: Unpack[ReplayOptions]) -> RunResult:
    """`replay_async` for code outside an event loop."""
    return _run_sync(replay_async(input, task=task, out=out, **options))


def read_records(out: str | Path) -> Iterator[dict[str, Any]]:
    """Every record of a run's shards (or of a shard file or glob), as a dict, in input order.
    A bad line raises ShardFormatError naming its file and line; no shards there, a UsageError."""
    try:
        for record in _iter_records(out):
            yield record.to_dict()
    except FileNotFoundError as exc:
        raise UsageError(f"cannot read records from {out}: {exc}") from None


def parse_rate(value: float | str) -> float:
    if value == "auto":
        return 1.0  # without a budget, "auto" explains every example
    try:
        rate = float(value)
    except ValueError:
        raise UsageError(f"the rationale rate must be 'auto' or a number in [0, 1], not {value!r}") from None
    if not 0 <= rate <= 1:
        raise UsageError(f"the rationale rate must be between 0 and 1, not {rate}")
    return rate


def _run_sync(coroutine: Any) -> RunResult:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        result: RunResult = asyncio.run(coroutine)
        return result
    coroutine.close()
    raise UsageError("an event loop is already running here (a notebook?): use `await labelmill.annotate_async(...)`")


def _replayed_format(settings: dict[str, Any]) -> OutputFormat:
    """How the replayed run asked: text if it says nothing (it predates the schema) or its server refused it."""
    asked = settings.get("output_format")
    return "text" if settings.get("schema_refused") or asked not in ("json_schema", "auto") else asked


def _manifest_settings(out_dir: Path) -> dict[str, Any]:
    try:
        settings = read_manifest(out_dir).get("settings", {})
    except (OSError, ValueError):
        return {}
    return settings if isinstance(settings, dict) else {}
