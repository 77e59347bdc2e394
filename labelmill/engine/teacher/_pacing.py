"""How many tokens a request counts against a tokens-per-minute limit: the estimate pacing uses.

Money and pacing need two different estimates of the same request, and each is made in one place:

- Money (`money.token_upper_bound`, used by `PricedTeacher.buy`) reserves a bound that can never
  be exceeded: a prompt's UTF-8 bytes bound its tokens for every tokenizer, so spend stays under
  the budget whatever the server counts.
- Pacing (here) wants what the server will count against its limit: the prompt's tokens plus
  `max_tokens` (OpenAI's rule). The byte bound is about 2.5x that on English text, so pacing by it
  leaves most of a token allowance unused.

So pacing starts from a base count of the prompt (its byte bound, or an exact count where a
tokenizer for the model is on disk, `_tokenizers.py`) and learns, per prompt variant, the ratio of
the server's `usage.prompt_tokens` to that base from the answers as they arrive. Once `min_samples`
answers are in it paces with a high quantile of the recent ratios, so a run rarely sends more than
the limit; before that it paces with the base itself.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Sequence
from typing import Any

PromptCounter = Callable[[Sequence[dict[str, Any]]], int]  # messages -> prompt tokens


class Calibration:
    """The ratio of the server's prompt count to ours, for one prompt variant."""

    def __init__(self, quantile: float, min_samples: int, window: int) -> None:
        self.quantile = quantile
        self.min_samples = min_samples
        self._ratios: collections.deque[float] = collections.deque(maxlen=window)
        self._since_sorted = 0
        self.ratio = 1.0  # the quantile in use (1.0 until enough answers are in)

    def observe(self, ours: int, servers: int) -> None:
        if ours <= 0 or servers <= 0:
            return
        self._ratios.append(servers / ours)
        self._since_sorted += 1
        seen = len(self._ratios)
        # Re-sorting a few hundred floats is cheap, but not on every answer.
        if seen >= self.min_samples and (self._since_sorted >= 16 or seen == self.min_samples):
            ordered = sorted(self._ratios)
            self.ratio = ordered[min(seen - 1, math.ceil(self.quantile * seen) - 1)]
            self._since_sorted = 0

    @property
    def samples(self) -> int:
        return len(self._ratios)


class Pacing:
    """`base(body, prompt_bound)`: our count of a prompt; `tokens(variant, base, max_tokens)`: what
    to pace its request by; `observe(variant, base, usage)`: learn from an answer."""

    def __init__(
        self,
        counter: PromptCounter | None = None,
        counter_name: str = "bytes",
        quantile: float = 0.95,
        min_samples: int = 24,
        window: int = 512,
    ) -> None:
        self.counter = counter
        self.counter_name = counter_name  # "bytes", or the tokenizer counting exactly
        self._settings = (quantile, min_samples, window)
        self.calibrations: dict[str, Calibration] = {}

    def base(self, body: dict[str, Any], prompt_bound: int) -> int:
        """Our count of the prompt: exact with a tokenizer, else the byte bound money uses too."""
        return self.counter(body["messages"]) if self.counter is not None else prompt_bound

    def tokens(self, variant: str, base: int, max_tokens: int) -> int:
        calibration = self.calibrations.get(variant)
        ratio = calibration.ratio if calibration is not None else 1.0
        return math.ceil(base * ratio) + max_tokens

    def observe(self, variant: str, base: int, usage: dict[str, Any] | None) -> None:
        servers = int((usage or {}).get("prompt_tokens") or 0)
        calibration = self.calibrations.get(variant)
        if calibration is None:
            calibration = self.calibrations[variant] = Calibration(*self._settings)
        calibration.observe(base, servers)

    def report(self) -> dict[str, Any]:
        return {
            "counter": self.counter_name,
            "ratio": {variant: round(c.ratio, 4) for variant, c in sorted(self.calibrations.items())},
            "samples": {variant: c.samples for variant, c in sorted(self.calibrations.items())},
        }
