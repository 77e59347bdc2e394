"""The mock teacher's Files and Batch APIs, with the real API's object shapes and status flow.

    POST /v1/files (multipart: purpose=batch, file)     GET /v1/files, /v1/files/{id}, /v1/files/{id}/content
    DELETE /v1/files/{id}
    POST /v1/batches {input_file_id, endpoint, completion_window}    GET /v1/batches, /v1/batches/{id}
    POST /v1/batches/{id}/cancel

A batch moves validating -> in_progress -> finalizing -> completed over `batch_latency_s` (time
passes on the mock's clock; status is worked out when asked). Each line is answered exactly as the
online endpoint answers the same body. Flags play a batch's bad days: `batch_expire_fraction` (the
batch expires with that fraction of its lines done; the rest are `batch_expired` errors),
`batch_line_error_rate` (lines answered 500 in the error file), `batch_fail_validation`, and
`batch_enqueued_tokens` (a batch whose prompt + max_tokens exceed it fails with
`token_limit_exceeded`), and `batch_lost_creates` (the first N creates make their batch and answer
504, as a gateway that timed out does). `stats.batch_uploads` counts how often each custom_id was
uploaded, `stats.batches_created` how many batches were made.
"""

from __future__ import annotations

import collections
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Refusal = Callable[[Any], "tuple[int, dict[str, Any]] | None"]
Answer = Callable[[dict[str, Any]], dict[str, Any]]
CHAT = "/v1/chat/completions"


@dataclass(slots=True)
class BatchFlags:
    latency_s: float = 0.5
    expire_fraction: float | None = None
    line_error_rate: float = 0.0
    fail_validation: bool = False
    enqueued_tokens: int | None = None
    lost_creates: int = 0  # the first N creates make the batch, then answer 504 (the answer lost on the way)


@dataclass(slots=True)
class _Batch:
    obj: dict[str, Any]
    lines: list[dict[str, Any]]
    started: float
    cancelled_at: float | None = None
    done: bool = False


@dataclass(slots=True)
class BatchStats:
    files_uploaded: int = 0
    batches_created: int = 0
    batch_uploads: collections.Counter[str] = field(default_factory=collections.Counter)


