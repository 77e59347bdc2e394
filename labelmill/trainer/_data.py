"""Shard records -> the two tasks of distilling step-by-step.

Every record gives a label row (`[label] <text>` -> label); a record with a rationale, when the
explanation rate keeps it, also gives a rationale row (`[rationale] <text>` -> rationale). Which
rationales are kept is a pure function of (id, rate), so runs at several rates are comparable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from labelmill._exceptions import UsageError
from labelmill.cache import ShardRecord, iter_records

LABEL_PREFIX = "[label] "
RATIONALE_PREFIX = "[rationale] "
TASK_LABEL, TASK_RATIONALE = 0, 1


@dataclass(frozen=True, slots=True)
class Row:
    source: str
    target: str
    task: int  # TASK_LABEL or TASK_RATIONALE
    example_id: str


def unit_hash(text: str) -> float:
    """A stable number in [0, 1) for `text`: the order and slices by id that every run agrees on."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") / 2**64


def keeps_rationale(example_id: str, rate: float) -> bool:
    return rate >= 1.0 or (rate > 0.0 and unit_hash("rationale\x00" + example_id) < rate)


def is_validation(example_id: str, fraction: float) -> bool:
    return unit_hash("validation\x00" + example_id) < fraction


def is_test(example_id: str, fraction: float) -> bool:
    """The held-out test slice of `bench distill`: its own hash, independent of validation."""
    return unit_hash("test\x00" + example_id) < fraction


def load_records(path: str | Path) -> list[ShardRecord]:
    """Every record under `path` (shard errors say file:line); a clear error when there are none."""
    records = list(iter_records(path))
    if not records:
        raise UsageError(f"no records under {path}: give an annotate output directory, a shard file or a glob")
    return records


def to_rows(
    records: Iterable[ShardRecord],
    labels: str,
    explanation_rate: float,
    rationale_words: int | None = None,
    consistent_only: bool = False,
) -> list[Row]:
    """The label and rationale rows of `records`; `labels` is "teacher" or "gold"; rationales cut to
    their first `rationale_words` words when given; with `consistent_only`, no rationale whose stated
    conclusion contradicts its record's label (`rationale_agrees` False; one that states none stays)."""
    records = list(records)
    if labels == "gold":
        missing = sum(1 for r in records if r.gold is None)
        if missing:
            raise UsageError(f"--labels gold needs a gold label on every record; {missing} of {len(records)} have none")
    rows: list[Row] = []
    for record in records:
        target = record.gold if labels == "gold" and record.gold is not None else record.label
        rows.append(Row(LABEL_PREFIX + record.text, target, TASK_LABEL, record.id))
        if consistent_only and record.rationale_agrees is False:
            continue
        if record.rationale and keeps_rationale(record.id, explanation_rate):
            rationale = record.rationale
            if rationale_words is not None:
                rationale = " ".join(rationale.split()[:rationale_words])
            rows.append(Row(RATIONALE_PREFIX + record.text, rationale, TASK_RATIONALE, record.id))
    return rows


def split(records: list[ShardRecord], fraction: float) -> tuple[list[ShardRecord], list[ShardRecord], str | None]:
    """A deterministic validation slice by id hash (never the test set: that is `evaluate`'s).

    Validation rows are never training rows. When the slice of a small corpus comes out empty,
    the record whose id hashes lowest is held out instead, and the note says so."""
    if not 0.0 < fraction < 1.0:
        raise UsageError(f"the validation fraction must be between 0 and 1, not {fraction}")
    if len(records) < 2:
        raise UsageError(f"{len(records)} record: too few to hold out a validation slice; give --eval-split")
    train = [r for r in records if not is_validation(r.id, fraction)]
    valid = [r for r in records if is_validation(r.id, fraction)]
    if valid and train:
        return train, valid, None
    lowest = min(records, key=lambda r: unit_hash("validation\x00" + r.id))
    note = (
        f"the {fraction:.0%} validation slice of {len(records)} records came out "
        f"{'empty' if not valid else 'as all of them'}: validating on 1 held-out record ({lowest.id})"
    )
    return [r for r in records if r is not lowest], [lowest], note
