"""What a run writes besides shards: failure rows and the id registry."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from labelmill.cache import fsync_dir

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
        fsync_dir(self.path.parent)

    def discard(self) -> None:
        """Throw this run's failure rows away: the earlier failures.jsonl stays as it was."""
        self._handle.close()
        self._tmp.unlink(missing_ok=True)


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
