"""Run counters, the live progress line, and the summary the CLI prints."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text


@dataclass(slots=True)
class RunStats:
    total: int | None = None  # known only when the input size is known
    done: int = 0
    records: int = 0
    failures: int = 0
    failure_reasons: dict[str, int] = field(default_factory=dict)
    cache_hits: int = 0
    requests: int = 0  # attempts sent to the teacher, retries included
    retries: int = 0
    rate_limited: int = 0  # 429 answers
    server_errors: int = 0
    rationales: int = 0
    prompt_tokens: int = 0  # paid in this run
    completion_tokens: int = 0
    dollars: float = 0.0  # paid in this run (None-priced responses add nothing)
    record_prompt_tokens: int = 0  # over every record written, cached or not
    record_completion_tokens: int = 0
    started: float = field(default_factory=time.monotonic)
    started_cpu: float = field(default_factory=time.process_time)

    def fail(self, reason: str) -> None:
        self.failures += 1
        self.failure_reasons[reason] = self.failure_reasons.get(reason, 0) + 1

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    def summary(self) -> dict[str, Any]:
        seconds = self.seconds
        return {
            "examples": self.done,
            "records": self.records,
            "failures": self.failures,
            "failure_reasons": dict(sorted(self.failure_reasons.items())),
            "cache_hits": self.cache_hits,
            "requests": self.requests,
            "retries": self.retries,
            "rate_limited_429": self.rate_limited,
            "server_errors": self.server_errors,
            "rationale_rate": round(self.rationales / self.records, 4) if self.records else 0.0,
            "tokens": {"prompt": self.prompt_tokens, "completion": self.completion_tokens},
            "record_tokens": {
                "prompt": self.record_prompt_tokens,
                "completion": self.record_completion_tokens,
            },
            "dollars": round(self.dollars, 8),
            "seconds": round(seconds, 3),
            "cpu_seconds": round(time.process_time() - self.started_cpu, 3),
            "examples_per_s": round(self.done / seconds, 1) if seconds > 0 else 0.0,
        }

    def line(self, show_dollars: bool, budget: float | None = None) -> str:
        seconds = max(self.seconds, 1e-9)
        total = f"/{self.total}" if self.total else ""
        parts = [
            f"{self.done}{total} done",
            f"{self.requests / seconds:.0f} req/s",
            f"{self.cache_hits} cached",
            f"{self.retries} retries",
            f"{self.rate_limited} 429s",
            f"{self.failures} failed",
            f"{self.prompt_tokens + self.completion_tokens} tokens",
        ]
        if show_dollars:
            parts.append(f"${self.dollars:.4f}" + (f" of ${budget:.2f}" if budget is not None else ""))
        if self.total and self.done:
            eta = (self.total - self.done) * seconds / self.done
            parts.append(f"ETA {eta:.0f}s")
        return " | ".join(parts)


class Progress:
    """A rich live line on stderr; silent when stderr is not a terminal or when disabled."""

    def __init__(self, stats: RunStats, enabled: bool, show_dollars: bool, budget: float | None = None) -> None:
        self.stats = stats
        self.show_dollars = show_dollars
        self.budget = budget
        self._live: Live | None = None
        if enabled and sys.stderr.isatty():
            console = Console(stderr=True)
            self._live = Live(Text(""), console=console, refresh_per_second=4, transient=False)

    def __enter__(self) -> Progress:
        if self._live is not None:
            self._live.start()
        return self

    def refresh(self) -> None:
        if self._live is not None:
            self._live.update(Text(self.stats.line(self.show_dollars, self.budget)))

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self.refresh()
            self._live.stop()
