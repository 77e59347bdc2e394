"""Token pacing: calibrated estimates, exact counts from tokenizers on disk, limits kept current by
headers, and what a run reports about them."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from labelmill.engine import AnnotateConfig, RunStatus, annotate, load_task
from labelmill.engine.money import Prices, Spending, token_upper_bound
from labelmill.engine.teacher import BeforeSend, Calibration, Pacing, PricedTeacher, RateLimits, Reply, find_counter
from labelmill.testing import MockConfig, MockTeacher, count_tokens, make_cqa
from tests.conftest import REPO


class FakeClock:
    """The loop's clock; a sleep advances it instead of waiting."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1000.0
        monkeypatch.setattr(asyncio.get_running_loop(), "time", lambda: self.now)

        async def advance(seconds: float) -> None:
            self.now += max(0.0, seconds)

        monkeypatch.setattr("labelmill.engine.teacher._limits.asyncio.sleep", advance)


def test_calibration_paces_by_the_bound_until_a_few_dozen_answers_then_by_a_high_quantile() -> None:
    pacing = Pacing(quantile=0.95, min_samples=24, window=100)
    assert pacing.tokens("label", base=400, max_tokens=100) == 500  # nothing learned yet: the bound
    for i in range(23):
        pacing.observe("label", 400, {"prompt_tokens": 100 + i})  # ratios 0.25 .. 0.305
    assert pacing.tokens("label", base=400, max_tokens=100) == 500  # 23 answers are not enough
    pacing.observe("label", 400, {"prompt_tokens": 123})
    ratios = sorted((100 + i) / 400 for i in range(24))
    assert pacing.calibrations["label"].ratio == ratios[22]  # the 95th percentile of 24, not the mean
    assert pacing.tokens("label", base=400, max_tokens=100) == 122 + 100
    assert pacing.tokens("label+rationale", base=400, max_tokens=100) == 500  # each variant learns alone
    pacing.observe("label", 400, None)  # an answer without usage teaches nothing
    assert pacing.calibrations["label"].samples == 24


def test_calibration_forgets_what_left_its_window() -> None:
    calibration = Calibration(quantile=0.95, min_samples=4, window=32)
    for _ in range(32):
        calibration.observe(100, 50)
    assert calibration.ratio == 0.5
    for _ in range(48):  # the window turns over, and the quantile is re-read every 16 answers
        calibration.observe(100, 30)  # the server now counts less (a new prompt shape, say)
    assert calibration.ratio == 0.3


