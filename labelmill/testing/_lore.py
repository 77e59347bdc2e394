"""The lore world's teacher: what it believes of invented names, and the rationales that say so.

The lore world (`_corpus.py`) asks for the category of invented names, which only the teacher's
rationale tells: it names every choice's category as the teacher believes it, a fixed tenth of
them wrong (as a real teacher holds a wrong belief consistently).
"""

from __future__ import annotations

import hashlib
import re

from labelmill.testing._corpus import ALL_CATEGORIES, LORE

_CATEGORY_WORD = re.compile(r"\b(" + "|".join(map(re.escape, ALL_CATEGORIES)) + r")\b")
_LORE_CATEGORY = {item: category for category, items in LORE.items() for item in items}
LORE_MISBELIEF_PERCENT = 10  # the share of the lore world's items whose category the teacher has wrong


def asks_lore(question: str) -> bool:
    asked = _CATEGORY_WORD.search(question)
    return asked is not None and asked.group(1) in LORE


def believed_category(item: str) -> str | None:
    """The lore category the mock teacher believes `item` has: the true one, except for a fixed
    tenth of the items, where it holds a wrong belief consistently (as a real teacher would)."""
    true = _LORE_CATEGORY.get(item)
    if true is None or stable_index("belief|" + item, 100) >= LORE_MISBELIEF_PERCENT:
        return true
    others = [c for c in LORE if c != true]
    return others[stable_index("belief-of|" + item, len(others))]


def lore_answer(question: str, options: list[tuple[str, str]]) -> int | None:
    """The choice the teacher believes is of the asked-for category (a guess among several or none)."""
    asked = _CATEGORY_WORD.search(question)
    fits = [i for i, (_, text) in enumerate(options) if asked and believed_category(text) == asked.group(1)]
    if len(fits) == 1:
        return fits[0]
    pool = fits or list(range(len(options)))
    return pool[stable_index("guess|" + question, len(pool))]


def lore_rationale(question: str, options: list[tuple[str, str]], answer: str) -> str:
    """What the label does not say: the category of every choice, as the teacher believes it."""
    asked = _CATEGORY_WORD.search(question)
    facts = [f"{text} is a {believed_category(text) or 'thing unknown'}" for _, text in options]
    listed = ", ".join(facts[:-1]) + f" and {facts[-1]}" if len(facts) > 1 else facts[0]
    category = asked.group(1) if asked else "thing"
    return f"In the tales, {listed}. The question asks for a {category}, so the answer is {answer}."


def stable_index(text: str, n: int) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big") % n
