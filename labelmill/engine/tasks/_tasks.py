"""Tasks: how an input row becomes a student input and a zero-shot teacher request.

A task names the fields of a row (id, text template, choices or a label set, gold), label aliases,
and two zero-shot prompts: `label_rationale` (a label and one short sentence of reasoning) and
`label` (the label alone), each with its max_tokens. Built-in tasks: `cqa`, `nli`, `classify`.
A new dataset needs a TOML file with the same fields, not code.

Templates use `{field}` placeholders filled from the row, plus `{choices}` (rendered as
`(a) first (b) second ...`) and `{labels}` (the label set, comma-separated). Other braces are
left alone, so a prompt may show JSON.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labelmill._exceptions import TaskError
from labelmill.engine.tasks._parse import LETTERS, resolve_label
from labelmill.engine.tasks._schema import OUTPUT_FORMATS, OutputFormat, letters, response_format

VARIANT_RATIONALE = "label+rationale"
VARIANT_LABEL = "label"
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True, slots=True)
class Prompt:
    template: str
    max_tokens: int
    system: str | None = None

    def version(self) -> str:
        """A short hash of the prompt text: part of every request key and record."""
        text = json.dumps([self.system, self.template], ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


@dataclass(slots=True)  # per row: not frozen (a frozen __init__ is 5x slower)
class Example:
    """One input row, rendered: what the student sees and what fills the teacher's prompt."""

    id: str
    index: int
    text: str
    choices: list[str] | None
    gold: str | None
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Task:
    name: str
    text: str  # student input template
    prompts: dict[str, Prompt]  # VARIANT_RATIONALE and VARIANT_LABEL
    id_field: str | None = "id"
    choices_field: str | None = None
    labels: tuple[str, ...] = ()
    aliases: dict[str, str] = field(default_factory=dict)
    gold_field: str | None = None
    rationale_field: str | None = None  # a reference rationale in the input, for few-shot demonstrations
    output_format: OutputFormat | None = None  # text, json_schema or auto; None: the run's (default auto)
    rationale_words: tuple[int, int] | None = None  # the rationale length the prompt asks for, in words

    @property
    def multiple_choice(self) -> bool:
        return self.choices_field is not None

    def prompt_tag(self, variant: str) -> str:
        return f"{self.name}/{variant}@{self.prompts[variant].version()}"

    def render(self, row: Mapping[str, Any], index: int) -> Example:
        """Build an Example; raises ValueError saying which field is missing or wrong."""
        example_id = _row_id(row, self.id_field, index)
        choices = _choices(row, self.choices_field) if self.choices_field else None
        fields = dict(row)
        fields["choices"] = format_choices(choices) if choices else ""
        fields["labels"] = ", ".join(self.labels)
        gold = None
        if self.gold_field and row.get(self.gold_field) not in (None, ""):
            gold = self.normalise_label(str(row[self.gold_field]), choices) or str(row[self.gold_field])
        return Example(
            id=example_id,
            index=index,
            text=fill(self.text, fields),
            choices=choices,
            gold=gold,
            fields=fields,
        )

    def messages(self, example: Example, variant: str) -> list[dict[str, str]]:
        prompt = self.prompts[variant]
        messages = [] if prompt.system is None else [{"role": "system", "content": prompt.system}]
        messages.append({"role": "user", "content": fill(prompt.template, example.fields)})
        return messages

    def response_format(self, variant: str, example: Example) -> dict[str, Any]:
        """The strict schema of a `json_schema` request (`_schema.py`): the label an enum of the options."""
        options = letters(len(example.choices or ())) if self.multiple_choice else self.labels
        return response_format(self.name, variant == VARIANT_RATIONALE, options)

    def few_shot_messages(self, example: Example, demos: list[tuple[Example, str]]) -> list[dict[str, str]]:
        """The label+rationale prompt with K worked demonstrations (student text, rationale, answer) first."""
        shown = "".join(f"{demo.text}\nRationale: {why}\nAnswer: {demo.gold}\n\n" for demo, why in demos)
        messages = self.messages(example, VARIANT_RATIONALE)
        messages[-1] = {
            "role": "user",
            "content": f"Worked examples:\n\n{shown}Now this one.\n\n{messages[-1]['content']}",
        }
        return messages

    def demonstrations(self, rows: Iterable[Mapping[str, Any]], shots: int) -> list[tuple[Example, str]]:
        """The first `shots` rows with a gold answer and a reference rationale, as few-shot demos."""
        if shots and not self.rationale_field:
            raise TaskError(f"task {self.name!r} names no rationale_field to take few-shot demonstrations from")
        demos: list[tuple[Example, str]] = []
        for index, row in enumerate(rows):
            if len(demos) >= shots:
                break
            why = row.get(self.rationale_field or "")
            if why:
                try:
                    example = self.render(row, index)
                except ValueError:
                    continue
                if example.gold is not None:
                    demos.append((example, str(why)))
        return demos

    def normalise_label(self, answer: str, choices: list[str] | None) -> str | None:
        """Map a teacher's answer (letter, choice text, label, alias) to a valid label, or None."""
        return resolve_label(answer, (choices or []) if self.multiple_choice else list(self.labels), self.aliases)


