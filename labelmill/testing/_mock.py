"""`labelmill mock-teacher`: a local OpenAI-compatible server with deterministic answers.

POST /v1/chat/completions, GET /v1/models, GET /stats. Answers the built-in tasks' prompts with a
choice from the prompt's `Choices:` line or a label from its `Labels:` line (a hash of the
question picks it, so both prompt variants of one example agree), with a rationale of about
`rationale_words` words when the prompt asks for one; `--answers FILE` (JSONL of
`{"contains": ..., "content": ...}`) replays real teacher outputs instead. It also plays a real
API's bad days: latency with jitter, RPM/TPM limits with OpenAI-style 429s and `x-ratelimit-*`
headers (or none: `limit_headers=False`), token counts from a tokenizer no client shares
(`_ratelimits.py`), injected 500/503s, dropped connections, and a 400 for a prompt longer than its
context.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from labelmill.testing._batches import BatchFlags, MockBatches
from labelmill.testing._corpus import ALL_CATEGORIES
from labelmill.testing._formats import REFUSAL, off_format, schema_as_prompt, schema_problem, structured
from labelmill.testing._lore import asks_lore, lore_answer, lore_rationale, stable_index
from labelmill.testing._prefix_cache import PrefixCache
from labelmill.testing._ratelimits import MESSAGE_TOKENS, ServerLimits, count_tokens

_CHOICES_LINE = re.compile(r"^\s*Choices:\s*(.*)$", re.MULTILINE)
_CHOICE = re.compile(r"\(([a-z])\)\s*(.*?)(?=\s+\([a-z]\)\s|\s*$)")
_LABELS_LINE = re.compile(r"^\s*Labels:\s*(.*)$", re.MULTILINE)
OPTIMIZER_MARK = "<INS>"  # a meta-prompt shows instructions between these tags
HELPFUL_PHRASES = ("Read every choice before answering.", "Think about what the question asks for.",
                   "Prefer the most specific choice.")  # fmt: skip
_FINAL_ANSWER = re.compile(r"(?:so the answer is|answer:)\s*(.+)", re.IGNORECASE)
_CATEGORY_WORD = re.compile(r"\b(" + "|".join(map(re.escape, ALL_CATEGORIES)) + r")\b")  # one pass a question
_ASKED_WORDS = re.compile(r"Write the rationale in (\d+) to (\d+) words")
_QUESTION_LINE = re.compile(r"^\s*(?:Question|Text|Premise|Hypothesis):\s*(.*)$", re.MULTILINE)


@dataclass(slots=True)
class MockConfig:
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    rpm: int | None = None
    tpm: int | None = None
    error_rate: float = 0.0  # fraction answered 500 or 503
    drop_rate: float = 0.0  # fraction whose connection is dropped without an answer
    context_tokens: int = 16_384
    rationale_words: int = 24
    retry_after_s: float | None = None  # fixed retry-after on 429s; default: when the request would fit
    limit_headers: bool = True  # send x-ratelimit-* headers (when a limit is set)
    burst_s: float = 1.0  # the limits' buckets hold this many seconds of the per-minute limit
    limit_model: str = "bucket"  # how the server counts: bucket|minute-bucket|sliding|fixed (_ratelimits.py)
    other_share: float = 0.0  # another client on the key uses this share of each limit
    api_key: str | None = None  # when set, other keys get 401
    seed: int = 0
    wrong_percent: int = 15  # on generated corpora, how often the mock answers at random instead
    answers: list[tuple[str, str]] = field(default_factory=list)
    models: tuple[str, ...] | None = None  # when set, any other model gets 400 "Invalid model name"
    # The Batch API (`_batches.py`): how long a batch takes, and its bad days
    batch_latency_s: float = 0.5
    batch_expire_fraction: float | None = None  # expire with this fraction of the lines done
    batch_line_error_rate: float = 0.0  # lines answered 500 in the error file
    batch_fail_validation: bool = False
    batch_enqueued_tokens: int | None = None  # a larger batch fails with token_limit_exceeded
    batch_lost_creates: int = 0  # the first N creates make the batch and answer 504
    prompt_cache: str | None = None  # report cached prefixes: "openai" or "anthropic" style (_prefix_cache.py)
    response_format: str = "honour"  # or "refuse" (a 400) or "ignore" (text anyway): _formats.py
    off_format_rate: float = 0.0  # the share of text replies said off the expected format
    contradict_percent: int = 0  # how often a rationale concludes another choice than its answer


def load_answers(path: str | Path) -> list[tuple[str, str]]:
    answers = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                data = json.loads(line)
                answers.append((str(data["contains"]), str(data["content"])))
    return answers


@dataclass(slots=True)
class MockStats:
    requests: int = 0
    ok: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    dropped: int = 0
    rejected: int = 0
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0  # of prompt_tokens, the cached prefixes reported (with `prompt_cache`)
    completion_tokens: int = 0
    limit_tokens: int = 0  # prompt tokens + max_tokens of every request admitted: what a TPM limit counts
    structured: int = 0  # answers given as JSON that follows the request's schema
    off_format: int = 0  # text answers said off the expected format


class MockTeacher:
    def __init__(self, config: MockConfig | None = None) -> None:
        self.config = config or MockConfig()
        self.stats = MockStats()
        self._rng = random.Random(self.config.seed)
        config = self.config
        self._limits = ServerLimits(config.rpm, config.tpm, config.burst_s, config.limit_headers, config.limit_model,
                                    config.other_share)  # fmt: skip
        self._answers_by_line = {c.strip(): a for c, a in self.config.answers}
        flags = BatchFlags(self.config.batch_latency_s, self.config.batch_expire_fraction,
                           self.config.batch_line_error_rate, self.config.batch_fail_validation,
                           self.config.batch_enqueued_tokens, self.config.batch_lost_creates)  # fmt: skip
        self.prefix_cache = PrefixCache(config.prompt_cache) if config.prompt_cache else None
        self.batches = MockBatches(flags, self.refusal, self.completion, self.prompt_tokens,
                                   lambda text: stable_index(text, 1_000_000) / 1_000_000)  # fmt: skip
        self._runner: web.AppRunner | None = None
        self._timer_lateness_s = 0.0
        self.base_url = ""

    # -- server lifecycle ---------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/stats", self.stats_handler)
        self.batches.routes(app)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sockets = getattr(site._server, "sockets", None)  # asyncio's or uvloop's server
        assert sockets, "the mock teacher's server has no listening socket"
        bound_port = sockets[0].getsockname()[1]
        self.base_url = f"http://{host}:{bound_port}/v1"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> MockTeacher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- handlers -----------------------------------------------------------------------------
    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "mock-teacher", "object": "model"}]})

    async def stats_handler(self, request: web.Request) -> web.Response:
        stats: dict[str, Any] = {name: getattr(self.stats, name) for name in MockStats.__slots__}
        batches = self.batches.stats
        stats["batch"] = {"files_uploaded": batches.files_uploaded, "batches_created": batches.batches_created,
                          "max_uploads_per_key": max(batches.batch_uploads.values(), default=0)}  # fmt: skip
        return web.json_response(stats)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        # Latency counts from arrival: the work below happens inside it, so a burst of requests
        # is not answered later than the configured latency because the mock was busy. The clock is
        # time.monotonic: uvloop's loop.time() moves in whole milliseconds.
        config = self.config
        delay = config.latency_ms + (self._rng.uniform(-1, 1) * config.jitter_ms if config.jitter_ms else 0)
        answer_at = time.monotonic() + max(0.0, delay) / 1000
        self.stats.requests += 1
        if config.api_key is not None and request.headers.get("authorization") != f"Bearer {config.api_key}":
            return _error(401, "Incorrect API key provided.", "invalid_api_key")
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        refused = self.refusal(body)
        if refused is not None:
            return web.json_response(refused[1], status=refused[0])
        assert isinstance(body, dict)
        max_tokens = int(body.get("max_tokens") or 256)
        limited = self._rate_limit(self.prompt_tokens(body) + max_tokens)
        if limited is not None:
            return limited
        roll = self._rng.random()
        if roll < config.drop_rate:
            self.stats.dropped += 1
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)
        if roll < config.drop_rate + config.error_rate:
            self.stats.server_errors += 1
            status = 500 if self._rng.random() < 0.5 else 503
            return _error(status, "The server had an error while processing your request.", "server_error")
        response = web.json_response(self.completion(body), headers=self._limit_headers())
        await self._sleep_until(answer_at)
        return response

    # -- one answer, online or in a batch -------------------------------------------------------
    @staticmethod
    def prompt_tokens(body: dict[str, Any]) -> int:
        messages, schema = body["messages"], body.get("response_format")
        counted = count_tokens("\n".join(str(m.get("content", "")) for m in messages)) + MESSAGE_TOKENS * len(messages)
        return counted + (count_tokens(schema_as_prompt(schema)) if isinstance(schema, dict) else 0)

    def refusal(self, body: Any) -> tuple[int, dict[str, Any]] | None:
        """(status, error body) for a request no server would answer, else None."""
        config = self.config
        try:
            assert isinstance(body, dict)
            prompt_tokens = self.prompt_tokens(body)
            max_tokens = int(body.get("max_tokens") or 256)
        except (AssertionError, ValueError, KeyError, TypeError, AttributeError):
            self.stats.rejected += 1
            return 400, _error_body("We could not parse the JSON body of your request.", "invalid_request_error")
        if config.models is not None and body.get("model") not in config.models:
            self.stats.rejected += 1
            return 400, _error_body(f"Invalid model name passed in model={body.get('model')}.", "invalid_request_error")
        schema = body.get("response_format")
        problem = REFUSAL if config.response_format == "refuse" else schema_problem(schema)
        if schema is not None and config.response_format != "ignore" and problem is not None:
            self.stats.rejected += 1
            return 400, _error_body(problem, "invalid_request_error", param="response_format")
        if prompt_tokens + max_tokens > config.context_tokens:
            self.stats.rejected += 1
            return 400, _error_body(
                f"This model's maximum context length is {config.context_tokens} tokens. However, you "
                f"requested {prompt_tokens + max_tokens} tokens. Please reduce the length of the messages.",
                "context_length_exceeded",
            )
        return None

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        """The chat completion for `body` (already checked by `refusal`), counted in the stats."""
        messages, max_tokens = body["messages"], int(body.get("max_tokens") or 256)
        prompt = "\n".join(str(m.get("content", "")) for m in messages)
        prompt_tokens = self.prompt_tokens(body)
        content = self.propose(prompt, int(body.get("seed") or 0)) if OPTIMIZER_MARK in prompt else self.answer(prompt)
        content = self._formatted(content, prompt, body.get("response_format"))
        words = content.split(" ")
        while count_tokens(content) > max_tokens and len(words) > 1:
            words = words[: max(1, len(words) * 3 // 4)]
            content = " ".join(words)
        completion_tokens = count_tokens(content)
        self.stats.ok += 1
        self.stats.prompt_tokens += prompt_tokens
        self.stats.completion_tokens += completion_tokens
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop",
        }
        if body.get("logprobs"):
            choice["logprobs"] = self._logprobs(prompt, int(body.get("top_logprobs") or 2))
        usage: dict[str, Any] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                 "total_tokens": prompt_tokens + completion_tokens}  # fmt: skip
        if self.prefix_cache is not None:
            cached = min(prompt_tokens, self.prefix_cache.cached(messages))
            self.prefix_cache.report(usage, cached)
            self.stats.cached_prompt_tokens += cached
        return {"id": "chatcmpl-mock", "object": "chat.completion", "created": 0,
                "model": str(body.get("model", "mock-teacher")), "choices": [choice], "usage": usage}  # fmt: skip

    def _formatted(self, content: str, prompt: str, schema: Any) -> str:
        """As JSON when the request's schema is honoured; else, now and then, off-format (`_formats.py`)."""
        if isinstance(schema, dict) and schema.get("type") == "json_schema" and self.config.response_format == "honour":
            self.stats.structured += 1
            return structured(content, schema)
        if stable_index("off|" + prompt, 10_000) < self.config.off_format_rate * 10_000:
            self.stats.off_format += 1
            return off_format(content, _options(prompt), stable_index("form|" + prompt, 2))
        return content

    async def _sleep_until(self, deadline: float) -> None:
        """Sleep until `deadline` (time.monotonic), aiming early by how late timers have been firing.

        uvloop's timers fire about half a millisecond late on a 200 ms sleep; uncorrected, that error
        alone costs a client 0.25% of the ideal throughput a benchmark holds it to. The estimate is a
        running mean of the error, so the mean latency served is the one configured."""
        wait = deadline - time.monotonic()
        if wait <= 0:
            return
        await asyncio.sleep(max(0.0, wait - self._timer_lateness_s))
        error = time.monotonic() - deadline  # > 0: late; < 0: the estimate aimed too early
        self._timer_lateness_s = max(0.0, self._timer_lateness_s + 0.1 * error)

    def _rate_limit(self, tokens: int) -> web.Response | None:
        now = asyncio.get_running_loop().time()
        hit = self._limits.admit(now, tokens)
        if hit is None:
            self.stats.limit_tokens += tokens
            return None
        kind, wait = hit
        self.stats.rate_limited += 1
        wait = self.config.retry_after_s or wait
        headers = {**self._limit_headers(), "retry-after": str(max(1, math.ceil(wait))),
                   "retry-after-ms": str(max(1, int(wait * 1000)))}  # fmt: skip
        return _error(429, f"Rate limit reached for {kind}. Please try again later.", "rate_limit_exceeded", headers)

    def _limit_headers(self) -> dict[str, str]:
        return self._limits.headers(asyncio.get_running_loop().time())

    # -- answers ------------------------------------------------------------------------------
    def answer(self, prompt: str) -> str:
        replayed = self._replayed(prompt)
        if replayed is not None:
            if "Rationale:" in prompt:
                return replayed
            # a label-only prompt: answer with the replayed output's final answer alone
            final = _FINAL_ANSWER.search(replayed.split("\n\nQ:", 1)[0])
            return f"Answer: {final.group(1).strip()}" if final else replayed
        question = " ".join(_QUESTION_LINE.findall(prompt)) or prompt[:200]
        options = _options(prompt)
        if not options:
            return "Answer: unknown"
        pick = lore_answer(question, options) if asks_lore(question) else _known_answer(question, options)
        if pick is None or stable_index("wrong|" + question, 100) < self._wrong_percent(prompt):
            pick = stable_index(question + "|" + "|".join(o for _, o in options), len(options))
        letter, text = options[pick]
        answer = f"({letter}) {text}" if letter else text
        if "Rationale:" not in prompt:
            return f"Answer: {answer}"
        asked = _ASKED_WORDS.search(prompt)  # a task's `rationale_words`: the middle of the range asked for
        length = (int(asked.group(1)) + int(asked.group(2))) // 2 if asked else self.config.rationale_words
        lore = asks_lore(question)
        why = lore_rationale(question, options, text) if lore else self._rationale(question, text, length)
        if stable_index("contradict|" + question, 100) < self.config.contradict_percent:  # a rationale that argues
            why += f" {options[(pick + 1) % len(options)][1]} is the best fit."  # for another choice than its answer
        return f"Rationale: {why}\nAnswer: {answer}"

    def _wrong_percent(self, prompt: str) -> int:
        """As a scorer, the mock is right more often when the instruction has more of the phrases
        `propose` adds: deterministic, so an optimizer has something real to climb."""
        helped = sum(phrase in prompt for phrase in HELPFUL_PHRASES)
        return max(0, self.config.wrong_percent + 15 - 10 * helped)

    def propose(self, prompt: str, seed: int) -> str:
        """As an optimizer: a deterministic variation of the best-scored instruction shown."""
        shown = re.findall(r"<INS>(.*?)</INS>\s*score:\s*(-?[\d.]+)", prompt, re.DOTALL)
        base = max(shown, key=lambda s: float(s[1]))[0].strip() if shown else "Answer the question."
        missing = [p for p in HELPFUL_PHRASES if p not in base]
        pool = [*missing, "Please answer.", "Respond carefully."]
        phrase = pool[stable_index(f"{seed}|{base}", len(pool))]
        return f"<INS>{phrase} {base}</INS>"

    def _replayed(self, prompt: str) -> str | None:
        if not self.config.answers:
            return None
        for line in prompt.splitlines():
            candidates = [line.strip()]
            if ": " in line:
                candidates.append(line.split(": ", 1)[1].strip())
            for candidate in candidates:
                if candidate in self._answers_by_line:
                    return self._answers_by_line[candidate]
        return next((content for contains, content in self.config.answers if contains in prompt), None)

    def _rationale(self, question: str, answer: str, length: int | None = None) -> str:
        words = re.findall(r"[A-Za-z']+", question) or ["it"]
        category = next((c for c, members in ALL_CATEGORIES.items() if answer in members), None)
        asked_word = _CATEGORY_WORD.search(question)
        asked = asked_word.group(1) if asked_word else None
        if category is not None and asked is not None:
            verdict = "so it fits." if category == asked else "the closest of the choices."
            base = f"The question asks for a {asked}; {answer} is a kind of {category}, {verdict} It reads:".split()
        else:
            base = f"{answer} is the best fit because the question is about".split()
        length = self.config.rationale_words if length is None else length
        out = base + [words[i % len(words)].lower() for i in range(max(0, length - len(base)))]
        return " ".join(out[: max(1, length)]) + "."

    def _logprobs(self, prompt: str, top: int) -> dict[str, Any]:
        options = _options(prompt) or [("", "unknown")]
        margin = 0.1 + 3.0 * (stable_index(prompt, 1000) / 1000)
        tokens = [{"token": letter or text, "logprob": -margin * i} for i, (letter, text) in enumerate(options)]
        return {"content": [{"token": tokens[0]["token"], "logprob": 0.0, "top_logprobs": tokens[:top]}]}


def _options(prompt: str) -> list[tuple[str, str]]:
    choices_line = _CHOICES_LINE.search(prompt)
    if choices_line:
        return [(m.group(1), m.group(2).strip()) for m in _CHOICE.finditer(choices_line.group(1))]
    labels_line = _LABELS_LINE.search(prompt)
    if labels_line:
        return [("", label.strip()) for label in labels_line.group(1).split(",") if label.strip()]
    return []


def _known_answer(question: str, options: list[tuple[str, str]]) -> int | None:
    """On corpora from `labelmill.testing._corpus`, the choice that belongs to the asked-for category."""
    asked = _CATEGORY_WORD.search(question)
    if asked is None:
        return None
    members = ALL_CATEGORIES[asked.group(1)]
    return next((i for i, (_, text) in enumerate(options) if text in members), None)


def _error_body(message: str, code: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": code, "param": param, "code": code}}


def _error(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(_error_body(message, code), status=status, headers=headers)


async def serve(config: MockConfig, host: str, port: int) -> None:
    """Run until cancelled; prints `mock-teacher listening on URL` once bound."""
    mock = MockTeacher(config)
    url = await mock.start(host, port)
    print(f"mock-teacher listening on {url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await mock.stop()
