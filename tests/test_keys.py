import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labelmill.cache import KeyTemplate, canonical_json, request_key

BODY = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "Which is a fruit? (a) stone (b) apple"}],
    "temperature": 0,
    "max_tokens": 64,
    "response_format": {"type": "json_object", "schema": {"b": 1, "a": [1, 2]}},
}


def test_key_format_is_sha256_hex() -> None:
    key = request_key(BODY, "cqa/label@abc")
    assert key.startswith("sha256:")
    assert len(key) == len("sha256:") + 64
    int(key.removeprefix("sha256:"), 16)


def test_dict_order_does_not_change_the_key() -> None:
    reordered = {k: BODY[k] for k in reversed(list(BODY))}
    reordered["response_format"] = {"schema": {"a": [1, 2], "b": 1}, "type": "json_object"}
    assert request_key(reordered, "v1") == request_key(BODY, "v1")


def test_integral_floats_equal_ints_but_other_numbers_differ() -> None:
    assert request_key({**BODY, "temperature": 0.0}, "v1") == request_key(BODY, "v1")
    assert request_key({**BODY, "temperature": 0.5}, "v1") != request_key(BODY, "v1")
    # bool is not a number: `logprobs: true` must not collide with `logprobs: 1`
    assert request_key({**BODY, "logprobs": True}, "v1") != request_key({**BODY, "logprobs": 1}, "v1")


def test_nested_params_and_list_order_matter() -> None:
    other = {**BODY, "stop": ["\n", "Q:"]}
    swapped = {**BODY, "stop": ["Q:", "\n"]}
    assert request_key(other, "v1") != request_key(swapped, "v1")
    deeper = {**BODY, "response_format": {"type": "json_object", "schema": {"b": 2, "a": [1, 2]}}}
    assert request_key(deeper, "v1") != request_key(BODY, "v1")


def test_unicode_is_utf8_and_nfc_nfd_stay_distinct() -> None:
    # The model sees different tokens for NFC and NFD text and may answer differently, so the
    # store keeps them apart rather than serve one prompt's answer to another.
    nfc = unicodedata.normalize("NFC", "café")
    nfd = unicodedata.normalize("NFD", "café")
    assert nfc != nfd
    body_nfc = {**BODY, "messages": [{"role": "user", "content": nfc}]}
    body_nfd = {**BODY, "messages": [{"role": "user", "content": nfd}]}
    assert request_key(body_nfc, "v1") != request_key(body_nfd, "v1")
    assert "café".encode() in canonical_json(body_nfc)  # UTF-8, not \u escapes


def test_transport_settings_never_change_the_key() -> None:
    base = request_key(BODY, "v1")
    for extra in (
        {"api_key": "sk-secret"},
        {"base_url": "http://other:8000/v1"},
        {"timeout": 30},
        {"headers": {"authorization": "Bearer sk"}},
    ):
        assert request_key({**BODY, **extra}, "v1") == base


def test_prompt_version_and_model_change_the_key() -> None:
    assert request_key(BODY, "v1") != request_key(BODY, "v2")
    assert request_key({**BODY, "model": "gpt-4o"}, "v1") != request_key(BODY, "v1")


def test_non_json_values_are_rejected() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        request_key({**BODY, "temperature": float("nan")}, "v1")
    with pytest.raises(TypeError):
        request_key({**BODY, "stop": {1, 2}}, "v1")


def _with_content(text: str) -> dict[str, object]:
    system = {"role": "system", "content": 'Be brief. "Quoted" café'}
    return {**BODY, "temperature": 0.0, "messages": [system, {"role": "user", "content": text}]}


@given(st.text())
def test_a_key_template_gives_the_key_of_the_whole_body(text: str) -> None:
    # Any text, escapes, astral characters and NUL included: a template that spelled one
    # differently would miss every stored answer of an existing store.
    template = KeyTemplate(_with_content(KeyTemplate.HOLE), "cqa/label@abc")
    try:
        expected = request_key(_with_content(text), "cqa/label@abc")
    except UnicodeEncodeError:  # a lone surrogate is not UTF-8: neither path may key it
        with pytest.raises(UnicodeEncodeError):
            template.key(text)
        return
    assert template.key(text) == expected


def test_a_key_template_needs_exactly_one_hole() -> None:
    with pytest.raises(ValueError, match="exactly once"):
        KeyTemplate(BODY, "v1")
    twice = {**BODY, "messages": [{"role": "user", "content": KeyTemplate.HOLE}] * 2}
    with pytest.raises(ValueError, match="exactly once"):
        KeyTemplate(twice, "v1")
