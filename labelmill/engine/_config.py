"""Settings of one annotate or replay run."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labelmill._exceptions import UsageError
from labelmill.cache import DEFAULT_SHARD_SIZE
from labelmill.engine.money import Prices
from labelmill.engine.tasks._schema import OUTPUT_FORMATS, OutputFormat
from labelmill.engine.tasks._tasks import Task
from labelmill.engine.teacher._retry import RetryPolicy

DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_CONCURRENCY = 32


def env_base_url() -> str:
    return os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL


@dataclass(slots=True)
class AnnotateConfig:
    source: str
    task: Task
    out_dir: Path
    cache_dir: Path
    model: str = DEFAULT_MODEL
    base_url: str = DEFAULT_BASE_URL
    api_key: str | None = field(default=None, repr=False)  # never printed, stored or logged
    rationale_rate: float = 1.0
    seed: int = 0
    temperature: float = 0.0
    max_tokens: int | None = None  # overrides the task prompts' max_tokens
    concurrency: int = DEFAULT_CONCURRENCY
    rpm: float | None = None
    tpm: float | None = None
    tokenizer: str | None = None  # a local tokenizer.json that counts prompts exactly, for TPM pacing
    prices: Prices | None = None  # None: dollars unknown (a budget then cannot be used)
    budget: float | None = None  # USD; spend never exceeds it
    auto_rate: bool = False  # the planner picks the explanation rate that spends the budget
    select: str = "random"  # or "uncertainty": label all with logprobs, explain the least confident
    explain_ids: frozenset[str] | None = None  # uncertainty, second pass: the examples to explain
    output_format: OutputFormat | None = None  # text|json_schema|auto; None: the task's, else auto
    shots: int = 0  # few-shot label+rationale prompts with this many demonstrations from the input
    limit: int | None = None
    shard_size: int = DEFAULT_SHARD_SIZE
    timeout_s: float = 60.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker_s: float = 120.0
    grace_s: float = 5.0
    replay: bool = False
    route: str = "online"  # "batch": the Batch API at its price; "auto": batch, then online for what it missed
    detach: bool = False  # batch route: submit, collect what is finished, and return (PARTIAL while in flight)
    batch_poll_s: float = 60.0  # the longest wait between two polls of the batches in flight
    batch_max_requests: int = 50_000  # lines of one batch input file
    batch_max_bytes: int = 200 * 1024 * 1024
    batch_attempts: int = 3  # submissions of a key whose lines expire or fail with 429/5xx
    replay_workers: int | None = None  # processes resolving a JSONL replay; None: one per core past 4 MB
    progress: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.rationale_rate <= 1.0:
            raise UsageError("the rationale rate must be between 0 and 1")
        if self.concurrency < 1:
            raise UsageError("concurrency must be at least 1")
        if self.budget is not None and self.prices is None and not self.replay:
            raise UsageError(
                f"a budget needs prices, and model {self.model!r} is not in the built-in table: "
                "give --price-in and --price-out (USD per 1M tokens) or --prices FILE"
            )
        if self.auto_rate and self.budget is None and not self.replay:
            raise UsageError("--rationale-rate auto plans against a budget: give --budget USD")
        if self.route not in ("online", "batch", "auto"):
            raise UsageError(f"--route is online, batch or auto, not {self.route!r}")
        if self.output_format is not None and self.output_format not in OUTPUT_FORMATS:
            raise UsageError(f"--output-format is text, json_schema or auto, not {self.output_format!r}")
        if self.select == "uncertainty" and self.budget is None and not self.replay:
            raise UsageError("--select uncertainty spends what a budget leaves after labelling: give --budget USD")

    @property
    def prefers_stored(self) -> bool:
        """Whether a stored answer of either variant is used (budget plans, uncertainty)."""
        return self.auto_rate or self.select == "uncertainty"

    @property
    def format_asked(self) -> OutputFormat:
        """The output format asked for: the run's, else the task's, else auto."""
        return self.output_format or self.task.output_format or "auto"

    @property
    def window(self) -> int:
        """How far ahead of the last written row the reader may run."""
        return max(1024, 8 * self.concurrency)

    @property
    def prices_known(self) -> bool:
        return self.prices is not None

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        return None if self.prices is None else self.prices.cost(prompt_tokens, completion_tokens)

    def request_settings(self) -> dict[str, Any]:
        """What decides each request: replay reads these back from the manifest."""
        return {
            "model": self.model,
            "rationale_rate": self.rationale_rate,
            "seed": self.seed,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "shots": self.shots,
            "output_format": self.format_asked,
            "selection": "uncertainty" if self.select == "uncertainty" else "auto" if self.auto_rate else "fixed",
            "route": self.route,  # which API bought the answers: records do not say, the manifest does
        }
