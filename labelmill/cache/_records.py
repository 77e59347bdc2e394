"""The shard record: one annotated example, one JSON object per line.

Records are a pure function of the input and the store, so `replay` rebuilds shards byte for byte:
nothing in a record depends on the run that wrote it. Run facts (cache hits, dollars paid by this
run, timings) live in the manifest and the summary. `cost_usd` is the response's usage at the
list (online) price, as the store recorded it, whichever route bought it: records do not say the
route (a batch answer cost half that; the summary and the manifest say what was paid).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from labelmill._json import dumps, loads

T = TypeVar("T")

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class TeacherRef:
    model: str
    prompt: str  # "<task>/<variant>@<prompt hash>"
    key: str  # the request key in the store


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class ShardRecord:
    id: str
    index: int
    text: str
    label: str
    rationale: str | None
    choices: list[str] | None
    gold: str | None
    teacher: TeacherRef
    usage: Usage
    cost_usd: float | None
    confidence: float | None = None
    rationale_words: int | None = None  # the rationale's word count (None: no rationale)
    rationale_agrees: bool | None = None  # its stated conclusion is the label (None: it states none)

    def to_json(self) -> str:
        """One line, keys in schema order, UTF-8 text kept as is."""
        return dumps(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """The record as the shard line holds it, keys in schema order."""
        # A hand-built dict: dataclasses.asdict deep-copies and is the slowest part of writing.
        return {
            "id": self.id,
            "index": self.index,
            "text": self.text,
            "label": self.label,
            "rationale": self.rationale,
            "choices": self.choices,
            "gold": self.gold,
            "teacher": {"model": self.teacher.model, "prompt": self.teacher.prompt, "key": self.teacher.key},
            "usage": {
                "prompt_tokens": self.usage.prompt_tokens,
                "completion_tokens": self.usage.completion_tokens,
            },
            "cost_usd": self.cost_usd,
            "confidence": self.confidence,
            "rationale_words": self.rationale_words,
            "rationale_agrees": self.rationale_agrees,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShardRecord:
        """Build a record from parsed JSON; raises ValueError saying which field is wrong."""
        teacher = _field(data, "teacher", dict)
        usage = _field(data, "usage", dict)
        choices = _optional(data, "choices", list)
        return cls(
            id=_field(data, "id", str),
            index=_field(data, "index", int),
            text=_field(data, "text", str),
            label=_field(data, "label", str),
            rationale=_optional(data, "rationale", str),
            choices=[str(c) for c in choices] if choices is not None else None,
            gold=_optional(data, "gold", str),
            teacher=TeacherRef(
                model=_field(teacher, "model", str),
                prompt=_field(teacher, "prompt", str),
                key=_field(teacher, "key", str),
            ),
            usage=Usage(
                prompt_tokens=_field(usage, "prompt_tokens", int),
                completion_tokens=_field(usage, "completion_tokens", int),
            ),
            cost_usd=_optional_number(data, "cost_usd"),
            confidence=_optional_number(data, "confidence"),
            rationale_words=_optional(data, "rationale_words", int),
            rationale_agrees=_optional(data, "rationale_agrees", bool),
        )


def loads_object(line: str) -> dict[str, Any]:
    """One JSON object from a line; ValueError (with what is wrong) for anything else."""
    data = loads(line)
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    return data


def _field(data: dict[str, Any], name: str, kind: type[T]) -> T:
    if name not in data:
        raise ValueError(f"missing field {name!r}")
    value = data[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"field {name!r} should be {kind.__name__}, got {type(value).__name__}")
    return value


def _optional(data: dict[str, Any], name: str, kind: type[T]) -> T | None:
    if data.get(name) is None:
        return None
    return _field(data, name, kind)


def _optional_number(data: dict[str, Any], name: str) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"field {name!r} should be a number, got {type(value).__name__}")
    return float(value)
