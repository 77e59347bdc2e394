"""Content-addressed request keys.

A key is `sha256:<hex>` of the canonical JSON of everything that determines the teacher's answer:
the request body (model, messages, sampling parameters) and the prompt version tag. Transport
settings (API key, base URL, headers, timeouts) are never part of a body we build; the few body
fields that do not change the answer are dropped so that they cannot split the cache.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

KEY_PREFIX = "sha256:"

# Body fields that do not change what the model answers. Transport settings are listed too, so a
# caller that passes a whole settings dict still gets a key that ignores them.
IGNORED_FIELDS = frozenset({"api_key", "base_url", "headers", "extra_headers", "timeout", "user", "metadata", "store"})


def _normalise(value: Any) -> Any:
    """Make JSON-equal values serialise the same way.

    An integral float becomes an int (`temperature: 0` and `0.0` ask the same thing). Strings are
    kept byte for byte: NFC and NFD spellings of one text stay distinct, because the model sees
    different tokens for them and may answer differently; merging them would serve one prompt's
    answer to another.
    """
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is dict:
        return {k if type(k) is str else str(k): _normalise(v) for k, v in value.items()}
    if kind is list:
        return [_normalise(v) for v in value]
    if isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"non-finite number {value!r} cannot be part of a request key")
        return int(value) if value.is_integer() else value
    if isinstance(value, Mapping):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(v) for v in value]
    raise TypeError(f"{type(value).__name__} is not JSON data and cannot be part of a request key")


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8 (not ASCII escapes)."""
    return json.dumps(
        _normalise(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def key_material(body: Mapping[str, Any], prompt_version: str) -> dict[str, Any]:
    """What the key hashes: the answer-determining body fields plus the prompt version."""
    kept = {k: v for k, v in body.items() if k not in IGNORED_FIELDS}
    return {"body": kept, "prompt_version": prompt_version}


def request_key(body: Mapping[str, Any], prompt_version: str) -> str:
    """`sha256:<hex>` of the canonical request; any dict order gives the same key."""
    digest = hashlib.sha256(canonical_json(key_material(body, prompt_version))).hexdigest()
    return KEY_PREFIX + digest


_HOLE = "\x00labelmill:hole\x00"
_encode_str = json.encoder.encode_basestring  # how json.dumps(ensure_ascii=False) spells a str


class KeyTemplate:
    """Request keys for bodies that differ only in one string, e.g. the last message's content.

    Every request of a run shares its model, settings and prompt frame, and only the example's
    text changes. `request_key` normalises and serialises the whole body each time; this
    serialises it once with a placeholder and then hashes `before + spelling(text) + after`.
    Strings are never normalised, so the result is byte for byte the canonical JSON of the full
    body: `template.key(text) == request_key(body_with(text), prompt_version)`.
    """

    HOLE = _HOLE  # put this string where the text goes in the body given to the constructor

    def __init__(self, body_with_hole: Mapping[str, Any], prompt_version: str) -> None:
        text = canonical_json(key_material(body_with_hole, prompt_version)).decode("utf-8")
        before, *after = text.split(_encode_str(_HOLE))
        if len(after) != 1:
            raise ValueError("the body must hold KeyTemplate.HOLE exactly once")
        self._prefix = hashlib.sha256(before.encode("utf-8"))
        self._after = after[0].encode("utf-8")

    def key(self, value: str) -> str:
        digest = self._prefix.copy()
        digest.update(_encode_str(value).encode("utf-8"))
        digest.update(self._after)
        return KEY_PREFIX + digest.hexdigest()
