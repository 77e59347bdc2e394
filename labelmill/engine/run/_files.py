"""Everything a run writes under OUT, opened in one place and closed in one place.

    shards (a new set beside the old)   failures.jsonl (under a temporary name)   the id registry

`commit()` swaps the new shard set and failures.jsonl in; leaving without it (an error) throws
them away and keeps the earlier run's files as they were. Either way no temporary file is left.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

from labelmill.cache import ShardWriter
from labelmill.engine.run._failures import FailureLog, IdRegistry


class RunFiles:
    def __init__(self, out_dir: Path, shard_size: int) -> None:
        self.out_dir = out_dir
        self.shard_size = shard_size

    def __enter__(self) -> RunFiles:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.shards = ShardWriter(self.out_dir, shard_size=self.shard_size)
        try:
            self.failures = FailureLog(self.out_dir)
            try:
                self.ids = IdRegistry(self.out_dir)
            except BaseException:
                self.failures.discard()
                raise
        except BaseException:
            self.shards.abort()
            raise
        self._committed = False
        return self

    def commit(self, manifest_extra: dict[str, Any], complete: bool) -> None:
        self.failures.close()
        self.shards.manifest_extra = manifest_extra
        self.shards.close(complete=complete)
        self._committed = True

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.ids.close()
        if not self._committed:
            self.failures.discard()
            self.shards.abort()
