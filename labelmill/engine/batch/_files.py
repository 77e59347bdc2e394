"""Batches run by hand (`vllm run-batch`, a provider's console): the same request lines as files.

    labelmill batch export INPUT --task T --out FILE   the requests not in the store, one Batch API
                                                       input line each (custom_id = request key)
    labelmill batch import RESULTS.jsonl --cache DIR   answers into the store under their keys

An export also appends each line's key, prompt tag and file to `CACHE/batch-exports.jsonl`, so an
import needs nothing but the results: it finds each answer's request again, checks that the request
hashes to the answer's custom_id, and stores it exactly as an online answer.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from labelmill._exceptions import InputError, UsageError
from labelmill.cache import ResponseStore, make_entry, request_key
from labelmill.engine._config import AnnotateConfig
from labelmill.engine.batch._state import read_bodies
from labelmill.engine.money import Prices, Spending, cached_prompt_tokens
from labelmill.engine.run import Request, Requests, Resolver, selection_for
from labelmill.engine.tasks import iter_rows

EXPORTS = "batch-exports.jsonl"
URL = "/v1/chat/completions"


def missing_requests(config: AnnotateConfig, store: ResponseStore, skip: set[str]) -> Iterator[Request]:
    """The requests of `config`'s corpus whose answers the store lacks, each key once, none in `skip`."""
    requests = Requests(config, selection_for(config, Spending(config.prices, None, plan=False)))
    resolver = Resolver(config, requests, store)
    taken: set[str] = set()
    rows = itertools.islice(iter_rows(config.source), config.limit)
    while batch := list(itertools.islice(rows, 500)):
        for item in resolver.resolve(batch).items:
            if isinstance(item, Request) and item.key not in skip and item.key not in taken:
                taken.add(item.key)
                yield item


def request_line(key: str, body: dict[str, Any]) -> str:
    return json.dumps({"custom_id": key, "method": "POST", "url": URL, "body": body}, ensure_ascii=False) + "\n"


def export_requests(config: AnnotateConfig, out_file: Path) -> dict[str, Any]:
    out_file.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with ResponseStore(config.cache_dir) as store, open(out_file, "w", encoding="utf-8") as lines, \
            open(Path(config.cache_dir) / EXPORTS, "a", encoding="utf-8") as index:  # fmt: skip
        for request in missing_requests(config, store, set()):
            lines.write(request_line(request.key, request.body))
            index.write(json.dumps({"key": request.key, "tag": request.tag, "file": str(out_file.resolve())}) + "\n")
            written += 1
    return {"requests": written, "file": str(out_file)}


def _exported(cache_dir: Path) -> dict[str, tuple[str, str]]:
    """key -> (prompt tag, the export file that holds its body), the latest export winning."""
    path = cache_dir / EXPORTS
    if not path.exists():
        raise UsageError(f"{cache_dir} has no {EXPORTS}: export the requests with `labelmill batch export` first")
    with open(path, encoding="utf-8") as fh:
        return {(row := json.loads(line))["key"]: (row["tag"], row["file"]) for line in fh if line.strip()}


def import_results(results: Path, cache_dir: Path, prices: Prices | None) -> dict[str, Any]:
    """Store every answer of a results file whose request was exported; count what is not."""
    if not results.exists():
        raise InputError(f"{results} does not exist")
    exported = _exported(cache_dir)
    bodies: dict[str, dict[str, dict[str, Any]]] = {}  # export file -> custom_id -> body
    counts = {"stored": 0, "errors": 0, "unknown": 0, "mismatched": 0}
    entries = []
    with open(results, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            row = json.loads(line)
            key, response = str(row.get("custom_id")), row.get("response") or {}
            if key not in exported:
                counts["unknown"] += 1
                continue
            if response.get("status_code") != 200:
                counts["errors"] += 1
                continue
            tag, file = exported[key]
            if file not in bodies:
                bodies[file] = read_bodies(Path(file))
            body = bodies[file].get(key)
            if body is None or request_key(body, tag) != key:
                counts["mismatched"] += 1  # the request on file does not hash to this answer's key
                continue
            usage = response["body"].get("usage") or {}
            cost = prices.cost(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0),
                               cached_prompt_tokens(usage)) if prices else None  # fmt: skip
            entries.append(make_entry(body, tag, response["body"], cost))
    with ResponseStore(cache_dir) as store:
        store.put_many(entries)
    counts["stored"] = len(entries)
    return counts
