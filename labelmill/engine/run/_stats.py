"""Run counters, the live progress line, and the summary the CLI prints."""

from __future__ import annotations

import collections
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

from rich.console import Console
from rich.live import Live
from rich.text import Text

from labelmill.cache import ShardWriter
from labelmill.engine.run._failures import Failure, FailureLog
from labelmill.engine.run._requests import Outcome
from labelmill.engine.teacher import TeacherCounters


@dataclass(slots=True)
class RationaleStats:
    """The records' rationales: their lengths in words, and whether each one's stated conclusion
    agrees with its label (`engine/tasks/_rationale.py`)."""

    words: collections.Counter[int] = field(default_factory=collections.Counter)
    agree: int = 0
    contradict: int = 0
    unstated: int = 0

    def add(self, words: int, agrees: bool | None) -> None:
        self.words[words] += 1
        if agrees is None:
            self.unstated += 1
        elif agrees:
            self.agree += 1
        else:
            self.contradict += 1

    def summary(self) -> dict[str, Any]:
        count = sum(self.words.values())
        stated = self.agree + self.contradict
        agreement = {"agree": self.agree, "contradict": self.contradict, "unstated": self.unstated,
                     "rate": round(self.agree / stated, 4) if stated else None}  # fmt: skip
        if not count:
            return {"count": 0, "words": None, "agreement": agreement}
        lengths = sorted(self.words.items())  # (words, how many): no list of every rationale

        def at(rank: int) -> int:  # the length of the rank-th shortest rationale, from 0
            seen = 0
            for length, times in lengths:
                seen += times
                if rank < seen:
                    return length
            return lengths[-1][0]

        words = {"min": lengths[0][0], "median": at(count // 2), "p90": at(count * 9 // 10), "max": lengths[-1][0],
                 "mean": round(sum(length * times for length, times in lengths) / count, 2)}  # fmt: skip
        return {"count": count, "words": words, "agreement": agreement}


@dataclass(slots=True)
class RunStats:
    total: int | None = None  # known only when the input size is known
    done: int = 0
    records: int = 0
    failures: int = 0
    failure_reasons: dict[str, int] = field(default_factory=dict)
    cache_hits: int = 0
    teacher: TeacherCounters = field(default_factory=TeacherCounters)  # requests, retries, 429s, tokens paid
    rationales: int = 0
    rationale_properties: RationaleStats = field(default_factory=RationaleStats)
    dollars: float = 0.0  # paid in this run (None-priced responses add nothing)
    record_prompt_tokens: int = 0  # over every record written, cached or not
    record_completion_tokens: int = 0
    output_format: Callable[[], dict[str, Any]] | None = None  # asked, used, schema refusals
    started: float = field(default_factory=time.monotonic)
    started_cpu: float = field(default_factory=time.process_time)

    def fail(self, reason: str) -> None:
        self.failures += 1
        self.failure_reasons[reason] = self.failure_reasons.get(reason, 0) + 1

    @property
    def requests(self) -> int:
        return self.teacher.requests

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
            "requests": self.teacher.requests,
            "retries": self.teacher.retries,
            "rate_limited_429": self.teacher.rate_limited,
            "server_errors": self.teacher.server_errors,
            "rationale_rate": round(self.rationales / self.records, 4) if self.records else 0.0,
            "rationales": self.rationale_properties.summary(),
            "tokens": {
                "prompt": self.teacher.prompt_tokens,
                "completion": self.teacher.completion_tokens,
                "cached_prompt": self.teacher.cached_prompt_tokens,
            },
            "record_tokens": {
                "prompt": self.record_prompt_tokens,
                "completion": self.record_completion_tokens,
            },
            "dollars": round(self.dollars, 8),
            "seconds": round(seconds, 3),
            "cpu_seconds": round(time.process_time() - self.started_cpu, 3),
            "examples_per_s": round(self.done / seconds, 1) if seconds > 0 else 0.0,
            # the RPM/TPM limits in force, where they came from, and the rates achieved against them
            "limits": self.teacher.limits(seconds) if self.teacher.limits is not None else None,
            "output_format": self.output_format() if self.output_format is not None else None,
        }

    def line(self, show_dollars: bool, budget: float | None = None) -> str:
        seconds = max(self.seconds, 1e-9)
        total = f"/{self.total}" if self.total else ""
        parts = [
            f"{self.done}{total} done",
            f"{self.requests / seconds:.0f} req/s",
            f"{self.cache_hits} cached",
            f"{self.teacher.retries} retries",
            f"{self.teacher.rate_limited} 429s",
            f"{self.failures} failed",
            f"{self.teacher.prompt_tokens + self.teacher.completion_tokens} tokens",
        ]
        parts += self._limit_parts(seconds)
        if show_dollars:
            parts.append(f"${self.dollars:.4f}" + (f" of ${budget:.2f}" if budget is not None else ""))
        if self.total and self.done:
            eta = (self.total - self.done) * seconds / self.done
            parts.append(f"ETA {eta:.0f}s")
        return " | ".join(parts)

    def _limit_parts(self, seconds: float) -> list[str]:
        """`tok/min 588k of 600k (flag)` for each limit in force."""
        if self.teacher.limits is None:
            return []
        parts = []
        for kind, short in (("requests", "req/min"), ("tokens", "tok/min")):
            limit = self.teacher.limits(seconds)[kind]
            if limit["limit_per_min"]:
                parts.append(f"{short} {_compact(limit['achieved_per_min'])} of {_compact(limit['limit_per_min'])} "
                             f"({limit['source']})")  # fmt: skip
        return parts


