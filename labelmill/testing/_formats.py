"""The mock teacher's output formats: `response_format` honoured, refused or ignored, and the
off-format text replies real teachers write now and then.

    honour   a strict `json_schema` is answered with JSON that follows it (the label from its enum),
             as OpenAI's structured outputs do; a schema that breaks the strict rules (every
             property required, `additionalProperties: false`) is a 400, as there
    refuse   a request with `response_format` is a 400 that names it, as servers and proxies
             without structured outputs answer
    ignore   the parameter is accepted and the answer is the usual text

An off-format reply says the answer, but not where a parser looks for it: a hedge between two
choices with no answer line (a failed parse), or an answer line that starts with the wrong choice
(a wrong label). Which replies are off-format is a hash of the prompt, so reruns agree.
"""

from __future__ import annotations

import json
import re
from typing import Any

RESPONSE_FORMAT_MODES = ("honour", "refuse", "ignore")
REFUSAL = "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model."
_ANSWER_LINE = re.compile(r"^\s*Answer:\s*(.*)$", re.IGNORECASE | re.MULTILINE)
_SO_ANSWER = re.compile(r"so the answer is\s*:?\s*([^\n]*)", re.IGNORECASE)
_RATIONALE_LINE = re.compile(r"^\s*Rationale:\s*(.*)$", re.MULTILINE)
_LETTER = re.compile(r"^\(?([a-z])\)")


def schema_problem(response_format: Any) -> str | None:
    """Why a strict server would refuse this `response_format` (None: it would take it)."""
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None  # text and json_object need no schema
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
        return "Invalid schema for response_format: 'schema' must be an object with 'properties'."
    if schema.get("additionalProperties") is not False:
        return "Invalid schema for response_format: 'additionalProperties' is required to be supplied and to be false."
    if sorted(schema.get("required") or []) != sorted(schema["properties"]):
        return "Invalid schema for response_format: 'required' is required to include every key in 'properties'."
    return None


def schema_as_prompt(response_format: dict[str, Any]) -> str:
    """What a schema adds to the prompt it is counted in: a compact type line per property, as
    OpenAI renders a schema into the system prompt (so not its JSON, braces and all)."""
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict):
        return ""
    lines = [f"{name}: {' | '.join(map(str, p.get('enum') or [])) or p.get('type')}" for name, p in properties.items()]
    return "type response = {\n" + "\n".join(lines) + "\n}"


def structured(content: str, response_format: dict[str, Any]) -> str:
    """The mock's text answer as JSON that follows the schema, properties in the schema's order."""
    properties: dict[str, Any] = response_format["json_schema"]["schema"]["properties"]
    answer, rationale = _answer_and_rationale(content)
    out: dict[str, str] = {}
    for name, spec in properties.items():
        if "enum" in spec:
            out[name] = _in_enum(answer, [str(v) for v in spec["enum"]])
        else:
            out[name] = rationale or answer
    return json.dumps(out, ensure_ascii=False)


def off_format(content: str, options: list[tuple[str, str]], form: int) -> str:
    """`content` said off the expected format; `form` picks how (a hash of the prompt)."""
    answer, rationale = _answer_and_rationale(content)
    picked = next((i for i, (letter, text) in enumerate(options) if _names(answer, letter, text)), None)
    if picked is None or len(options) < 2:
        return content
    letter, text = options[picked]
    other_letter, other_text = options[(picked + 1) % len(options)]
    lead = f"Rationale: {rationale}\n" if rationale else ""
    if letter and form % 2 == 0:  # the wrong choice first on the answer line: a wrong label
        return f"{lead}Answer: ({other_letter}) {other_text} looks right at first, but it is ({letter}) {text}."
    return f"{lead}It could be {other_text} or {text}; I lean towards {text}."  # no answer line: a failed parse


def _answer_and_rationale(content: str) -> tuple[str, str | None]:
    answer_match = _ANSWER_LINE.search(content) or _SO_ANSWER.search(content)
    answer = answer_match.group(1).strip() if answer_match else content.strip()
    rationale_match = _RATIONALE_LINE.search(content)
    if rationale_match:
        return answer, rationale_match.group(1).strip()
    before = content[: answer_match.start()].strip() if answer_match else ""
    return answer, before or None


def _names(answer: str, letter: str, text: str) -> bool:
    lowered = answer.lower().rstrip(".")
    found = _LETTER.match(lowered)
    return (found.group(1) == letter) if (letter and found) else lowered.endswith(text.lower())


def _in_enum(answer: str, enum: list[str]) -> str:
    lowered = answer.lower().strip().rstrip(".")
    found = _LETTER.match(lowered)
    if found and found.group(1) in enum:
        return found.group(1)
    exact = next((v for v in enum if v.lower() == lowered), None)
    mentioned = [v for v in enum if re.search(rf"(?<!\w){re.escape(v.lower())}(?!\w)", lowered)]
    return exact or (mentioned[0] if mentioned else enum[0])
