import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelmill.engine import parse_response, resolve_label
from labelmill.engine.tasks import _parse

CHOICES = ["ignore", "enforce", "authoritarian", "yell at", "avoid"]
NLI = ["entailment", "neutral", "contradiction"]


@pytest.mark.parametrize(
    ("content", "label", "rationale"),
    [
        ("Answer: C", "authoritarian", None),
        ("answer: (c) authoritarian", "authoritarian", None),
        ("Answer: (C)", "authoritarian", None),
        ("Rationale: People avoid trouble.\nAnswer: (e) avoid", "avoid", "People avoid trouble."),
        ("Rules are made to be enforced. So the answer is (b) enforce.\n\nQ: next question", "enforce",
         "Rules are made to be enforced."),
        ('{"answer": "d", "rationale": "Shouting  is rude."}', "yell at", "Shouting is rude."),
        ('```json\n{"answer": "avoid", "reasoning": "x"}\n```', "avoid", "x"),
        ("YELL AT", "yell at", None),
        ("Enforce.", "enforce", None),
        ("I would say avoid", "avoid", None),
        ("Answer: (b) avoid", "avoid", None),  # the text wins over a mismatched letter
    ],
)  # fmt: skip
def test_multiple_choice_answers(content: str, label: str, rationale: str | None) -> None:
    parsed = parse_response(content, CHOICES, {}, want_rationale=True)
    assert parsed.label == label
    assert parsed.rationale == rationale


def test_unparseable_answer_has_no_label() -> None:
    assert parse_response("I cannot decide.", CHOICES, {}, True).label is None
    assert parse_response("Answer: (z)", CHOICES, {}, True).label is None
    assert parse_response("", CHOICES, {}, True).label is None
    assert parse_response("So the answer is\n", CHOICES, {}, True).label is None  # once an IndexError
    # Letters that case-fold like ASCII ones are no choice letters (and once crashed the parser).
    for lookalike in ("\u212a", "(\u0130)", "\u017f. maybe"):
        assert parse_response(f"Answer: {lookalike}", CHOICES, {}, True).label is None


def test_label_sets_and_aliases() -> None:
    aliases = {"yes": "entailment", "no": "contradiction"}
    assert parse_response("Answer: Yes", NLI, aliases, False).label == "entailment"
    assert parse_response("Rationale: r\nAnswer: NEUTRAL", NLI, aliases, True).label == "neutral"
    assert parse_response("Label: contradiction.", NLI, aliases, False).label == "contradiction"
    assert resolve_label("maybe", NLI, aliases) is None


def test_rationale_is_dropped_when_not_asked_for() -> None:
    parsed = parse_response("Rationale: because.\nAnswer: avoid", CHOICES, {}, want_rationale=False)
    assert parsed.label == "avoid" and parsed.rationale is None


# The parser's three scanners must return what the plain regex searches they replace return.
# Texts are built from the pieces the patterns care about, so matches, near misses and
# case-folding traps (non-ASCII letters whose case changes the text's length) all come up.
_PIECES = ["answer", "Answer", "ANSWER", "final", "label", "is", ":", " ", "  ", "\n", ".", "!", "so", "So", "the",
           "THE", "rationale", "Reasoning", "explanation", "reason", "(a)", "(b) dog", "C", "x", "\t",
           "\u0130", "\u017f", "\u212a", "\u00e9", "\u00df",  # dotted I, long s, Kelvin sign, e acute, sharp s
           "so the answer is", "Answer: (c) cat", "! answer: b", ". Label is x", "final answer:", "Rationale: because",
           "\n\nQ:"]  # fmt: skip
_TEXTS = st.lists(st.sampled_from(_PIECES), max_size=30).map("".join) | st.text(max_size=40)


@settings(max_examples=400, deadline=None)
@given(text=_TEXTS)
def test_the_scanners_agree_with_plain_regex_search(text: str) -> None:
    def span(match: re.Match[str] | None) -> tuple[int, int, str] | None:
        return None if match is None else (match.start(), match.end(), match.group(1))

    assert span(_parse._first_rationale(text)) == span(_parse._RATIONALE.search(text))
    assert span(_parse._so_answer(text)) == span(_parse._SO_ANSWER.search(text))
    assert _parse._last_answer(text) == (_parse._ANSWER.findall(text) or [None])[-1]
