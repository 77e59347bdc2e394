"""Stream rows from JSONL, CSV, Parquet or standard input, one at a time.

Each row comes with where it came from (`file`, `line`), so a bad row becomes a failure row that
names its place and the run goes on. Nothing here holds more than one Parquet batch in memory.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labelmill._exceptions import InputError
from labelmill.cache import loads_object


@dataclass(slots=True)  # per row: not frozen (a frozen __init__ is 5x slower)
class Row:
    index: int  # 0-based position among the input's rows
    file: str
    line: int  # 1-based line (JSONL, CSV) or row number (Parquet)
    data: dict[str, Any] | None
    error: str | None = None


def iter_rows(source: str) -> Iterator[Row]:
    """Rows of `source` (a path or `-`); the format comes from the suffix (stdin: JSONL)."""
    if source == "-":
        yield from _jsonl(io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace"), "<stdin>")
        return
    path = _checked(source)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        with open(path, encoding="utf-8", errors="replace") as fh:
            yield from _jsonl(fh, str(path))
    elif suffix == ".csv":
        with open(path, encoding="utf-8", errors="replace", newline="") as fh:
            yield from _csv(fh, str(path))
    elif suffix == ".parquet":
        yield from _parquet(path)


def check_input(source: str) -> None:
    """Raise InputError now, before a run creates anything, if `source` cannot be read."""
    if source != "-":
        _checked(source)


def _checked(source: str) -> Path:
    path = Path(source)
    if not path.is_file():
        raise InputError(f"input {source} does not exist or is not a file")
    if path.suffix.lower() not in (".jsonl", ".json", ".ndjson", ".csv", ".parquet"):
        raise InputError(f"input {source}: unknown format {path.suffix!r}; use .jsonl, .csv, .parquet or - (stdin)")
    return path


def count_rows(source: str) -> int | None:
    """How many rows `iter_rows(source)` will yield (bad lines included); None for stdin."""
    if source == "-":
        return None
    path = _checked(source)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    if suffix == ".csv":
        with open(path, encoding="utf-8", errors="replace", newline="") as fh:
            return sum(1 for _ in csv.DictReader(fh))
    count = 0
    with open(path, "rb") as fh:
        for line in fh:
            count += bool(line.strip())
    return count


def _jsonl(lines: io.TextIOBase | Any, name: str) -> Iterator[Row]:
    for index, number, text in _numbered(lines):
        yield jsonl_row(index, name, number, text)


def _numbered(lines: io.TextIOBase | Any) -> Iterator[tuple[int, int, str]]:
    """(row index, 1-based line number, text) of each line that is not blank."""
    index = 0
    for number, line in enumerate(lines, start=1):
        if line.strip():
            yield index, number, line
            index += 1


def jsonl_row(index: int, name: str, number: int, text: str) -> Row:
    try:
        return Row(index, name, number, loads_object(text))
    except ValueError as exc:
        return Row(index, name, number, None, f"invalid JSON: {exc}")


def iter_jsonl_lines(path: str) -> Iterator[tuple[int, int, str]]:
    """The unparsed rows of a JSONL file: parsing is left to whoever renders them."""
    with open(_checked(path), encoding="utf-8", errors="replace") as fh:
        yield from _numbered(fh)


def _csv(fh: io.TextIOBase | Any, name: str) -> Iterator[Row]:
    reader = csv.DictReader(fh)
    for index, data in enumerate(reader):
        line = reader.line_num
        if None in data:  # more cells than header columns
            yield Row(
                index,
                name,
                line,
                None,
                f"row has {len(data) - 1 + len(data[None])} cells, header has {len(reader.fieldnames or [])}",
            )
        else:
            yield Row(index, name, line, dict(data))


def _parquet(path: Path) -> Iterator[Row]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise InputError("reading Parquet needs pyarrow: pip install 'labelmill[parquet]'") from exc
    index = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        for data in batch.to_pylist():
            yield Row(index, str(path), index + 1, data)
            index += 1
