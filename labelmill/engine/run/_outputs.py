"""What a run writes besides shards: failure rows, the id registry, records built from responses."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labelmill.cache import ShardRecord, StoredResponse, TeacherRef, Usage
from labelmill.engine.tasks._parse import parse_response
from labelmill.engine.tasks._tasks import VARIANT_RATIONALE, Example, Task

FAILURES = "failures.jsonl"


@dataclass(frozen=True, slots=True)
class Failure:
    index: int
    id: str | None
    file: str
    line: int
    reason: str  # bad_input, duplicate_id, parse_error, refused, gave_up, not_cached, not_attempted
    detail: str
    key: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "index": self.index,
                "id": self.id,
                "file": self.file,
                "line": self.line,
                "reason": self.reason,
                "detail": self.detail,
                "key": self.key,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )


class FailureLog:
    """`OUT/failures.jsonl`, written under a temporary name and renamed on close."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / FAILURES
        self._tmp = out_dir / f".{FAILURES}.tmp"
        self._handle = open(self._tmp, "w", encoding="utf-8")  # noqa: SIM115 (closed in close())

    def write(self, failure: Failure) -> None:
        self._handle.write(failure.to_json() + "\n")

    def close(self) -> None:
        if self._handle.closed:
            return
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        os.replace(self._tmp, self.path)


class IdRegistry:
    """Ids seen so far, on disk (memory stays flat for any corpus), with the line that had each."""

    def __init__(self, directory: Path) -> None:
        fd, name = tempfile.mkstemp(prefix=".ids-", suffix=".sqlite", dir=directory)
        os.close(fd)
        self._path = Path(name)
        self._db = sqlite3.connect(name, check_same_thread=False)
        self._db.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-8000;"
            "CREATE TABLE ids (id TEXT PRIMARY KEY, line INTEGER NOT NULL) WITHOUT ROWID;"
        )

    def first_lines(self, items: list[tuple[str, int]]) -> dict[int, int]:
        """For each position of `items` whose id was seen before, the line where it was first seen."""
        earlier: dict[str, int] = {}
        ids = list({i for i, _ in items})
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            earlier.update(self._db.execute(f"SELECT id, line FROM ids WHERE id IN ({marks})", chunk))
        duplicates: dict[int, int] = {}
        fresh: list[tuple[str, int]] = []
        for position, (example_id, line) in enumerate(items):
            if example_id in earlier:
                duplicates[position] = earlier[example_id]
            else:
                earlier[example_id] = line
                fresh.append((example_id, line))
        self._db.executemany("INSERT INTO ids VALUES (?, ?)", fresh)
        return duplicates

    def close(self) -> None:
        self._db.close()
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()


def confidence_of(response: dict[str, Any]) -> float | None:
    """The smallest margin, in probability, between the top two candidates of any answer token.

    A confident teacher puts almost all mass on one token at every step; an unsure one splits it
    somewhere, and that step is where the label is decided.
    """
    try:
        logprobs = response["choices"][0].get("logprobs")  # absent in most answers: no exception then
    except (KeyError, IndexError, TypeError, AttributeError):
        return None
    tokens = logprobs.get("content") if isinstance(logprobs, dict) else None
    margins = []
    for token in tokens or []:
        top = sorted((float(t["logprob"]) for t in token.get("top_logprobs") or []), reverse=True)
        if len(top) >= 2:
            margins.append(math.exp(top[0]) - math.exp(top[1]))
    return round(min(margins), 6) if margins else None


def build_record(
    task: Task, example: Example, variant: str, entry: StoredResponse, confidence: float | None = None
) -> ShardRecord | str:
    """The shard record for a response, or the reason it cannot be one (`refused: ...` etc.)."""
    try:
        choice = entry.response["choices"][0]
        content = choice["message"].get("content") or ""
        finish = choice.get("finish_reason")
    except (KeyError, IndexError, TypeError, AttributeError):
        return "parse_error: the response has no choices[0].message"
    if finish == "content_filter" or not content.strip():
        return f"refused: the teacher returned no answer (finish_reason={finish})"
    options = example.choices if task.multiple_choice else list(task.labels)
    want_rationale = variant == VARIANT_RATIONALE
    parsed = parse_response(content, options or [], task.aliases, want_rationale)
    if parsed.label is None:
        return f"parse_error: no valid label in {content[:200]!r}"
    usage: Any = entry.response.get("usage") or {}
    return ShardRecord(
        id=example.id,
        index=example.index,
        text=example.text,
        label=parsed.label,
        rationale=parsed.rationale,
        choices=example.choices,
        gold=example.gold,
        teacher=TeacherRef(model=str(entry.request.get("model", "")), prompt=entry.prompt_version, key=entry.key),
        usage=Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)),
        cost_usd=entry.cost_usd,
        confidence=confidence_of(entry.response) if confidence is None else confidence,
    )
