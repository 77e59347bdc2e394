"""Shard files and the manifest.

Writing: a new set is written beside the old one, in `OUT/.shards.new/`: records go to
`.part-00000.jsonl.tmp`, and when a shard holds `shard_size` records it is flushed, fsynced and
renamed to `part-00000.jsonl`. Only `close()` swaps the new set in as `OUT/shards/` and then
writes `OUT/manifest.json` atomically (temp file, fsync, rename), listing every shard with its
count and sha256. A writer that raises, or a process killed mid-run, leaves the earlier set and
its manifest as they were; the next writer clears what it left.

Reading: `iter_records(path)` accepts an output directory, a shard file or a glob and reports a bad
line as `file:line: what is wrong`.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from labelmill._exceptions import ShardFormatError
from labelmill._version import __version__
from labelmill.cache._records import SCHEMA_VERSION, ShardRecord, loads_object

SHARDS_DIR = "shards"
STAGING_DIR = ".shards.new"  # the set being written
RETIRED_DIR = ".shards.old"  # the set being replaced, for the moment of the swap
MANIFEST = "manifest.json"
DEFAULT_SHARD_SIZE = 10_000


def shard_name(number: int) -> str:
    return f"part-{number:05d}.jsonl"


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in `directory` durable (a file's own fsync does not)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to `path` so that readers see the old or the new file, never a torn one."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, ensure_ascii=False, indent=2, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


@dataclass(slots=True)
class ShardInfo:
    path: str  # relative to the output directory
    records: int
    sha256: str


@dataclass(slots=True)
class _OpenShard:
    number: int
    tmp_path: Path
    handle: IO[bytes]
    digest: Any = field(default_factory=hashlib.sha256)
    records: int = 0


class ShardWriter:
    """Appends records to rotating shards in the order given; keeps the manifest current.

    A writer owns its output directory: on open it clears what an earlier writer left half done;
    `close()` replaces the earlier set whole.
    """

    def __init__(
        self,
        out_dir: str | Path,
        shard_size: int = DEFAULT_SHARD_SIZE,
        manifest_extra: Mapping[str, Any] | None = None,
    ) -> None:
        if shard_size < 1:
            raise ValueError("shard_size must be at least 1")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        _recover(self.out_dir)
        self.shard_dir = self.out_dir / STAGING_DIR
        self.shard_dir.mkdir()
        self.shard_size = shard_size
        self.manifest_extra: dict[str, Any] = dict(manifest_extra or {})
        self.shards: list[ShardInfo] = []
        self.records = 0
        self._open: _OpenShard | None = None
        self._closed = False
        self._complete = False

    def write(self, record: ShardRecord) -> None:
        self.write_line(record.to_json())

    def write_line(self, line: str) -> None:
        """Append one already-serialised record (no newline)."""
        self.write_lines([line])

    def write_lines(self, lines: Sequence[str]) -> None:
        """Append already-serialised records (no newlines), in order; one write per shard touched."""
        if self._closed:
            raise ValueError("the shard writer is closed")
        start = 0
        while start < len(lines):
            shard = self._open or self._start_shard()
            chunk = lines[start : start + self.shard_size - shard.records]
            data = ("\n".join(chunk) + "\n").encode("utf-8")
            shard.handle.write(data)
            shard.digest.update(data)
            shard.records += len(chunk)
            self.records += len(chunk)
            start += len(chunk)
            if shard.records >= self.shard_size:
                self._finish_shard()

    def _start_shard(self) -> _OpenShard:
        number = len(self.shards)
        tmp_path = self.shard_dir / f".{shard_name(number)}.tmp"
        self._open = _OpenShard(number=number, tmp_path=tmp_path, handle=open(tmp_path, "wb"))  # noqa: SIM115 (closed in _finish_shard)
        return self._open

    def _finish_shard(self) -> None:
        shard = self._open
        if shard is None:
            return
        shard.handle.flush()
        os.fsync(shard.handle.fileno())
        shard.handle.close()
        final = self.shard_dir / shard_name(shard.number)
        os.replace(shard.tmp_path, final)
        fsync_dir(self.shard_dir)
        self.shards.append(ShardInfo(f"{SHARDS_DIR}/{final.name}", shard.records, shard.digest.hexdigest()))
        self._open = None

    def manifest(self) -> dict[str, Any]:
        return {
            **self.manifest_extra,
            "schema_version": SCHEMA_VERSION,
            "labelmill_version": __version__,
            "complete": self._closed and self._complete,
            "records": self.records if self._closed else sum(s.records for s in self.shards),
            "shards": [{"path": s.path, "records": s.records, "sha256": s.sha256} for s in self.shards],
        }

    def write_manifest(self) -> None:
        write_json_atomic(self.out_dir / MANIFEST, self.manifest())

    def close(self, complete: bool = True) -> None:
        """Finish the open shard, swap the new set in for the earlier one, write the manifest.

        `complete=False` (an interrupted run) keeps the records written so far and says so in the
        manifest.
        """
        if self._closed:
            return
        self._finish_shard()
        self._closed = True
        self._complete = complete
        current, retired = self.out_dir / SHARDS_DIR, self.out_dir / RETIRED_DIR
        if current.exists():
            os.replace(current, retired)
        os.replace(self.shard_dir, current)
        fsync_dir(self.out_dir)
        self.shard_dir = current
        self.write_manifest()
        shutil.rmtree(retired, ignore_errors=True)

    def abort(self) -> None:
        """Stop and throw the new set away: the earlier set and its manifest stay as they were."""
        if self._open is not None:
            self._open.handle.close()
            self._open = None
        if not self._closed:
            self._closed = True
            shutil.rmtree(self.shard_dir, ignore_errors=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _recover(out_dir: Path) -> None:
    """Clear what a writer killed mid-run left: its new set, or a swap it did not finish."""
    shutil.rmtree(out_dir / STAGING_DIR, ignore_errors=True)
    retired = out_dir / RETIRED_DIR
    if retired.exists():
        if (out_dir / SHARDS_DIR).exists():
            shutil.rmtree(retired)
        else:  # killed between the two renames: the earlier set is whole, its manifest names it
            os.replace(retired, out_dir / SHARDS_DIR)


def read_manifest(out_dir: str | Path) -> dict[str, Any]:
    with open(Path(out_dir) / MANIFEST, encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def shard_paths(path: str | Path) -> list[Path]:
    """The shard files a path names: an output dir (its manifest, else its shards/), a file, a glob."""
    target = Path(path)
    if target.is_dir():
        manifest = target / MANIFEST
        if manifest.is_file():
            return [target / s["path"] for s in read_manifest(target)["shards"]]
        inner = target / SHARDS_DIR if (target / SHARDS_DIR).is_dir() else target
        return sorted(inner.glob("part-*.jsonl"))
    if target.is_file():
        return [target]
    matches = sorted(Path(p) for p in glob.glob(str(path)))
    if not matches:
        raise FileNotFoundError(f"no shards at {path}: give an output directory, a shard file or a glob")
    return matches


def iter_records(path: str | Path) -> Iterator[ShardRecord]:
    """Every record under `path`, in shard order; a bad line raises ShardFormatError(file:line)."""
    for shard in shard_paths(path):
        with open(shard, encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    yield ShardRecord.from_dict(loads_object(line))
                except ValueError as exc:
                    raise ShardFormatError(str(shard), number, str(exc)) from None
