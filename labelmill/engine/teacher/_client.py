"""One attempt at a chat completion over a pooled aiohttp client.

Why aiohttp and not httpx or the openai SDK: measured on this machine against our mock teacher on
one client core (benchmarks/http_clients.py), plain httpx.AsyncClient collapses at high concurrency,
the openai SDK (on httpx2) reaches about a third of aiohttp's request rate, and raw aiohttp is the
only client fast enough for the engine's goals. aiohttp is the one HTTP stack we ship: the client
here and the mock teacher's server.

This module makes exactly one attempt and classifies the outcome; retrying lives in `_retry`.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labelmill._exceptions import RequestRejected, RetryableError, TeacherStatusError
from labelmill._json import dumps_bytes, loads

if TYPE_CHECKING:  # imported when a client opens: a replay or `--help` does not pay ~0.1 s for it
    import aiohttp

RETRYABLE_STATUSES = frozenset({408, 409, 429}) | frozenset(range(500, 600))
# Statuses that concern one request (its size or content), not the run: the example becomes a
# failure row and the run goes on. Any other 4xx (401, 403, 404, ...) stops the run at once.
EXAMPLE_STATUSES = frozenset({400, 413, 422})


BeforeSend = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Reply:
    body: dict[str, Any]
    headers: Mapping[str, str]


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asks a client to wait, under any of the names servers use:
    `retry-after-ms` (OpenAI), `retry-after` (seconds or an HTTP date), `llm_provider-retry-after`
    (LiteLLM's proxy), else the `x-ratelimit-reset-*` of a limit with nothing remaining."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0), ("llm_provider-retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            return max(0.0, float(raw) * scale)
        except ValueError:
            seconds = _http_date_in(raw, now)
            if seconds is not None:
                return seconds
    resets = [
        parse_duration(headers.get(f"x-ratelimit-reset-{kind}") or "")
        for kind in ("requests", "tokens")
        if headers.get(f"x-ratelimit-remaining-{kind}") == "0"
    ]
    known = [seconds for seconds in resets if seconds is not None]
    return max(known) if known else None


def _http_date_in(text: str, now: float | None) -> float | None:
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


_DURATION = re.compile(r"(?:([\d.]+)h)?(?:([\d.]+)m(?!s))?(?:([\d.]+)s)?(?:([\d.]+)ms)?")


def parse_duration(text: str) -> float | None:
    """Reset durations as servers write them: `1s`, `6m0s`, `1.5s`, `120ms`, `1h2m3.5s`, or bare seconds."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION.fullmatch(text)
    if not text or parts is None:
        return None
    try:
        hours, minutes, seconds, millis = (float(g) if g else 0.0 for g in parts.groups())
    except ValueError:  # "1.2.3s"
        return None
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


def _server_message(text: str) -> str:
    try:
        data = json.loads(text)
        error = data.get("error", data) if isinstance(data, dict) else data
        message = error.get("message", text) if isinstance(error, dict) else str(error)
        return str(message)[:500]
    except ValueError:
        return text.strip()[:500] or "(empty body)"


class TeacherClient:
    """A pooled OpenAI-compatible chat-completions client. Use `async with`."""

    def __init__(self, base_url: str, api_key: str | None, connections: int, timeout_s: float) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self._headers = {"content-type": "application/json"}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        self._connections = connections
        self._timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._in_flight = 0
        self._peak_in_flight = 0  # about the connections the pool has opened
        self._opening = asyncio.Lock()

    async def __aenter__(self) -> TeacherClient:
        import aiohttp

        plain_http = self.url.startswith("http://")  # a local server: skip building a TLS context
        connector = aiohttp.TCPConnector(limit=self._connections, limit_per_host=self._connections, ssl=not plain_http)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self._timeout_s),
            headers=self._headers,
            json_serialize=json.dumps,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def complete(self, body: Mapping[str, Any], before_send: BeforeSend | None = None) -> Reply:
        """One attempt. Raises RetryableError, RequestRejected or TeacherStatusError.
        `before_send()` is awaited last thing before the request goes on the wire."""
        assert self._session is not None, "use `async with TeacherClient(...)`"
        self._in_flight += 1
        try:
            if self._in_flight > self._peak_in_flight:
                self._peak_in_flight = self._in_flight
                await self._pace_new_connection()
            if before_send is not None:
                await before_send()
            return await self._complete(body)
        finally:
            self._in_flight -= 1

    async def _pace_new_connection(self) -> None:
        """Start new connections one per event-loop turn.

        When a run starts, every worker sends at once, and each needs a new connection. Opened
        together, the connections advance step by step in lockstep, so no request leaves before the
        last connection is up, and the answers then come back in one burst that is worked off
        in series. Started a turn apart, the first requests leave while later connections open.
        Against a remote server this costs microseconds: a turn of an idle loop is that short.
        """
        async with self._opening:
            await asyncio.sleep(0)

    async def _complete(self, body: Mapping[str, Any]) -> Reply:
        import aiohttp  # loaded by __aenter__: a lookup here

        assert self._session is not None
        try:
            async with self._session.post(self.url, data=dumps_bytes(body)) as response:
                text = await response.read()  # bytes: parsed as UTF-8 without charset sniffing
                headers = response.headers
                status = response.status
        except TimeoutError as exc:
            raise RetryableError("timeout", "the teacher did not answer in time") from exc
        except aiohttp.ClientError as exc:
            raise RetryableError("connection", f"connection failed: {exc.__class__.__name__}: {exc}") from exc
        if status == 200:
            try:
                data = loads(text)
            except ValueError as exc:
                raise RetryableError("status", "the teacher sent a response that is not JSON", 200) from exc
            return Reply(data, headers)
        message = _server_message(text.decode("utf-8", errors="replace"))
        if status in RETRYABLE_STATUSES:
            raise RetryableError("status", f"HTTP {status}: {message}", status, parse_retry_after(headers), headers)
        if status in EXAMPLE_STATUSES:
            raise RequestRejected(status, message)
        raise TeacherStatusError(status, message)
