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

_CONCLUDES = re.compile(
    r"(?:answer|choice)\s+(?:is|must be|would be)\s*:?\s*(?P<after>[^.;\n]+)"
    r"|(?P<before>[^.;,\n]+?)\s+is\s+the\s+(?:best|right|correct|only)\s+(?:fit|answer|choice|option)",
    re.IGNORECASE,
)


def word_count(rationale: str) -> int:
    return len(rationale.split())


def agrees_with_label(rationale: str, label: str, options: Sequence[str], aliases: Mapping[str, str]) -> bool | None:
    """Whether the rationale's last stated conclusion resolves to `label` (None: it states none,
    or none that resolves to an option)."""
    stated = None
    for match in _CONCLUDES.finditer(rationale):
        named = resolve_label(match.group("after") or match.group("before") or "", options, aliases)
        stated = named if named is not None else stated
    return None if stated is None else stated == label
