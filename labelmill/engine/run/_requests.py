"""Requests and outcomes: how an example becomes a teacher request, and a response a record.

Under `--output-format auto` a request carries the task's schema until the server refuses it;
from then on the run asks in text (`schema_refused`). Either form's stored answer will do: a
request's `text_twin` is looked up when the schema form is not in the store, so answers bought in
text (by an earlier run, or before the refusal) are never paid for again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from labelmill.cache import KeyTemplate, StoredResponse
from labelmill.engine._config import AnnotateConfig
from labelmill.engine.run._failures import Failure
from labelmill.engine.selection import Selection
from labelmill.engine.tasks._input import Row
from labelmill.engine.tasks._records import build_record
from labelmill.engine.tasks._schema import refuses_schema
from labelmill.engine.tasks._tasks import VARIANT_LABEL, VARIANT_RATIONALE, Example


@dataclass(slots=True)  # per row: not frozen (a frozen __init__ is 5x slower)
class Request:
    """An example whose response is not in the store: it goes to the teacher."""

    row: Row
    example: Example
    body: dict[str, Any]
    tag: str
    variant: str
    key: str
    seq: int = -1
    fallback: Request | None = None  # under a budget plan: the label-only request, if not explained


@dataclass(slots=True)  # per row: not frozen (a frozen __init__ is 5x slower)
class Done:
    line: str  # the serialised shard record
    rationale: bool
    prompt_tokens: int
    completion_tokens: int
    rationale_words: int | None = None
    rationale_agrees: bool | None = None


Outcome = Done | Failure
log = logging.getLogger("labelmill")


class Requests:
    """Builds the requests of a run and turns stored responses into outcomes."""

    def __init__(self, config: AnnotateConfig, selection: Selection) -> None:
        self.config = config
        self.selection = selection  # which variants may answer an example, preferred first
        self.task = config.task
        self.tags = {v: self.task.prompt_tag(v) for v in (VARIANT_RATIONALE, VARIANT_LABEL)}
        self.demos: list[tuple[Example, str]] = []
        if config.shots:
            from labelmill.engine.tasks._input import iter_rows

            rows = (r.data for r in iter_rows(config.source) if r.data is not None) if config.source != "-" else ()
            self.demos = self.task.demonstrations(rows, config.shots)
            self.tags[VARIANT_RATIONALE] += f"+{len(self.demos)}shot"
        self.key_templates: dict[tuple[str, int], KeyTemplate] = {}
        self.output_format = config.format_asked
        self.schema_refused = False  # auto: the server refused the schema; text for the rest of the run
        self.schema_refusals = 0  # requests the server refused for their schema (none is paid)

    @property
    def sends_schema(self) -> bool:
        return self.output_format == "json_schema" or (self.output_format == "auto" and not self.schema_refused)

    def format_report(self) -> dict[str, Any]:
        used = "json_schema" if self.sends_schema else "text"
        return {"asked": self.output_format, "used": used, "schema_refusals": self.schema_refusals}

    def make(self, row: Row, example: Example, variant: str, seq: int = -1, *, text: bool = False) -> Request:
        few_shot = bool(self.demos) and variant == VARIANT_RATIONALE
        body = {
            "model": self.config.model,
            "messages": self.task.few_shot_messages(example, self.demos)
            if few_shot
            else self.task.messages(example, variant),
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens or self.task.prompts[variant].max_tokens,
        }
        if self.config.select == "uncertainty" and variant == VARIANT_LABEL:
            body["logprobs"] = True  # the confidence that decides who gets a rationale
            body["top_logprobs"] = 5
        frame = -1  # which key template: the schema's options are part of the request's frame
        if self.sends_schema and not text:
            body["response_format"] = self.task.response_format(variant, example)
            frame = len(example.choices or ())
        tag = self.tags[variant]
        return Request(row, example, body, tag, variant, self.key(body, variant, frame), seq)

    def text_twin(self, request: Request) -> Request | None:
        """The same request in text, when a stored text answer would do for it (auto)."""
        if self.output_format != "auto" or "response_format" not in request.body:
            return None
        return self.make(request.row, request.example, request.variant, request.seq, text=True)

    def refused_schema(self, request: Request, server_message: str) -> bool:
        """Whether a 400 refused this request's schema; under auto the run goes on in text."""
        if "response_format" not in request.body or not refuses_schema(server_message):
            return False
        self.schema_refusals += 1
        if self.output_format == "auto" and not self.schema_refused:
            self.schema_refused = True
            log.warning("the teacher refuses structured outputs (%s): asking in text from now on", server_message)
        return True

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "key_templates": {}}  # hash states do not pickle; rebuilt on use

    def key(self, body: dict[str, Any], variant: str, frame: int = -1) -> str:
        """`request_key(body, tag)`, from a template per variant: within a run, a variant's bodies
        differ only in the last message's text (model, settings, system prompt and few-shot
        demonstrations are fixed; a schema's options by `frame`, the number of choices), and keying is
        a large share of a replay's time."""
        messages = body["messages"]
        template = self.key_templates.get((variant, frame))
        if template is None:
            holed = {**body, "messages": [*messages[:-1], {**messages[-1], "content": KeyTemplate.HOLE}]}
            template = self.key_templates[variant, frame] = KeyTemplate(holed, self.tags[variant])
        return template.key(messages[-1]["content"])

    def candidates(self, row: Row, example: Example) -> list[Request]:
        """The requests that may answer this example, preferred first (the selection policy's
        variants): a stored answer of any of them will do, so nothing is paid twice."""
        return [self.make(row, example, variant) for variant in self.selection.variants(example.id)]

    @staticmethod
    def failure(item: Request, reason: str, detail: str) -> Failure:
        row, example = item.row, item.example
        return Failure(example.index, example.id, row.file, row.line, reason, detail, item.key)

    def finish(self, item: Request, entry: StoredResponse, confidence: float | None = None) -> Outcome:
        """Parse a stored response into a record, or a failure row saying why it is not one.
        `confidence` comes from the label-only answer when the record's own answer has no logprobs."""
        built = build_record(self.task, item.example, item.variant, entry, confidence)
        if isinstance(built, str):
            reason, _, detail = built.partition(": ")
            return self.failure(item, reason, detail)
        usage = built.usage
        return Done(built.to_json(), built.rationale is not None, usage.prompt_tokens, usage.completion_tokens,
                    built.rationale_words, built.rationale_agrees)  # fmt: skip
