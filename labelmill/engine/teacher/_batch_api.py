"""The Files and Batch APIs of an OpenAI-compatible server (OpenAI, Azure OpenAI, vLLM, the mock).

One call each: upload a batch input file, read or list files, download a file's content; create (at
most once), read, list and cancel batches. 429/5xx/timeouts are retried (`_retry.py`); any other
status raises `TeacherStatusError` with the server's message.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from labelmill._exceptions import RetryableError, TeacherStatusError
from labelmill.engine.teacher._client import RETRYABLE_STATUSES, parse_retry_after
from labelmill.engine.teacher._retry import RetryPolicy, call_with_retries

if TYPE_CHECKING:
    import aiohttp

T = TypeVar("T")
ENDPOINT = "/v1/chat/completions"


class BatchAPI:
    """`async with BatchAPI(base_url, api_key) as api: await api.create(file_id)`."""

    def __init__(self, base_url: str, api_key: str | None, timeout_s: float = 300.0,
                 retry: RetryPolicy | None = None) -> None:  # fmt: skip
        self.base = base_url.rstrip("/")
        self._headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout_s = timeout_s
        self._retry = retry or RetryPolicy(attempts=6, backoff_base_s=0.5, backoff_cap_s=20.0)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> BatchAPI:
        import aiohttp

        self._session = aiohttp.ClientSession(headers=self._headers,
                                              timeout=aiohttp.ClientTimeout(total=self._timeout_s))  # fmt: skip
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    # -- files ----------------------------------------------------------------------------------
    async def upload(self, path: Path, filename: str) -> dict[str, Any]:
        data = await asyncio.to_thread(path.read_bytes)

        async def send() -> dict[str, Any]:
            import aiohttp

            form = aiohttp.FormData()
            form.add_field("purpose", "batch")
            form.add_field("file", data, filename=filename, content_type="application/jsonl")
            return await self._json("POST", "/files", data=form)

        return await self._retrying(send)

    async def file(self, file_id: str) -> dict[str, Any]:
        return await self._retrying(lambda: self._json("GET", f"/files/{file_id}"))

    async def files(self) -> list[dict[str, Any]]:
        listed = await self._retrying(lambda: self._json("GET", "/files", params={"purpose": "batch"}))
        return list(listed.get("data") or [])

    async def content(self, file_id: str) -> bytes:
        return await self._retrying(lambda: self._bytes(f"/files/{file_id}/content"))

    # -- batches --------------------------------------------------------------------------------
    async def create(self, file_id: str, metadata: dict[str, str] | None = None) -> dict[str, Any]:
        """Create a batch from an uploaded file, at most once. A create is a POST the server may
        have carried out before its answer was lost (a timeout, a 504 from a gateway): before
        asking again, look for a batch already made from this file, so none is made and paid twice."""
        body = {"input_file_id": file_id, "endpoint": ENDPOINT, "completion_window": "24h", "metadata": metadata}
        tries = 0

        async def once() -> dict[str, Any]:
            nonlocal tries
            tries += 1
            if tries > 1 and (made := await self.made_from(file_id)) is not None:
                return made
            return await self._json("POST", "/batches", json_body=body)

        return await self._retrying(once)

    async def made_from(self, file_id: str) -> dict[str, Any] | None:
        """The newest batch created from `file_id`, if the server has one."""
        return next((b for b in await self.batches() if b.get("input_file_id") == file_id), None)

    async def batch(self, batch_id: str) -> dict[str, Any]:
        return await self._retrying(lambda: self._json("GET", f"/batches/{batch_id}"))

    async def batches(self, most: int = 10_000) -> list[dict[str, Any]]:
        """The account's batches, newest first, page by page (up to `most`)."""
        found: list[dict[str, Any]] = []
        params = {"limit": "100"}
        while len(found) < most:
            page = await self._retrying(lambda: self._json("GET", "/batches", params=dict(params)))
            found += list(page.get("data") or [])
            if not page.get("has_more") or not found:
                return found
            params["after"] = str(found[-1]["id"])
        return found

    async def cancel(self, batch_id: str) -> dict[str, Any]:
        return await self._retrying(lambda: self._json("POST", f"/batches/{batch_id}/cancel"))

    # -- plumbing -------------------------------------------------------------------------------
    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        return await call_with_retries(call, self._retry)

    async def _json(self, method: str, path: str, *, data: Any = None, json_body: Any = None,
                    params: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
        text = await self._send(method, path, data=data, json_body=json_body, params=params)
        try:
            parsed = json.loads(text)
        except ValueError as exc:
            raise RetryableError("status", f"{method} {path}: the server sent something that is not JSON", 200) from exc
        return parsed if isinstance(parsed, dict) else {"data": parsed}

    async def _bytes(self, path: str) -> bytes:
        return await self._send("GET", path)

    async def _send(self, method: str, path: str, *, data: Any = None, json_body: Any = None,
                    params: dict[str, str] | None = None) -> bytes:  # fmt: skip
        import aiohttp

        assert self._session is not None, "use `async with BatchAPI(...)`"
        try:
            async with self._session.request(method, self.base + path, data=data, json=json_body,
                                             params=params) as response:  # fmt: skip
                body, status, headers = await response.read(), response.status, response.headers
        except TimeoutError as exc:
            raise RetryableError("timeout", f"{method} {path}: no answer in time") from exc
        except aiohttp.ClientError as exc:
            raise RetryableError("connection", f"{method} {path}: {exc.__class__.__name__}: {exc}") from exc
        if status < 300:
            return body
        message = _message(body)
        if status in RETRYABLE_STATUSES:
            raise RetryableError("status", f"HTTP {status}: {message}", status, parse_retry_after(headers), headers)
        raise TeacherStatusError(status, f"{method} {path}: {message}")


def _message(body: bytes) -> str:
    try:
        error = json.loads(body).get("error")
        return str(error.get("message") if isinstance(error, dict) else error)[:500]
    except (ValueError, AttributeError):
        return body.decode("utf-8", "replace")[:500] or "(empty body)"
