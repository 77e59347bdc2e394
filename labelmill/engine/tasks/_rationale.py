"""A rationale's properties, kept in its record: how many words it has, and whether the conclusion
it states (where it states one) agrees with the record's label.

The seed leaves open whether a rationale's length or its accuracy changes what a student learns;
these are what a run can measure of both without a gold label. A conclusion is a sentence such as
`so the answer is (c) home`, `the answer is home` or `home is the best fit`; a rationale that only
reasons, without naming its pick, states none (`None`: neither agreeing nor contradicting).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from labelmill.engine.tasks._parse import resolve_label

_NAMED_AFTER = re.compile(r"\b(?:answer|choice)\s+(?:is|must be|would be)\s*:?\s*([^.;\n]+)", re.IGNORECASE)
_NAMED_BEFORE = re.compile(r"\s+is\s+the\s+(?:best|right|correct|only)\s+(?:fit|answer|choice|option)\b", re.IGNORECASE)


def word_count(rationale: str) -> int:
    return len(rationale.split())


def agrees_with_label(rationale: str, label: str, options: Sequence[str], aliases: Mapping[str, str]) -> bool | None:
    """Whether the rationale's last stated conclusion resolves to `label` (None: it states none,
    or none that resolves to an option). Run on every record of a replay, so each pattern is tried
    only where its literal words occur (a pattern that may start anywhere cost 50-100 us a rationale)."""
    lowered = rationale.lower()
    stated: list[tuple[int, str]] = []  # (where, what it names)
    if "answer" in lowered or "choice" in lowered:
        stated += [(m.start(), m.group(1)) for m in _NAMED_AFTER.finditer(rationale)]
    if " the " in lowered:
        for match in _NAMED_BEFORE.finditer(rationale):  # the clause before `is the best fit`
            clause_start = max(rationale.rfind(mark, 0, match.start()) for mark in ".;,\n") + 1
            stated.append((match.start(), rationale[clause_start : match.start()]))
    for _, named in sorted(stated, reverse=True):
        resolved = resolve_label(named, options, aliases)
        if resolved is not None:
            return resolved == label
    return None