def _compact(number: float) -> str:
    return f"{number / 1e6:.2f}M" if number >= 1e6 else f"{number / 1e3:.1f}k" if number >= 1e4 else f"{number:.0f}"


class LiveLine:
    """A rich live line on stderr, redrawn from `render`; silent when stderr is not a terminal or
    when disabled (then `shown` is False and the caller may log instead)."""

    def __init__(self, render: Callable[[], str], enabled: bool) -> None:
        self.render = render
        self._live: Live | None = None
        if enabled and sys.stderr.isatty():
            self._live = Live(Text(""), console=Console(stderr=True), refresh_per_second=4, transient=False)

    @property
    def shown(self) -> bool:
        return self._live is not None

    def __enter__(self) -> Self:
        if self._live is not None:
            self._live.start()
        return self

    def refresh(self) -> None:
        if self._live is not None:
            self._live.update(Text(self.render()))

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self.refresh()
            self._live.stop()


class Progress(LiveLine):
    """The run's live line: done, rate, requests, dollars (`RunStats.line`)."""

    def __init__(self, stats: RunStats, enabled: bool, show_dollars: bool, budget: float | None = None) -> None:
        super().__init__(lambda: stats.line(show_dollars, budget), enabled)
        self.stats = stats


class OrderedOutput:
    """Outcomes arrive in any order; records go to shards and failures to failures.jsonl in input order."""

    def __init__(self, shards: ShardWriter, failures: FailureLog, stats: RunStats, on_written: Callable[[], None]):
        self.shards = shards
        self.failures = failures
        self.stats = stats
        self.on_written = on_written  # once per outcome written (frees a place in the read-ahead window)
        self.pending: dict[int, Outcome] = {}
        self.next_seq = 0

    def put(self, seq: int, outcome: Outcome) -> None:
        self.pending[seq] = outcome
        while self.next_seq in self.pending:
            self.write([self.pending.pop(self.next_seq)])
            self.on_written()

    def write(self, outcomes: list[Outcome]) -> None:
        """Write outcomes that come next in input order, in one shard write."""
        lines = []
        for done in outcomes:
            if isinstance(done, Failure):
                self.failures.write(done)
                self.stats.fail(done.reason)
            else:
                lines.append(done.line)
                self.stats.rationales += done.rationale
                if done.rationale_words is not None:
                    self.stats.rationale_properties.add(done.rationale_words, done.rationale_agrees)
                self.stats.record_prompt_tokens += done.prompt_tokens
                self.stats.record_completion_tokens += done.completion_tokens
        self.shards.write_lines(lines)
        self.stats.records += len(lines)
        self.stats.done += len(outcomes)
        self.next_seq += len(outcomes)
