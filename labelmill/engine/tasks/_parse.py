"""Parse what real teachers write into a label and a rationale.

Handles `Answer: C`, `Answer: (c) text`, `Rationale: ...` lines, `... So the answer is (d) text.`,
JSON objects (`{"answer": ..., "rationale": ...}`, also inside code fences), a bare letter or a
bare label, any case, and the task's aliases. Returns None for the label when nothing resolves:
the engine records a `parse_error` failure and keeps the raw text in the store.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

LETTERS = "abcdefghijklmnopqrstuvwxyz"

_ANSWER = re.compile(r"(?:^|\n|[.!]\s+)\s*(?:final\s+)?(?:answer|label)\s*(?:is|:)\s*(.+)", re.IGNORECASE)
_SO_ANSWER = re.compile(r"so\s+the\s+answer\s+is\s*:?\s*(.+)", re.IGNORECASE | re.DOTALL)
_SO_ANSWER_LOWER = re.compile(_SO_ANSWER.pattern, re.DOTALL)
_ANSWER_STARTS = re.compile(r"[\n.!]")  # where an `_ANSWER` match can begin, besides position 0
_RATIONALE = re.compile(r"^\s*(?:rationale|reasoning|explanation|reason)\s*:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
# ASCII letters only: with IGNORECASE, `[a-z]` also matches U+0130, U+017F and the Kelvin sign, whose
# lowercase is no choice letter.
_LETTER_PREFIX = re.compile(r"^\(?([a-zA-Z])\)\s*(.*)$|^([a-zA-Z])[.:]\s+(.*)$|^\(?([a-zA-Z])\)?$")
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")
_JSON_ANSWER_KEYS = ("answer", "label", "choice", "final_answer")
_JSON_RATIONALE_KEYS = ("rationale", "reasoning", "explanation", "reason")


@dataclass(slots=True)  # per row: not frozen (a frozen __init__ is 5x slower)
class Parsed:
    label: str | None
    rationale: str | None
    answer_text: str  # what was taken as the answer, for failure messages


def _clean(text: str) -> str:
    return text.strip().strip("\"'*`").strip().rstrip(".!").strip()


def resolve_label(answer: str, options: Sequence[str], aliases: Mapping[str, str]) -> str | None:
    """Map an answer to one of `options` by letter, exact text, alias or unique mention."""
    text = _clean(answer.splitlines()[0] if answer.strip() else answer)
    if not text:
        return None
    lowered = {o.lower(): o for o in options}
    key = text.lower()
    if key in lowered:
        return lowered[key]
    if key in aliases:
        target = aliases[key]
        return lowered.get(target.lower(), target if not options else None)
    match = _LETTER_PREFIX.match(text)
    if match and options:
        letter = (match.group(1) or match.group(3) or match.group(5)).lower()
        rest = _clean(match.group(2) or match.group(4) or "").lower()
        index = LETTERS.index(letter)
        if rest and rest in lowered:
            return lowered[rest]  # the text wins over a mismatched letter
        if index < len(options):
            return options[index]
    mentioned = [o for o in options if re.search(rf"(?<!\w){re.escape(o)}(?!\w)", text, re.IGNORECASE)]
    if len(mentioned) == 1:
        return mentioned[0]
    alias_hits = {v for k, v in aliases.items() if re.search(rf"(?<!\w){re.escape(k)}(?!\w)", text, re.IGNORECASE)}
    if len(alias_hits) == 1:
        return lowered.get(next(iter(alias_hits)).lower())
    return None


def _from_json(content: str) -> tuple[str, str | None] | None:
    if "{" not in content:  # the common case: plain text, no JSON to look for
        return None
    stripped = _FENCE.sub("", content.strip())
    if not stripped.startswith("{"):
        return None
    try:
        data: Any = json.loads(stripped)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    answer = next((data[k] for k in _JSON_ANSWER_KEYS if k in data), None)
    if answer is None:
        return None
    rationale = next((data[k] for k in _JSON_RATIONALE_KEYS if isinstance(data.get(k), str)), None)
    return str(answer), rationale


def parse_response(content: str, options: Sequence[str], aliases: Mapping[str, str], want_rationale: bool) -> Parsed:
    """Find the answer and (if asked for) the rationale in a teacher's reply."""
    from_json = _from_json(content)
    if from_json is not None:
        answer, rationale = from_json
    else:
        answer, rationale = _from_text(content)
    label = resolve_label(answer, options, aliases)
    if rationale is not None:
        rationale = " ".join(rationale.split()) or None
    return Parsed(label=label, rationale=rationale if want_rationale else None, answer_text=answer.strip())


def _from_text(content: str) -> tuple[str, str | None]:
    text = content.split("\n\nQ:", 1)[0]  # few-shot style completions run on into the next question
    rationale_match = _first_rationale(text)
    rationale = rationale_match.group(1) if rationale_match else None
    so_match = _so_answer(text)
    if so_match:
        if rationale is None:
            rationale = text[: so_match.start()].strip() or None
        return next(iter(so_match.group(1).strip().splitlines()), ""), rationale
    answer = _last_answer(text)
    if answer is not None:
        return answer.strip(), rationale
    if rationale_match:  # only a rationale line: the answer is whatever else is there
        rest = (text[: rationale_match.start()] + text[rationale_match.end() :]).strip()
        return rest, rationale
    return text.strip(), None


# The three searches below return what `_RATIONALE.search`, `_SO_ANSWER.search` and
# `_ANSWER.findall(...)[-1]` return, but try the patterns only where a match can start: a
# search tries every position, and that was most of the cost of parsing a reply.


def _first_rationale(text: str) -> re.Match[str] | None:
    """`_RATIONALE.search(text)`: a MULTILINE `^` holds only at 0 and after a newline."""
    start = 0
    while start != -1:
        if match := _RATIONALE.match(text, start):
            return match
        start = text.find("\n", start) + 1 or -1
    return None


def _so_answer(text: str) -> re.Match[str] | None:
    """`_SO_ANSWER.search(text)`. An ASCII text lowercases to a text of the same length, where the
    case-sensitive pattern (which the regex engine scans for by its literal prefix) matches at the
    same places."""
    if not text.isascii():
        return _SO_ANSWER.search(text)
    match = _SO_ANSWER_LOWER.search(text.lower())
    return _SO_ANSWER.match(text, match.start()) if match else None


def _last_answer(text: str) -> str | None:
    """`_ANSWER.findall(text)[-1]`: a match starts at 0 or at a newline, `.` or `!` (its first
    token), and the next one is looked for from where the last ended."""
    last, position, end = None, 0, len(text)
    while position < end:
        match = _ANSWER.match(text, position)
        if match:
            last, position = match.group(1), match.end()
            continue
        following = _ANSWER_STARTS.search(text, position + 1)
        position = following.start() if following else end
    return last
