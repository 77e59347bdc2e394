"""Small generated corpora, so tests and the demo never need downloads.

`make_cqa(n)` writes multiple-choice items in the CommonsenseQA layout (`id`, `question`,
`choices`, `answer`): "Which of these is a fruit?" with one fruit among four other things.
`world="nature"` draws from a second vocabulary (other categories, items and question frames), so
a recipe can be checked on a task it was not tuned on. `world="lore"` is a world of knowledge: its
items are invented names (96 of them, no spelling gives a category away), so a student can learn an
item's category only from what the teacher says. There the mock teacher's rationale names the
category of every choice, as it believes it (it holds a wrong belief about 1 item in 10), which the
label alone never tells. The mock teacher knows all three worlds.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CATEGORIES: dict[str, list[str]] = {
    "fruit": ["apple", "banana", "cherry", "mango", "pear", "plum", "grape", "lemon"],
    "animal": ["horse", "tiger", "rabbit", "eagle", "salmon", "donkey", "otter", "camel"],
    "color": ["crimson", "teal", "violet", "amber", "indigo", "maroon", "olive", "beige"],
    "tool": ["hammer", "wrench", "chisel", "pliers", "saw", "drill", "screwdriver", "rake"],
    "vehicle": ["bicycle", "truck", "canoe", "tractor", "scooter", "tram", "yacht", "van"],
    "instrument": ["violin", "flute", "drum", "cello", "trumpet", "harp", "banjo", "oboe"],
    "country": ["France", "Kenya", "Peru", "Norway", "Japan", "Chile", "Egypt", "Canada"],
    "sport": ["tennis", "rugby", "hockey", "golf", "cricket", "judo", "rowing", "fencing"],
}
NATURE: dict[str, list[str]] = {
    "bird": ["sparrow", "heron", "falcon", "parrot", "pelican", "robin", "owl", "finch"],
    "tree": ["oak", "maple", "birch", "cedar", "willow", "spruce", "elm", "aspen"],
    "metal": ["copper", "zinc", "nickel", "cobalt", "tin", "silver", "iron", "platinum"],
    "planet": ["Mercury", "Venus", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune", "Earth"],
    "dessert": ["pudding", "sorbet", "brownie", "custard", "pancake", "muffin", "tart", "waffle"],
    "fabric": ["cotton", "linen", "denim", "velvet", "satin", "tweed", "flannel", "muslin"],
    "gemstone": ["ruby", "emerald", "sapphire", "topaz", "opal", "garnet", "jade", "diamond"],
    "dance": ["tango", "waltz", "salsa", "polka", "ballet", "samba", "rumba", "foxtrot"],
}
FRAMES = [
    "Which of these is a {category}?",
    "Pick the {category} from the list.",
    "Someone asked for a {category}. Which one fits?",
    "Of the following, which would you call a {category}?",
]
NATURE_FRAMES = [
    "Which word here names a {category}?",
    "Find the {category} among these options.",
    "One of these is a {category}: which?",
    "Choose the option that is a {category}.",
]
LORE_FRAMES = [
    "In the old tales, which of these is a {category}?",
    "Name the {category} of the legends among these.",
    "The chronicles speak of a {category}. Which is it?",
    "Which one do the stories call a {category}?",
]


def _invented_names(categories: list[str], per_category: int, seed: int) -> dict[str, list[str]]:
    """`per_category` distinct made-up words a category, drawn from syllables by a seeded RNG."""
    rng = random.Random(seed)
    onsets = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "th", "sh"]
    vowels, codas = ["a", "e", "i", "o", "u", "ai", "ou"], ["n", "r", "l", "s", "k"]
    seen: set[str] = set()
    out: dict[str, list[str]] = {}
    for category in categories:
        names: list[str] = []
        while len(names) < per_category:
            word = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(rng.choice((2, 3))))
            word += rng.choice(codas) if rng.random() < 0.5 else ""
            if word not in seen:
                seen.add(word)
                names.append(word)
        out[category] = names
    return out


LORE = _invented_names(["herb", "river", "spirit", "city", "beast", "star", "potion", "clan"], 12, seed=21)
WORLDS: dict[str, tuple[dict[str, list[str]], list[str]]] = {
    "things": (CATEGORIES, FRAMES),
    "nature": (NATURE, NATURE_FRAMES),
    "lore": (LORE, LORE_FRAMES),
}
ALL_CATEGORIES: dict[str, list[str]] = {**CATEGORIES, **NATURE, **LORE}


def cqa_rows(n: int, seed: int = 0, world: str = "things") -> Iterator[dict[str, Any]]:
    if world not in WORLDS:
        raise ValueError(f"unknown world {world!r}: use one of {', '.join(WORLDS)}")
    categories, frames = WORLDS[world]
    rng = random.Random(seed)
    names = sorted(categories)
    for i in range(n):
        category = rng.choice(names)
        answer = rng.choice(categories[category])
        others = rng.sample([w for c in names if c != category for w in categories[c]], 4)
        choices = [*others, answer]
        rng.shuffle(choices)
        question = rng.choice(frames).format(category=category)
        yield {"id": f"gen-{i:06d}", "question": f"{question} (item {i})", "choices": choices, "answer": answer}


def write_jsonl(rows: Iterator[dict[str, Any]], path: str | Path) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return target


def make_cqa(n: int, path: str | Path, seed: int = 0, world: str = "things") -> Path:
    return write_jsonl(cqa_rows(n, seed, world), path)
