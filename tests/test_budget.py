"""The budget: the ledger never lets spend exceed it, and the planner spends it on rationales."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelmill._exceptions import BudgetExhausted, RetryableError, UsageError
from labelmill.cache import iter_records, read_manifest
from labelmill.engine import AnnotateConfig, RetryPolicy, RunStatus, annotate, load_task
from labelmill.engine.money import Planner, Prices, Spending, resolve_prices, token_upper_bound
from labelmill.engine.teacher import BeforeSend, PricedTeacher, Reply
from labelmill.testing import MockConfig, MockTeacher, cqa_rows, make_cqa, write_jsonl
from tests.virtual_time import run_virtual

PRICES = Prices(0.15, 0.60)


class BillingProvider:
    """A provider as the budget must assume one bills. An answer with `usage` is charged that usage
    (at most the prompt's byte bound plus max_tokens). An attempt whose cost the client cannot know
    (no usage, a timeout, a lost connection, a cancellation after sending) is charged the most it
    could be. 429s and 5xx are free. What it charged is the test's truth; the engine sees it only
    through `usage`."""

    def __init__(self, rng: random.Random, prices: Prices) -> None:
        self.rng, self.prices = rng, prices
        self.charged = 0.0

    async def complete(self, body: Mapping[str, Any], before_send: BeforeSend | None = None) -> Reply:
        max_tokens = int(body["max_tokens"])
        prompt_bound = token_upper_bound(dict(body)) - max_tokens
        prompt, completion = self.rng.randint(1, prompt_bound), self.rng.randint(0, max_tokens)
        worst = self.prices.cost(prompt_bound, max_tokens)
        outcome = self.rng.choice(["answer", "answer", "answer", "no_usage", "timeout", "dropped", "429", "500"])
        try:
            for _ in range(self.rng.randint(0, 3)):
                await asyncio.sleep(0)
        except asyncio.CancelledError:  # it reached the provider: it may be charged
            self.charged += worst
            raise
        if outcome in ("429", "500"):
            raise RetryableError("status", outcome, status=int(outcome))
        self.charged += self.prices.cost(prompt, completion) if outcome == "answer" else worst
        if outcome == "timeout":
            raise RetryableError("timeout", "timed out")
        if outcome == "dropped":
            raise RetryableError("connection", "connection reset")
        usage = {"prompt_tokens": prompt, "completion_tokens": completion} if outcome == "answer" else None
        return Reply({"choices": [{"message": {"content": "Answer: x"}}], "usage": usage}, {})


async def no_wait(seconds: float) -> None:
    await asyncio.sleep(0)


@settings(max_examples=60, deadline=None)
@given(
    budget=st.floats(0.0, 0.05),
    concurrency=st.integers(1, 256),
    seed=st.integers(0, 2**32),
    price_in=st.floats(0.01, 20),
    price_out=st.floats(0.01, 80),
)
def test_what_a_provider_could_charge_never_exceeds_the_budget(
    budget: float, concurrency: int, seed: int, price_in: float, price_out: float
) -> None:
    """The engine's priced attempt (reserve, send, settle, retry) against a provider that charges
    whatever it may: answers, missing usage, timeouts, dropped connections, 429s, 5xx, cancellations."""
    rng = random.Random(seed)
    prices = Prices(price_in, price_out)
    spending = Spending(prices, budget, plan=False)
    provider = BillingProvider(rng, prices)
    teacher = PricedTeacher(provider, spending, retry=RetryPolicy(attempts=4, backoff_base_s=0.0), sleep=no_wait)
    ledger = spending.ledger
    assert ledger is not None

    async def buy() -> None:
        body = {"model": "m", "messages": [{"role": "user", "content": "q" * rng.randint(10, 2000)}],
                "max_tokens": rng.randint(1, 500)}  # fmt: skip
        with contextlib.suppress(BudgetExhausted, RetryableError):
            await teacher.buy(body, rationale=rng.random() < 0.5)
        assert ledger.spent + ledger.reserved <= budget + 1e-12

    async def main() -> None:
        gate = asyncio.Semaphore(concurrency)

        async def bounded() -> None:
            async with gate:
                await buy()

        tasks = [asyncio.create_task(bounded()) for _ in range(300)]
        for _ in range(rng.randint(0, 5)):
            await asyncio.sleep(0)
        for task in rng.sample(tasks, k=rng.randint(0, 20)):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # Virtual time: 429s and 5xx with no headers pace the sends at a limit inferred from them, and
    # on the real clock some examples would sleep for tens of seconds.
    run_virtual(main())
    assert provider.charged <= ledger.spent + 1e-12  # the engine counted at least what could be charged
    assert ledger.spent <= budget + 1e-12 and ledger.reserved == pytest.approx(0.0, abs=1e-12)


def test_planner_rate_spends_what_is_left() -> None:
    planner = Planner(prior_label=1.0, prior_rationale=3.0)
    # 100 examples, $200: labels take 100, each rationale adds 2 -> explain half
    assert planner.rate(200.0, 100) == pytest.approx(0.5)
    assert planner.rate(500.0, 100) == 1.0
    assert planner.rate(50.0, 100) == 0.0


def test_prices_from_table_flags_and_file(tmp_path: Path) -> None:
    assert resolve_prices("gpt-4o-mini", None, None) == Prices(0.15, 0.60, cached_input_per_m=0.075)
    assert resolve_prices("gpt-4o-mini-2024-07-18", None, None) == Prices(0.15, 0.60, cached_input_per_m=0.075)
    assert resolve_prices("gpt-4o-mini", 1.0, None) == Prices(1.0, 0.60)
    assert resolve_prices("my-local-model", None, None) is None
    override = tmp_path / "prices.toml"
    override.write_text('[models."my-local-model"]\ninput = 0.05\noutput = 0.1\ncached_input = 0.01\n')
    assert resolve_prices("my-local-model", None, None, override) == Prices(0.05, 0.1, cached_input_per_m=0.01)


def config(tmp_path: Path, source: Path, base_url: str, **overrides: Any) -> AnnotateConfig:
    settings_: dict[str, Any] = {
        "source": str(source), "task": load_task("cqa"), "out_dir": tmp_path / "out", "cache_dir": tmp_path / "cache",
        "base_url": base_url, "concurrency": 8, "progress": False, "prices": PRICES,
        "retry": RetryPolicy(attempts=8, backoff_base_s=0.01, backoff_cap_s=0.05), **overrides,
    }  # fmt: skip
    return AnnotateConfig(**settings_)


def server_spend(mock: MockTeacher) -> float:
    return PRICES.cost(mock.stats.prompt_tokens, mock.stats.completion_tokens)


async def explain_all_cost(tmp_path: Path, source: Path) -> float:
    async with MockTeacher() as mock:
        await annotate(config(tmp_path / "probe", source, mock.base_url, rationale_rate=1.0))
        return server_spend(mock)


@pytest.mark.parametrize("concurrency", [8, 128])
async def test_budget_is_spent_but_never_exceeded(tmp_path: Path, concurrency: int) -> None:
    n = 600
    source = make_cqa(n, tmp_path / "in.jsonl")
    budget = 0.5 * await explain_all_cost(tmp_path, source)
    async with MockTeacher() as mock:
        result = await annotate(config(tmp_path, source, mock.base_url, budget=budget, auto_rate=True,
                                       concurrency=concurrency))  # fmt: skip
    spent = server_spend(mock)
    assert spent <= budget
    assert spent >= 0.97 * budget
    assert result.summary["records"] == n and result.status is RunStatus.COMPLETE
    # The plan: the rate that spends the budget at the costs actually seen.
    per_variant = result.summary["money"]["per_variant"]
    c_label = per_variant["label"]["dollars_per_request"]
    c_rationale = per_variant["rationale"]["dollars_per_request"]
    planned = (budget - n * c_label) / (n * (c_rationale - c_label))
    assert abs(result.summary["rationale_rate"] - planned) <= 0.02
    assert read_manifest(tmp_path / "out")["run"]["money"]["spent"] <= budget


async def test_resume_with_a_budget_asks_for_the_same_subset_and_pays_nothing(tmp_path: Path) -> None:
    source = make_cqa(200, tmp_path / "in.jsonl")
    budget = 0.5 * await explain_all_cost(tmp_path, source)
    async with MockTeacher() as mock:
        first = await annotate(config(tmp_path, source, mock.base_url, budget=budget, auto_rate=True))
        explained = {r.id for r in iter_records(tmp_path / "out") if r.rationale}
        served = mock.stats.requests
        again = await annotate(config(tmp_path, source, mock.base_url, budget=budget, auto_rate=True))
    assert mock.stats.requests == served and again.summary["cache_hits"] == 200
    assert {r.id for r in iter_records(tmp_path / "out") if r.rationale} == explained
    assert again.summary["rationale_rate"] == first.summary["rationale_rate"]


async def test_budget_too_small_for_labels_labels_a_prefix_and_says_what_is_missing(tmp_path: Path) -> None:
    source = make_cqa(100, tmp_path / "in.jsonl")
    async with MockTeacher() as mock:
        result = await annotate(config(tmp_path, source, mock.base_url, budget=0.0003, auto_rate=True,
                                       concurrency=1))  # fmt: skip
        assert server_spend(mock) <= 0.0003
    assert result.status is RunStatus.PARTIAL
    rows = [json.loads(line) for line in (tmp_path / "out/failures.jsonl").read_text().splitlines()]
    assert rows and {r["reason"] for r in rows} == {"budget_exhausted"}
    indexes = [r.index for r in iter_records(tmp_path / "out")]
    assert indexes == list(range(len(indexes)))  # a prefix
    assert result.summary["money"]["more_needed_usd"] > 0
    assert any("more would label them" in note for note in result.notes)


def test_unknown_prices_with_a_budget_is_a_clear_error_before_sending(tmp_path: Path) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("nothing may be sent")

    original = socket.socket.connect
    socket.socket.connect = refuse  # type: ignore[method-assign]
    try:
        with pytest.raises(UsageError, match="--price-in and --price-out"):
            config(tmp_path, tmp_path / "in.jsonl", "http://127.0.0.1:9/v1", model="my-model", prices=None,
                   budget=1.0, auto_rate=True)  # fmt: skip
    finally:
        socket.socket.connect = original  # type: ignore[method-assign]


async def test_fixed_rate_with_a_budget_caps_how_far_the_run_gets(tmp_path: Path) -> None:
    source = make_cqa(100, tmp_path / "in.jsonl")
    budget = 0.3 * await explain_all_cost(tmp_path, source)
    async with MockTeacher(MockConfig()) as mock:
        result = await annotate(config(tmp_path, source, mock.base_url, budget=budget, rationale_rate=1.0))
        assert server_spend(mock) <= budget
    records = list(iter_records(tmp_path / "out"))
    assert all(r.rationale for r in records)  # the rate is kept; the budget ends the run
    assert result.summary["failure_reasons"].get("budget_exhausted", 0) == 100 - len(records)


async def test_estimate_prices_the_corpus_without_a_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from labelmill.engine.money import estimate_corpus

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("--estimate opened a socket")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    source = make_cqa(50, tmp_path / "in.jsonl")
    result = estimate_corpus(str(source), load_task("cqa"), PRICES, budget=0.001).to_dict()
    totals = result["totals"]
    assert totals["label"]["requests"] == 50 == totals["label+rationale"]["requests"]
    assert 0 < totals["label"]["dollars"] < totals["label+rationale"]["dollars"]
    assert 0 <= result["plan"]["rationale_rate"] <= 1


def test_bench_cost_writes_its_three_files(tmp_path: Path) -> None:
    import subprocess
    import sys

    rows = [{**row, "abstractive_explanation": f"because {row['answer']} fits"} for row in cqa_rows(40)]
    source = write_jsonl(iter(rows), tmp_path / "in.jsonl")
    done = subprocess.run(
        [sys.executable, "-m", "labelmill", "bench", "cost", str(source), "--task", "cqa", "--shots", "3",
         "--out", str(tmp_path / "report"), "--cache", str(tmp_path / "nocache"), "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert {p.name for p in (tmp_path / "report").iterdir()} == {"report.md", "report.json", "cost.png"}
    data = json.loads((tmp_path / "report/report.json").read_text())
    assert [row["rationale_rate"] for row in data["sweep_per_1000_examples"]] == [0, 0.15, 0.33, 0.5, 0.66, 0.85, 1]
    assert data["zero_vs_few_shot_input_tokens_saved"] > 0.3
    routes = data["routes"]  # the batch route: half the dollars, so a budget explains more
    assert [row["batch_dollars"] for row in routes["sweep"]] == pytest.approx(
        [0.5 * row["online_dollars"] for row in routes["sweep"]], abs=1e-6
    )
    assert routes["rate_bought"]["online"] == pytest.approx(0.33, abs=0.01)
    assert routes["rate_bought"]["batch"] == 1.0  # half price: labels and every rationale fit
    assert "Batch API" in (tmp_path / "report/report.md").read_text()
    assert (tmp_path / "report/cost.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_uncertainty_explains_the_least_confident_and_replays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 150
    source = make_cqa(n, tmp_path / "in.jsonl")
    budget = 0.5 * await explain_all_cost(tmp_path, source)
    async with MockTeacher() as mock:
        result = await annotate(config(tmp_path, source, mock.base_url, budget=budget, select="uncertainty"))
        assert server_spend(mock) <= budget
    assert result.status is RunStatus.COMPLETE and result.summary["records"] == n
    records = list(iter_records(tmp_path / "out"))
    assert all(r.confidence is not None for r in records)
    explained = [r.confidence or 0.0 for r in records if r.rationale]
    unexplained = [r.confidence or 0.0 for r in records if not r.rationale]
    assert explained and unexplained
    assert max(explained) <= min(unexplained)
    assert not (tmp_path / "out" / ".uncertainty-pass1").exists()
    assert read_manifest(tmp_path / "out")["settings"]["selection"] == "uncertainty"
    monkeypatch.setattr(socket.socket, "connect", lambda *a, **k: (_ for _ in ()).throw(AssertionError("socket")))
    replayed = await annotate(config(tmp_path, source, "http://127.0.0.1:9/v1", out_dir=tmp_path / "re",
                                     select="uncertainty", replay=True))  # fmt: skip
    assert replayed.status is RunStatus.COMPLETE
    original = (tmp_path / "out/shards/part-00000.jsonl").read_bytes()
    assert (tmp_path / "re/shards/part-00000.jsonl").read_bytes() == original