async def test_the_token_schedule_uses_the_allowance_once_calibrated(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server counts about 0.3 of the byte bound (like the mock's tokenizer on CQA). Paced by the
    bound, 300 requests would take 2.3x the time the allowance needs; calibrated, they take it."""
    clock = FakeClock(monkeypatch)
    sent: list[tuple[float, int]] = []

    class Server:
        async def complete(self, body: Mapping[str, Any], before_send: BeforeSend | None = None) -> Reply:
            prompt = int(0.3 * (token_upper_bound(dict(body)) - int(body["max_tokens"])))
            sent.append((clock.now, prompt + int(body["max_tokens"])))
            return Reply({"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": 5}}, {})

    tpm = 60_000  # 1,000 tokens a second
    teacher = PricedTeacher(Server(), Spending(None, None, plan=False), limits=RateLimits(tpm=tpm))
    body = {"model": "m", "messages": [{"role": "user", "content": "x" * 600}], "max_tokens": 50}
    for _ in range(300):
        await teacher.buy(body, rationale=False)
    steady = sent[50:]  # after calibration
    counted = sum(tokens for _, tokens in steady[1:])
    seconds = steady[-1][0] - steady[0][0]
    assert counted / seconds == pytest.approx(tpm / 60 * 0.99, rel=0.01)  # the allowance, less the headroom
    report = teacher.limits_report(clock.now - sent[0][0])
    assert report["tokens"]["source"] == "flag" and report["tokens"]["limit_per_min"] == tpm
    assert report["pacing"]["ratio"]["label"] == pytest.approx(0.3, abs=0.01)


async def test_limits_come_from_headers_and_a_flag_is_kept_unless_the_header_is_lower(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    FakeClock(monkeypatch)
    limits = RateLimits(rpm=6000)
    limits.observe({"x-ratelimit-limit-requests": "9000", "x-ratelimit-limit-tokens": "600000"})
    assert (limits.rpm, limits.source["requests"]) == (6000, "flag")
    assert (limits.tpm, limits.source["tokens"]) == (600000, "header")
    limits.observe({"x-ratelimit-limit-requests": "3000"})
    assert (limits.rpm, limits.source["requests"]) == (3000, "header")
    assert RateLimits().source == {"requests": "none", "tokens": "none"}


async def test_remaining_slows_the_schedule_only_when_it_is_less_than_what_left_since(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock(monkeypatch)
    limits = RateLimits(tpm=600_000)  # 10,000 tokens a second
    await limits.acquire(lambda: 200)
    sent_at = clock.now
    # A server counting a minute window reports most of the minute used while we are at the limit:
    # what it will still take (10,000) is more than what left since (nothing): no reason to wait.
    headers = {"x-ratelimit-limit-tokens": "600000", "x-ratelimit-remaining-tokens": "10000"}
    limits.observe(headers, sent_at=sent_at, counted={"requests": 1, "tokens": 200})
    start = clock.now
    await limits.acquire(lambda: 1)
    assert clock.now - start < 0.01
    # Another client on the key: 4,000 booked since the answered request, the server has room for
    # 1,000 only. The schedule waits until the 3,000 it lacks, one more request like the last
    # (1,000) and a margin of 1% of the limit (6,000) drain at the steady rate: 1.0 s.
    for _ in range(4):
        await limits.acquire(lambda: 1000)
    at = clock.now
    headers["x-ratelimit-remaining-tokens"] = "1000"
    limits.observe(headers, sent_at=start + 0.001, counted={"requests": 1, "tokens": 200})
    await limits.acquire(lambda: 1)
    assert clock.now - at == pytest.approx(1.0, abs=0.02)


async def test_a_limit_learned_while_a_request_waited_for_its_connection_holds_it() -> None:
    limits = RateLimits()
    seen = limits.generation
    limits.observe({"x-ratelimit-limit-tokens": "600000"})
    assert limits.generation != seen  # PricedTeacher's before_send acquires again when this moved
    steady = limits.generation
    limits.observe({"x-ratelimit-limit-tokens": "600000", "x-ratelimit-remaining-tokens": "599000"},
                   sent_at=0.0, counted={"tokens": 1000})  # fmt: skip
    assert limits.generation == steady  # corrections of the schedule do not make requests pay twice


def test_the_mock_counts_tokens_its_own_way() -> None:
    text = "Question: Pick the tool from the list. (item 12)\nChoices: (a) rabbit (b) screwdriver (c) France"
    tokens = count_tokens(text)
    assert tokens != (len(text) + 3) // 4 and tokens < len(text.encode()) / 2  # not bytes/4, well under bytes
    assert count_tokens("screwdriver") == 2 and count_tokens(" the") == 1


async def test_mock_headers_can_be_withheld_and_follow_openais_form() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "Choices: (a) x (b) y"}], "max_tokens": 20}
    for send in (True, False):
        mock = MockTeacher(MockConfig(tpm=600_000, rpm=6000, limit_headers=send))
        async with (
            mock,
            aiohttp.ClientSession() as session,
            session.post(mock.base_url + "/chat/completions", json=body) as response,
        ):
            headers = response.headers
            usage = (await response.json())["usage"]
        names = {name.lower() for name in headers if name.lower().startswith("x-ratelimit-")}
        if not send:
            assert names == set()
            continue
        assert headers["x-ratelimit-limit-tokens"] == "600000"
        counted = usage["prompt_tokens"] + 20
        # the bucket drains 10 tokens a millisecond between the count and the header
        assert 0 <= int(headers["x-ratelimit-remaining-tokens"]) - (600_000 - counted) <= 20
        assert headers["x-ratelimit-reset-tokens"].endswith("ms")  # 30-odd tokens drain in milliseconds
        assert headers["x-ratelimit-remaining-requests"] == "5999"


def run_config(tmp_path: Path, source: Path, url: str, **overrides: Any) -> AnnotateConfig:
    settings: dict[str, Any] = {"source": str(source), "task": load_task("cqa"), "out_dir": tmp_path / "out",
                                "cache_dir": tmp_path / "cache", "base_url": url, "progress": False,
                                "prices": Prices(0.15, 0.6), **overrides}  # fmt: skip
    return AnnotateConfig(**settings)


@pytest.mark.parametrize(
    ("headers", "flag", "source"), [(True, None, "header"), (True, 6_000_000, "flag"), (False, None, "none")]
)
async def test_a_run_reports_its_limits_their_source_and_the_learned_ratio(
    tmp_path: Path, headers: bool, flag: int | None, source: str
) -> None:
    corpus = make_cqa(60, tmp_path / "in.jsonl")
    async with MockTeacher(MockConfig(tpm=6_000_000, limit_headers=headers)) as mock:
        result = await annotate(run_config(tmp_path, corpus, mock.base_url, tpm=flag))
        counted = mock.stats.limit_tokens
    assert result.status is RunStatus.COMPLETE
    limits = result.summary["limits"]
    assert limits["tokens"]["source"] == source
    assert limits["tokens"]["limit_per_min"] == (None if source == "none" else 6_000_000)
    seconds = result.summary["seconds"]
    assert limits["tokens"]["achieved_per_min"] == pytest.approx(counted / seconds * 60, rel=0.05)
    if source == "none":
        assert limits["pacing"]["ratio"] == {}  # no token limit: nothing to pace, nothing learned
    else:  # the mock's tokenizer against the byte bound, learned from `usage`
        assert 0.2 < limits["pacing"]["ratio"]["label+rationale"] < 0.4
    assert limits["requests"]["source"] == "none"


def train_tokenizer_file(tmp_path: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(["pick the tool from the list"] * 20, trainers.BpeTrainer(special_tokens=["[UNK]"]))
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    return path


def test_a_local_tokenizer_counts_prompts_exactly(tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    path = train_tokenizer_file(tmp_path)
    counter, name = find_counter("any-model", str(tmp_path))
    assert counter is not None and name == f"tokenizer:{tmp_path}"
    messages = [{"role": "system", "content": "pick"}, {"role": "user", "content": "pick the tool from the list"}]
    encoder = Tokenizer.from_file(str(path))
    expected = sum(len(encoder.encode(m["content"], add_special_tokens=False).ids) + 3 for m in messages) + 3
    assert counter(messages) == expected


def litellm_tiktoken_cache() -> Path:
    """The tiktoken encodings LiteLLM ships in its package (make .venv-litellm installs it)."""
    found = sorted(REPO.glob(".venv-litellm/lib/python3*/site-packages/litellm/litellm_core_utils/tokenizers"))
    assert found, "no LiteLLM environment with its bundled tiktoken cache: run `make .venv-litellm`"
    return found[0]


def test_tiktoken_counts_exactly_from_its_cache_and_never_downloads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tiktoken

    connections: list[object] = []
    monkeypatch.setattr(socket.socket, "connect", lambda self, address: connections.append(address))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(litellm_tiktoken_cache()))
    counter, name = find_counter("gpt-4o-mini")
    assert counter is not None and name == "tiktoken:o200k_base"
    messages = [{"role": "user", "content": "Pick the tool from the list: rabbit, screwdriver, France."}]
    assert counter(messages) == len(tiktoken.get_encoding("o200k_base").encode_ordinary(messages[0]["content"])) + 6
    # No cache: the byte count, and nothing fetched. A corrupt cache file: the same.
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    assert find_counter("gpt-4o-mini") == (None, "bytes")
    url = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
    (tmp_path / hashlib.sha1(url.encode()).hexdigest()).write_bytes(b"not an encoding")
    tiktoken.registry.ENCODINGS.pop("cl100k_base", None)  # as in a fresh process
    assert find_counter("gpt-4") == (None, "bytes")
    assert connections == []
    assert find_counter("a-model-tiktoken-does-not-know") == (None, "bytes")


def test_the_cli_line_shows_the_limit_and_its_source() -> None:
    from labelmill.engine.run import RunStats
    from labelmill.engine.teacher import TeacherCounters

    report = {"requests": {"limit_per_min": None, "source": "none", "achieved_per_min": 3000.0},
              "tokens": {"limit_per_min": 600000.0, "source": "header", "achieved_per_min": 588000.0}}  # fmt: skip
    stats = RunStats(teacher=TeacherCounters(limits=lambda seconds: report))
    line = stats.line(show_dollars=False)
    assert "tok/min 588.0k of 600.0k (header)" in line and "req/min" not in line
    assert json.loads(json.dumps(stats.summary()["limits"])) == report
