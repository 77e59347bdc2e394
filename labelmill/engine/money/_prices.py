"""Prices: the built-in table (a dated data file), overrides, and the token bound money relies on."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from labelmill._exceptions import UsageError

DEFAULT_BATCH_DISCOUNT = 0.5  # the Batch API's price against the online one (OpenAI, Azure OpenAI)


@dataclass(frozen=True, slots=True)
class Prices:
    input_per_m: float
    output_per_m: float
    batch_discount: float = DEFAULT_BATCH_DISCOUNT
    cached_input_per_m: float | None = None  # a cached prompt prefix; None: billed as any input

    def cost(self, prompt_tokens: int | float, completion_tokens: int | float, cached_tokens: int | float = 0) -> float:
        """Dollars for a request; `cached_tokens` of the prompt at the cached rate."""
        cached = min(cached_tokens, prompt_tokens) if self.cached_input_per_m is not None else 0
        cached_rate = self.cached_input_per_m or 0.0
        return ((prompt_tokens - cached) * self.input_per_m + cached * cached_rate
                + completion_tokens * self.output_per_m) / 1e6  # fmt: skip

    def batch(self) -> Prices:
        """What the Batch API charges (its discount applies to cached input too: an assumption,
        as providers do not all say)."""
        d = self.batch_discount
        cached = None if self.cached_input_per_m is None else self.cached_input_per_m * d
        return Prices(self.input_per_m * d, self.output_per_m * d, 1.0, cached)


# Where servers report the cached part of a prompt: OpenAI (and Azure, vLLM), Anthropic as
# LiteLLM passes it on, DeepSeek.
CACHED_FIELDS = (("prompt_tokens_details", "cached_tokens"), ("cache_read_input_tokens",), ("prompt_cache_hit_tokens",))


def cached_prompt_tokens(usage: Mapping[str, Any]) -> int:
    """The prompt tokens a server billed as cached, under any name it uses (0 when none)."""
    for path in CACHED_FIELDS:
        value: Any = usage
        for name in path:
            value = value.get(name) if isinstance(value, Mapping) else None
        if isinstance(value, int | float) and value > 0:
            return int(value)
    return 0


def price_table() -> dict[str, Any]:
    """The built-in table (a data file with its date)."""
    text = resources.files("labelmill.engine").joinpath("data/prices.json").read_text(encoding="utf-8")
    table: dict[str, Any] = json.loads(text)
    return table


def resolve_prices(
    model: str,
    price_in: float | None,
    price_out: float | None,
    prices_file: str | Path | None = None,
    batch_discount: float | None = None,
    price_cached_in: float | None = None,
) -> Prices | None:
    """Flags win, then a TOML override file (`[models."name"] input = .. output = ..`, and
    optionally `cached_input = ..` and `batch_discount = ..`), then the table."""
    models: dict[str, Any] = dict(price_table()["models"])
    if prices_file is not None:
        try:
            data = tomllib.loads(Path(prices_file).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise UsageError(f"cannot read prices from {prices_file}: {exc}") from exc
        models.update(data.get("models", {}))
    listed = models.get(model)
    if listed is None:
        # dated snapshots (gpt-4o-mini-2024-07-18) cost what their family costs
        family = max((name for name in models if model.startswith(name + "-")), key=len, default=None)
        listed = models.get(family) if family else None
    price_in = price_in if price_in is not None else (listed or {}).get("input")
    price_out = price_out if price_out is not None else (listed or {}).get("output")
    if price_in is None or price_out is None:
        return None
    if batch_discount is None:
        batch_discount = float((listed or {}).get("batch_discount", DEFAULT_BATCH_DISCOUNT))
    if not 0 < batch_discount <= 1:
        raise UsageError(f"a batch discount is a price factor in (0, 1], not {batch_discount}")
    # A cached rate from the table only goes with the table's input rate (a flag's input price with
    # the table's cached one could mix two price lists); without one, cached input is billed in full.
    cached = price_cached_in
    if cached is None and "input" in (listed or {}) and float((listed or {})["input"]) == float(price_in):
        cached = (listed or {}).get("cached_input")
    return Prices(float(price_in), float(price_out), batch_discount, None if cached is None else float(cached))


def token_upper_bound(body: dict[str, Any]) -> int:
    """UTF-8 bytes bound BPE tokens from above; 4 tokens of framing per message, 3 for the reply.

    This is the bound money reserves against: it can never be exceeded, whatever the tokenizer."""
    prompt = sum(len(m["content"].encode("utf-8")) + 4 for m in body["messages"]) + 3
    if "response_format" in body:
        prompt += schema_prompt_bytes(body["response_format"])
    return prompt + int(body["max_tokens"])


# A run's requests share a few schema objects (`engine/tasks/_schema.py`): their bound is worked
# out once each. The entry holds the object, so its id cannot be reused while it is here.
_SCHEMA_BYTES: dict[int, tuple[Any, int]] = {}


def schema_prompt_bytes(response_format: Any) -> int:
    """`_schema_prompt_bytes`, once per schema object (it was 5 us of every request's reservation)."""
    hit = _SCHEMA_BYTES.get(id(response_format))
    if hit is not None and hit[0] is response_format:
        return hit[1]
    bound = _schema_prompt_bytes(response_format)
    if len(_SCHEMA_BYTES) >= 1024:  # bodies read back from files are new objects each time
        _SCHEMA_BYTES.clear()
    _SCHEMA_BYTES[id(response_format)] = (response_format, bound)
    return bound


def _schema_prompt_bytes(response_format: Any) -> int:
    """The bound of what a schema adds to the prompt. OpenAI counts it as input, rendered into the
    system prompt as a type (a line per property: its name, its type or its enum values), not as the
    JSON sent; this bounds that rendering by its bytes, with 32 of framing (the type's name and
    braces, the instruction around it) and 8 a property. An assumption about a rendering we cannot
    see: the JSON's own bytes would double a label request's reservation."""
    spec = response_format.get("json_schema") if isinstance(response_format, dict) else None
    schema = spec.get("schema") if isinstance(spec, dict) else None
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(spec, dict) or not isinstance(properties, dict):
        return len(json.dumps(response_format, ensure_ascii=False).encode("utf-8"))
    named = len(str(spec.get("name", "")).encode("utf-8")) + 32
    for name, prop in properties.items():
        values = prop.get("enum") if isinstance(prop, dict) else None
        shown = " | ".join(json.dumps(v, ensure_ascii=False) for v in values) if values else json.dumps(prop)
        named += len(name.encode("utf-8")) + len(shown.encode("utf-8")) + 8
    return named


def format_usd(*amounts: float) -> list[str]:
    """Dollar amounts with as many decimals as it takes to tell them apart (and to show two
    significant digits of the smallest), so "$0.000042 needed, $0.000042 left" cannot happen."""
    decimals = 2
    while decimals < 12:
        rounded = [round(a, decimals) for a in amounts]
        distinct = len(set(rounded)) == len(set(amounts))
        smallest = min((abs(a) for a in amounts if a), default=0.0)
        if distinct and (smallest == 0 or smallest >= 10 ** (1 - decimals)):
            break
        decimals += 1
    return [f"${a:.{decimals}f}" for a in amounts]