def format_choices(choices: list[str]) -> str:
    return " ".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(choices))


@functools.lru_cache(maxsize=64)
def _compile(template: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split a template once into literal parts and the field names between them."""
    parts = _PLACEHOLDER.split(template)
    return tuple(parts[0::2]), tuple(parts[1::2])


def fill(template: str, fields: Mapping[str, Any]) -> str:
    """Replace `{name}` placeholders; a placeholder the row lacks is an error naming it."""
    literals, names = _compile(template)
    out = [literals[0]]
    for name, literal in zip(names, literals[1:], strict=True):
        if name not in fields:
            raise ValueError(f"missing field {name!r}")
        value = fields[name]
        out.append(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
        out.append(literal)
    return "".join(out)


def placeholders(template: str) -> set[str]:
    return set(_PLACEHOLDER.findall(template))


def _row_id(row: Mapping[str, Any], id_field: str | None, index: int) -> str:
    if id_field and row.get(id_field) not in (None, ""):
        return str(row[id_field])
    return str(index)


def _choices(row: Mapping[str, Any], name: str) -> list[str]:
    if name not in row:
        raise ValueError(f"missing field {name!r}")
    value = row[name]
    if isinstance(value, str):  # CSV cells: a JSON list or "a|b|c"
        try:
            value = json.loads(value)
        except ValueError:
            value = value.split("|")
    if isinstance(value, Mapping) and "text" in value:  # HF CommonsenseQA layout
        value = value["text"]
    if not isinstance(value, list) or len(value) < 2 or len(value) > len(LETTERS):
        raise ValueError(f"field {name!r} should be a list of 2-26 choices")
    return [str(v) for v in value]


# -- built-in tasks -------------------------------------------------------------------------------
_RATIONALE_RULES = (
    "Think briefly, then reply in exactly two lines:\n"
    "Rationale: <one short sentence of reasoning, at most 25 words>\n"
    "Answer: {answer_form}"
)
_LABEL_RULES = "Reply with one line and nothing else:\nAnswer: {answer_form}"


def _mc_prompt(rules: str) -> str:
    return "Answer the multiple-choice question.\n\nQuestion: {question}\nChoices: {choices}\n\n" + rules.replace(
        "{answer_form}", "(<letter>) <choice text>"
    )


def _label_prompt(header: str, rules: str) -> str:
    return header + "\nLabels: {labels}\n\n" + rules.replace("{answer_form}", "<one label from the list>")


BUILTIN_TASKS: dict[str, Task] = {
    "cqa": Task(
        name="cqa",
        text="{question}\nAnswer choices: {choices}",
        id_field="id",
        choices_field="choices",
        gold_field="answer",
        rationale_field="abstractive_explanation",
        prompts={
            VARIANT_RATIONALE: Prompt(_mc_prompt(_RATIONALE_RULES), max_tokens=96),
            VARIANT_LABEL: Prompt(_mc_prompt(_LABEL_RULES), max_tokens=24),
        },
    ),
    "nli": Task(
        name="nli",
        text="Premise: {premise}\nHypothesis: {hypothesis}",
        id_field="id",
        labels=("entailment", "neutral", "contradiction"),
        aliases={"yes": "entailment", "no": "contradiction", "maybe": "neutral", "entails": "entailment"},
        gold_field="label",
        prompts={
            VARIANT_RATIONALE: Prompt(
                _label_prompt(
                    "Does the premise entail the hypothesis?\n\nPremise: {premise}\nHypothesis: {hypothesis}",
                    _RATIONALE_RULES,
                ),
                max_tokens=96,
            ),
            VARIANT_LABEL: Prompt(
                _label_prompt(
                    "Does the premise entail the hypothesis?\n\nPremise: {premise}\nHypothesis: {hypothesis}",
                    _LABEL_RULES,
                ),
                max_tokens=16,
            ),
        },
    ),
    "classify": Task(
        name="classify",
        text="{text}",
        id_field="id",
        labels=("positive", "negative", "neutral"),
        gold_field="label",
        prompts={
            VARIANT_RATIONALE: Prompt(
                _label_prompt("Classify the text.\n\nText: {text}", _RATIONALE_RULES), max_tokens=96
            ),
            VARIANT_LABEL: Prompt(_label_prompt("Classify the text.\n\nText: {text}", _LABEL_RULES), max_tokens=16),
        },
    ),
}


def load_task(spec: str) -> Task:
    """A built-in task name or the path of a TOML task file."""
    if spec in BUILTIN_TASKS:
        return BUILTIN_TASKS[spec]
    path = Path(spec)
    if not path.is_file():
        names = ", ".join(sorted(BUILTIN_TASKS))
        raise TaskError(f"unknown task {spec!r}: use a built-in task ({names}) or the path of a TOML task file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return task_from_dict(data, default_name=path.stem)
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise TaskError(f"{path}: {exc}") from exc


def task_from_dict(data: Mapping[str, Any], default_name: str = "task") -> Task:
    """Build a task from TOML data; every problem is a TaskError that names the key."""
    prompts_data = data.get("prompts")
    if not isinstance(prompts_data, Mapping):
        raise TaskError("missing [prompts] table with `label_rationale` and `label` prompts")
    prompts: dict[str, Prompt] = {}
    for key, variant in (("label_rationale", VARIANT_RATIONALE), ("label", VARIANT_LABEL)):
        entry = prompts_data.get(key)
        if not isinstance(entry, Mapping) or not isinstance(entry.get("template"), str):
            raise TaskError(f"missing [prompts.{key}] with a `template` string")
        prompts[variant] = Prompt(
            template=entry["template"],
            max_tokens=int(entry.get("max_tokens", 96)),
            system=entry.get("system"),
        )
    words = _rationale_words(data.get("rationale_words"))
    if words is not None:  # asked for in the prompt, so part of its version and of every request key
        explained = prompts[VARIANT_RATIONALE]
        ask = f"\n\nWrite the rationale in {words[0]} to {words[1]} words."
        prompts[VARIANT_RATIONALE] = Prompt(explained.template + ask, explained.max_tokens, explained.system)
    labels = tuple(str(x) for x in data.get("labels", ()))
    choices_field = data.get("choices_field")
    if not labels and not choices_field:
        raise TaskError('a task needs `labels = [...]` or `choices_field = "..."`')
    output_format = data.get("output_format")
    if output_format is not None and output_format not in OUTPUT_FORMATS:
        raise TaskError(f"output_format is one of {', '.join(OUTPUT_FORMATS)}, not {output_format!r}")
    text = data.get("text")
    if not isinstance(text, str):
        raise TaskError('missing `text`, the student input template (e.g. text = "{question}")')
    return Task(
        name=str(data.get("name", default_name)),
        text=text,
        prompts=prompts,
        id_field=data.get("id_field", "id"),
        choices_field=choices_field,
        labels=labels,
        aliases={str(k).lower(): str(v) for k, v in dict(data.get("aliases", {})).items()},
        gold_field=data.get("gold_field"),
        rationale_field=data.get("rationale_field"),
        output_format=output_format,
        rationale_words=words,
    )


def _rationale_words(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value)):
        raise TaskError(f"rationale_words is [least, most] words, e.g. [20, 40], not {value!r}")
    least, most = value
    if least > most:
        raise TaskError(f"rationale_words is [least, most] words: {least} > {most}")
    return least, most
