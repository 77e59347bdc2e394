import pytest

from labelmill.engine import parse_response, resolve_label

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
