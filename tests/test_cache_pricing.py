"""Cached input: a prompt prefix the server reports as cached settles at the cached rate, under
every name servers use for it, and the budget (reserved at the uncached worst case) still holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from labelmill.engine import AnnotateConfig, annotate, load_task
from labelmill.engine.money import Prices, cached_prompt_tokens, resolve_prices
from labelmill.testing import MockConfig, MockTeacher, make_cqa

PRICES = Prices(0.15, 0.60, cached_input_per_m=0.075)
WHY = "Because " + " ".join(f"reason{i} holds and the other choices name things of another kind" for i in range(12))


def few_shot_corpus(path: Path, rows: int) -> Path:
    """A corpus whose first six rows carry long reference rationales: six demonstrations make a
    shared prefix of well over 1,024 tokens in every few-shot prompt."""
    make_cqa(rows, path)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for row in lines[:6]:
        row["abstractive_explanation"] = WHY
    path.write_text("".join(json.dumps(row) + "\n" for row in lines))
    return path


def test_cached_tokens_are_read_under_every_name_servers_use() -> None:
    assert cached_prompt_tokens({"prompt_tokens": 2000, "prompt_tokens_details": {"cached_tokens": 1152}}) == 1152
    assert cached_prompt_tokens({"cache_read_input_tokens": 1024}) == 1024  # Anthropic, through LiteLLM
    assert cached_prompt_tokens({"prompt_cache_hit_tokens": 1280}) == 1280  # DeepSeek
    assert cached_prompt_tokens({"prompt_tokens": 10, "prompt_tokens_details": None}) == 0
    assert PRICES.cost(2000, 100, 1152) == pytest.approx((848 * 0.15 + 1152 * 0.075 + 100 * 0.60) / 1e6)
    assert Prices(0.15, 0.60).cost(2000, 100, 1152) == Prices(0.15, 0.60).cost(2000, 100)  # no cached rate: full
    assert resolve_prices("gpt-4o-mini", None, None) == Prices(0.15, 0.60, 0.5, 0.075)  # the table's
    assert resolve_prices("gpt-4o-mini", 0.2, 0.8).cached_input_per_m is None  # type: ignore[union-attr]
    assert resolve_prices("gpt-4o-mini", 0.2, 0.8, price_cached_in=0.05).cached_input_per_m == 0.05  # type: ignore[union-attr]


@pytest.mark.parametrize(("style", "concurrency"), [("openai", 8), ("anthropic", 128)])
async def test_a_few_shot_run_pays_what_the_cache_billed_and_keeps_to_the_budget(
    tmp_path: Path, style: str, concurrency: int
) -> None:
    source = few_shot_corpus(tmp_path / "in.jsonl", 300)
    settings: dict[str, Any] = {
        "source": str(source),
        "task": load_task("cqa"),
        "base_url": "",
        "progress": False,
        "prices": PRICES,
        "rationale_rate": 1.0,
        "shots": 6,
        "concurrency": concurrency,
    }
    async with MockTeacher(MockConfig(prompt_cache=style)) as mock:
        settings["base_url"] = mock.base_url
        full = await annotate(AnnotateConfig(**settings, out_dir=tmp_path / "full", cache_dir=tmp_path / "c1"))
        server = mock.stats
        billed = PRICES.cost(server.prompt_tokens, server.completion_tokens, server.cached_prompt_tokens)
        uncached = PRICES.cost(server.prompt_tokens, server.completion_tokens)
    money = full.summary["money"]
    assert full.summary["tokens"]["cached_prompt"] == server.cached_prompt_tokens > 0.5 * server.prompt_tokens
    assert money["paid"] == pytest.approx(billed, abs=1e-6)  # to the cent, and far below
    assert money["cache_saved_usd"] == pytest.approx(uncached - billed, abs=1e-6) and uncached - billed > 0.2 * uncached
    budget = 0.5 * billed  # half of what the corpus costs with the cache
    async with MockTeacher(MockConfig(prompt_cache=style)) as mock:
        settings["base_url"] = mock.base_url
        capped = await annotate(AnnotateConfig(**settings, out_dir=tmp_path / "capped", cache_dir=tmp_path / "c2",
                                               budget=budget))  # fmt: skip
        server = mock.stats
        spent_at_server = PRICES.cost(server.prompt_tokens, server.completion_tokens, server.cached_prompt_tokens)
    assert spent_at_server <= budget and capped.summary["money"]["spent"] <= budget
    assert capped.summary["money"]["paid"] == pytest.approx(spent_at_server, abs=1e-6)
    assert capped.summary["records"] >= 0.3 * 300  # the cache's savings bought rows, not just the bound
