"""`OUT/batches.json`: the batches of a run that are in flight, written atomically at every step.

Every batch has a name (also its uploaded file's name), its input file in `OUT/.batches/NAME.jsonl`
(the request lines exactly as uploaded) and a side file `NAME.meta.jsonl` (key, prompt tag, whether
it explains, the dollars reserved for it). Its status moves

    prepared -> uploaded -> creating -> (the server's: validating, in_progress, finalizing, ...)
             -> collected

and is saved *before* each call that may leave something on the server (an upload, a create), so a
run killed at any moment finds out on its rerun what it did: a `prepared` batch whose file the
server has (by name) is not uploaded again, and a `creating` batch whose batch the server has (by
input file) is not created again. Keys in a live batch are never uploaded again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from labelmill.cache import write_json_atomic

STATE_FILE = "batches.json"
FILES_DIR = ".batches"
DONE = frozenset({"collected"})
FINISHED = frozenset({"completed", "expired", "cancelled", "failed"})  # the server is done with it


@dataclass(slots=True)
class Meta:
    key: str
    tag: str
    rationale: bool
    worst_usd: float  # reserved for this line (its worst case at batch prices)


@dataclass(slots=True)
class BatchRecord:
    name: str
    attempt: int  # 1 for the first submission of its keys, 2 for their resubmission, ...
    requests: int
    reserved_usd: float  # still reserved: the whole worst case, released when the batch is collected
    status: str = "prepared"
    file_id: str | None = None
    batch_id: str | None = None
    spent_usd: float = 0.0
    answered: int = 0
    failed: int = 0
    resubmitted: int = 0

    @property
    def live(self) -> bool:
        return self.status not in DONE


@dataclass(slots=True)
class BatchState:
    out_dir: Path
    base_url: str = ""
    model: str = ""
    batches: list[BatchRecord] = field(default_factory=list)
    failures: dict[str, list[str]] = field(default_factory=dict)  # key -> [reason, detail], for the run

    @property
    def path(self) -> Path:
        return self.out_dir / STATE_FILE

    @property
    def files(self) -> Path:
        return self.out_dir / FILES_DIR

    @classmethod
    def load(cls, out_dir: Path) -> BatchState:
        path = out_dir / STATE_FILE
        if not path.exists():
            return cls(out_dir)
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(out_dir, data.get("base_url", ""), data.get("model", ""),
                   [BatchRecord(**b) for b in data.get("batches", [])], dict(data.get("failures", {})))  # fmt: skip

    def save(self) -> None:
        """Write the whole state so a crash leaves the old file or the new one (file and directory
        fsynced, as the shard writer does)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        data = {"version": 1, "base_url": self.base_url, "model": self.model,
                "batches": [asdict(b) for b in self.batches], "failures": self.failures}  # fmt: skip
        write_json_atomic(self.path, data)

    def live(self) -> list[BatchRecord]:
        return [b for b in self.batches if b.live]

    def input_path(self, record: BatchRecord) -> Path:
        return self.files / f"{record.name}.jsonl"

    def meta_path(self, record: BatchRecord) -> Path:
        return self.files / f"{record.name}.meta.jsonl"

    def metas(self, record: BatchRecord) -> Iterator[Meta]:
        with open(self.meta_path(record), encoding="utf-8") as fh:
            for line in fh:
                yield Meta(**json.loads(line))

    def bodies(self, record: BatchRecord) -> dict[str, dict[str, Any]]:
        """custom_id -> request body, from the input file as uploaded."""
        return read_bodies(self.input_path(record))

    def live_keys(self) -> set[str]:
        return {meta.key for record in self.live() for meta in self.metas(record)}

    def summary(self) -> dict[str, Any]:
        by_status: dict[str, int] = {}
        for record in self.batches:
            by_status[record.status] = by_status.get(record.status, 0) + 1
        return {
            "batches": len(self.batches),
            "by_status": dict(sorted(by_status.items())),
            "requests": sum(b.requests for b in self.batches if b.attempt == 1),
            "answered": sum(b.answered for b in self.batches),
            "failed": len(self.failures),
            "resubmitted": sum(b.resubmitted for b in self.batches),
            "spent_usd": round(sum(b.spent_usd for b in self.batches), 8),
            "reserved_usd": round(sum(b.reserved_usd for b in self.batches if b.live), 8),
        }


def progress_line(batches: dict[str, Any]) -> str:
    states = ", ".join(f"{n} {status}" for status, n in batches["by_status"].items())
    return (f"batches: {batches['batches']} ({states}); {batches['answered']} answered, {batches['failed']} failed, "
            f"{batches['resubmitted']} resubmitted; ${batches['spent_usd']:.4f} spent, "
            f"${batches['reserved_usd']:.4f} reserved")  # fmt: skip


def read_bodies(path: Path) -> dict[str, dict[str, Any]]:
    """custom_id -> request body of a batch input file (ours, or one exported for a batch run by hand)."""
    with open(path, encoding="utf-8") as fh:
        return {(row := json.loads(line))["custom_id"]: row["body"] for line in fh if line.strip()}
