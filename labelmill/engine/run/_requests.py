"""Requests and outcomes: how an example becomes a teacher request, and a response a record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labelmill.cache import KeyTemplate, StoredResponse
from labelmill.engine._config import AnnotateConfig
from labelmill.engine.run._failures import Failure
from labelmill.engine.selection import Selection
from labelmill.engine.tasks._input import Row
from labelmill.engine.tasks._records import build_record
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


Outcome = Done | Failure


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
        self.key_templates: dict[str, KeyTemplate] = {}

    def make(self, row: Row, example: Example, variant: str, seq: int = -1) -> Request:
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
        tag = self.tags[variant]
        return Request(row, example, body, tag, variant, self.key(body, variant), seq)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "key_templates": {}}  # hash states do not pickle; rebuilt on use

    def key(self, body: dict[str, Any], variant: str) -> str:
        """`request_key(body, tag)`, from a template per variant: within a run, a variant's bodies
        differ only in the last message's text (model, settings, system prompt and few-shot
        demonstrations are fixed), and keying is a large share of a replay's time."""
        messages = body["messages"]
        template = self.key_templates.get(variant)
        if template is None:
            holed = {**body, "messages": [*messages[:-1], {**messages[-1], "content": KeyTemplate.HOLE}]}
            template = self.key_templates[variant] = KeyTemplate(holed, self.tags[variant])
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
        return Done(built.to_json(), built.rationale is not None, usage.prompt_tokens, usage.completion_tokens)