class MockBatches:
    def __init__(self, flags: BatchFlags, refusal: Refusal, answer: Answer, tokens: Callable[[dict[str, Any]], int],
                 rng_unit: Callable[[str], float]) -> None:  # fmt: skip
        self.flags, self.refusal, self.answer, self.tokens, self.unit = flags, refusal, answer, tokens, rng_unit
        self.files: dict[str, tuple[dict[str, Any], bytes]] = {}
        self.batches: dict[str, _Batch] = {}
        self.stats = BatchStats()
        self._ids = itertools.count(1)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/files", self.upload)
        app.router.add_get("/v1/files", self.list_files)
        app.router.add_get("/v1/files/{id}", self.get_file)
        app.router.add_get("/v1/files/{id}/content", self.file_content)
        app.router.add_delete("/v1/files/{id}", self.delete_file)
        app.router.add_post("/v1/batches", self.create)
        app.router.add_get("/v1/batches", self.list_batches)
        app.router.add_get("/v1/batches/{id}", self.get_batch)
        app.router.add_post("/v1/batches/{id}/cancel", self.cancel)

    # -- files ----------------------------------------------------------------------------------
    def _add_file(self, name: str, purpose: str, data: bytes) -> dict[str, Any]:
        file_id = f"file-{next(self._ids):06d}"
        obj = {"id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
               "filename": name, "purpose": purpose, "status": "processed"}  # fmt: skip
        self.files[file_id] = (obj, data)
        return obj

    async def upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload, purpose = form.get("file"), str(form.get("purpose") or "")
        if not isinstance(upload, web.FileField) or purpose != "batch":
            return _error(400, "a file and purpose=batch are required")
        data = upload.file.read()
        self.stats.files_uploaded += 1
        for line in data.splitlines():
            if line.strip():
                self.stats.batch_uploads[str(json.loads(line).get("custom_id"))] += 1
        return web.json_response(self._add_file(upload.filename, purpose, data))

    async def list_files(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [obj for obj, _ in self.files.values()]})

    async def get_file(self, request: web.Request) -> web.Response:
        found = self.files.get(request.match_info["id"])
        return web.json_response(found[0]) if found else _error(404, "No such file")

    async def file_content(self, request: web.Request) -> web.Response:
        found = self.files.get(request.match_info["id"])
        return web.Response(body=found[1], content_type="application/jsonl") if found else _error(404, "No such file")

    async def delete_file(self, request: web.Request) -> web.Response:
        found = self.files.pop(request.match_info["id"], None)
        if found is None:
            return _error(404, "No such file")
        return web.json_response({"id": request.match_info["id"], "object": "file", "deleted": True})

    # -- batches --------------------------------------------------------------------------------
    async def create(self, request: web.Request) -> web.Response:
        body = await request.json()
        found = self.files.get(str(body.get("input_file_id")))
        if found is None:
            return _error(400, "input_file_id does not name an uploaded file")
        self.stats.batches_created += 1
        batch_id = f"batch_{next(self._ids):06d}"
        now = int(time.time())
        obj: dict[str, Any] = {
            "id": batch_id, "object": "batch", "endpoint": body.get("endpoint"), "errors": None,
            "input_file_id": body["input_file_id"], "completion_window": body.get("completion_window"),
            "status": "validating", "output_file_id": None, "error_file_id": None, "created_at": now,
            "in_progress_at": None, "expires_at": now + 86400, "finalizing_at": None, "completed_at": None,
            "failed_at": None, "expired_at": None, "cancelling_at": None, "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0}, "metadata": body.get("metadata"),
        }  # fmt: skip
        lines = [json.loads(line) for line in found[1].splitlines() if line.strip()]
        obj["request_counts"]["total"] = len(lines)
        self.batches[batch_id] = _Batch(obj, lines, time.monotonic())
        if self.stats.batches_created <= self.flags.lost_creates:
            return _error(504, "the gateway timed out waiting for the batch service")
        return web.json_response(obj)

    async def list_batches(self, request: web.Request) -> web.Response:
        data = [self._advance(batch) for batch in reversed(list(self.batches.values()))]
        return web.json_response({"object": "list", "data": data, "has_more": False})

    async def get_batch(self, request: web.Request) -> web.Response:
        batch = self.batches.get(request.match_info["id"])
        return web.json_response(self._advance(batch)) if batch else _error(404, "No such batch")

    async def cancel(self, request: web.Request) -> web.Response:
        batch = self.batches.get(request.match_info["id"])
        if batch is None:
            return _error(404, "No such batch")
        if not batch.done and batch.cancelled_at is None:
            batch.cancelled_at = time.monotonic()
            batch.obj.update(status="cancelling", cancelling_at=int(time.time()))
        return web.json_response(self._advance(batch))

    def _advance(self, batch: _Batch) -> dict[str, Any]:
        """The batch's status now, finishing it (its files written) when its time has come."""
        if batch.done:
            return batch.obj
        elapsed = time.monotonic() - batch.started
        latency = self.flags.latency_s
        if batch.obj["status"] == "validating" and elapsed >= latency / 4:
            problem = self._invalid(batch)
            if problem is not None:
                batch.done = True
                batch.obj.update(status="failed", failed_at=int(time.time()),
                                 errors={"object": "list", "data": [problem]})  # fmt: skip
                return batch.obj
            batch.obj.update(status="in_progress", in_progress_at=int(time.time()))
        if batch.cancelled_at is not None:
            done = (batch.cancelled_at - batch.started) / latency
            self._finish(batch, min(1.0, max(0.0, done)), "cancelled", "batch_cancelled")
        elif self.flags.expire_fraction is not None and elapsed >= latency:
            self._finish(batch, self.flags.expire_fraction, "expired", "batch_expired")
        elif elapsed >= latency:
            self._finish(batch, 1.0, "completed", "")
        elif elapsed >= 0.9 * latency and batch.obj["status"] == "in_progress":
            batch.obj.update(status="finalizing", finalizing_at=int(time.time()))
        return batch.obj

    def _invalid(self, batch: _Batch) -> dict[str, Any] | None:
        if self.flags.fail_validation:
            return {"code": "invalid_request", "message": "The batch input file failed validation.", "line": 1}
        if self.flags.enqueued_tokens is not None:
            enqueued = sum(self.tokens(line["body"]) + int(line["body"].get("max_tokens") or 0) for line in batch.lines)
            if enqueued > self.flags.enqueued_tokens:
                limit = self.flags.enqueued_tokens
                return {"code": "token_limit_exceeded", "line": None,
                        "message": f"Enqueued token limit reached: {enqueued} > {limit}."}  # fmt: skip
        return None

    def _finish(self, batch: _Batch, fraction: float, status: str, leftover_code: str) -> None:
        outputs, errors = [], []
        answered = int(len(batch.lines) * fraction)
        for number, line in enumerate(batch.lines):
            custom_id, entry_id = line.get("custom_id"), f"batch_req_{batch.obj['id']}_{number}"
            if number >= answered:
                error = {"code": leftover_code, "message": f"This request was not executed: the batch was {status}."}
                errors.append({"id": entry_id, "custom_id": custom_id, "response": None, "error": error})
                continue
            refused = self.refusal(line.get("body"))
            if refused is None and self.unit(f"line-error|{custom_id}") < self.flags.line_error_rate:
                refused = (500, {"error": {"message": "The server had an error.", "type": "server_error"}})
            if refused is not None:
                response = {"status_code": refused[0], "request_id": entry_id, "body": refused[1]}
                errors.append({"id": entry_id, "custom_id": custom_id, "response": response, "error": None})
            else:
                response = {"status_code": 200, "request_id": entry_id, "body": self.answer(line["body"])}
                outputs.append({"id": entry_id, "custom_id": custom_id, "response": response, "error": None})
        name = batch.obj["id"]
        if outputs:
            batch.obj["output_file_id"] = self._add_file(f"{name}_output.jsonl", "batch_output", _jsonl(outputs))["id"]
        if errors:
            batch.obj["error_file_id"] = self._add_file(f"{name}_errors.jsonl", "batch_output", _jsonl(errors))["id"]
        failed = sum(1 for e in errors if e["response"] is not None)
        batch.obj["request_counts"].update(completed=len(outputs), failed=failed)
        batch.obj.update(status=status, **{f"{status}_at": int(time.time())})
        if status == "completed":
            batch.obj["finalizing_at"] = batch.obj["finalizing_at"] or int(time.time())
        batch.done = True


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": "invalid_request_error"}}, status=status)
