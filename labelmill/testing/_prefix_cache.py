"""The mock teacher's prompt cache, as OpenAI documents its own: a prompt whose first 1,024 tokens
or more match an earlier prompt's has the matching prefix billed as cached, counted in steps of 128
tokens (1,024, 1,152, 1,280, ...). Prompts are tokenized the mock's way (`count_tokens`' pieces)
with the messages joined in order, so a shared instruction and shared few-shot demonstrations put
first are what hits.

`style` names how the answer reports it: `openai` (`usage.prompt_tokens_details.cached_tokens`) or
`anthropic` (`usage.cache_read_input_tokens`, as LiteLLM passes Anthropic's count on).
"""

from __future__ import annotations

import hashlib
from typing import Any

from labelmill.testing._ratelimits import _PIECE

MIN_TOKENS = 1024
STEP = 128
STYLES = ("openai", "anthropic")


class PrefixCache:
    def __init__(self, style: str) -> None:
        if style not in STYLES:
            raise ValueError(f"unknown prompt-cache style {style!r}: use one of {', '.join(STYLES)}")
        self.style = style
        self._seen: set[bytes] = set()

    def cached(self, messages: list[dict[str, Any]]) -> int:
        """How many of this prompt's tokens an earlier prompt had cached; remembers this one's."""
        pieces = _PIECE.findall("\n".join(str(m.get("content", "")) for m in messages))
        digest, hits = hashlib.sha256(), 0
        for start in range(0, len(pieces) - len(pieces) % STEP, STEP):
            digest.update("".join(pieces[start : start + STEP]).encode("utf-8"))
            length = start + STEP
            if length < MIN_TOKENS:
                continue
            mark = digest.copy().digest()
            if mark in self._seen:
                hits = length
            self._seen.add(mark)
        return hits

    def report(self, usage: dict[str, Any], cached: int) -> None:
        """Put `cached` into `usage` the way this style's servers do."""
        if self.style == "openai":
            usage["prompt_tokens_details"] = {"cached_tokens": cached}
        else:
            usage["cache_read_input_tokens"] = cached
