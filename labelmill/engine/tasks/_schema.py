"""Structured outputs: the strict JSON schema a request carries under `--output-format json_schema`.

The label is an `enum` of the task's options, so a server that honours the schema cannot answer
anything else: for a label task the labels themselves, for a multiple-choice task the letters of
its choices (`a`..), as the prompt shows them. (The choice texts would make every example's schema
different, and with it every request's frame; a letter names a choice as surely.) The rationale is
a required string, placed before the label so the teacher reasons first, and only in the
label+rationale variant. `engine/tasks/_parse.py` reads the answer back as it reads any JSON reply.

    text         free text, parsed (the prompts' `Answer:` lines)
    json_schema  every request carries the schema
    auto         the schema, and text for the rest of the run once the server refuses it (a 400
                 that names `response_format` or `json_schema`)
"""

from __future__ import annotations

import functools
import re
from typing import Any, Literal

from labelmill.engine.tasks._parse import LETTERS

OutputFormat = Literal["text", "json_schema", "auto"]
OUTPUT_FORMATS: tuple[OutputFormat, ...] = ("text", "json_schema", "auto")
_REFUSAL = re.compile(r"response_format|json_schema|structured output|response format", re.IGNORECASE)
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def refuses_schema(server_message: str) -> bool:
    """Whether a 400's message says the server does not take the schema (not that the request is bad)."""
    return _REFUSAL.search(server_message) is not None


@functools.lru_cache(maxsize=256)
def response_format(task_name: str, rationale: bool, options: tuple[str, ...]) -> dict[str, Any]:
    """The `response_format` of a request: one dict per (task, variant, options), shared by its requests."""
    properties: dict[str, Any] = {}
    if rationale:
        properties["rationale"] = {"type": "string"}
    properties["answer"] = {"type": "string", "enum": list(options)}
    name = _NAME_UNSAFE.sub("_", f"{task_name}_{'label_rationale' if rationale else 'label'}")[:64]
    schema = {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}
    return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}


def letters(count: int) -> tuple[str, ...]:
    return tuple(LETTERS[:count])
