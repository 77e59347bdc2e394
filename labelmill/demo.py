"""`make demo`: the main job end to end, offline, with the commands a user would type.

1. generate a multiple-choice corpus and a held-out set of other questions (no downloads);
2. start `labelmill mock-teacher` on 127.0.0.1 (a stand-in for any OpenAI-compatible API);
3. `labelmill annotate` the corpus with a rationale for half the examples, at made-up prices;
4. run the same command again: everything comes from the store, nothing is paid twice;
5. `labelmill replay` the shards from the store alone and check they are byte-identical;
6. `labelmill cache verify`;
7. `labelmill train` a tiny T5 from scratch with the default recipe (CPU, about two minutes) and
   `labelmill evaluate` it on the held-out questions, against the teacher's accuracy on the same
   questions and against chance. Writes demo-out/summary.json.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from labelmill.cache import iter_records
from labelmill.testing import make_cqa

OUT = Path("demo-out")
CORPUS_ROWS = 1600
HELD_OUT_ROWS = 300
CHOICES = 5


def step(title: str, *args: str, capture: bool = True) -> str:
    command = ["labelmill", *args]
    print(f"\n== {title}\n$ {shlex.join(command)}", flush=True)
    result = subprocess.run([sys.executable, "-m", "labelmill", *args], capture_output=capture, text=True)
    if result.returncode not in (0, 3):
        print(result.stderr, file=sys.stderr)
        raise SystemExit(f"demo step failed: {title}")
    return result.stdout if capture else ""


def teacher_accuracy(run_dir: Path) -> float:
    records = list(iter_records(run_dir))
    return sum(r.label == r.gold for r in records) / len(records)


def annotate_both(corpus: Path, held_out: Path) -> tuple[dict[str, Any], dict[str, Any], float]:
    """Annotate the corpus twice (the second run is free) and label the held-out set once, to know
    how often the teacher is right on the very questions the student is tested on."""
    mock = subprocess.Popen(
        [sys.executable, "-m", "labelmill", "mock-teacher", "--port", "0", "--latency-ms", "20"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert mock.stdout is not None
        url = mock.stdout.readline().rsplit(" ", 1)[1].strip()
        print(f"== mock teacher at {url}")
        common = ["--task", "cqa", "--cache", str(OUT / "cache"), "--base-url", url, "--price-in", "0.15",
                  "--price-out", "0.60", "--json"]  # fmt: skip
        annotate = ["annotate", str(corpus), "--out", str(OUT / "annotated"), "--rationale-rate", "0.5", *common]
        first = json.loads(step("annotate (pays the teacher)", *annotate))
        again = json.loads(step("the same command again (all from the store)", *annotate))
        step("the teacher labels the held-out questions too (for the comparison only)", "annotate", str(held_out),
             "--out", str(OUT / "teacher-held-out"), "--rationale-rate", "0", *common)  # fmt: skip
    finally:
        mock.terminate()
        mock.communicate(timeout=10)
    return first, again, teacher_accuracy(OUT / "teacher-held-out")


def main() -> None:
    started = time.monotonic()
    shutil.rmtree(OUT, ignore_errors=True)
    corpus = make_cqa(CORPUS_ROWS, OUT / "corpus.jsonl")
    held_out = make_cqa(HELD_OUT_ROWS, OUT / "held-out.jsonl", seed=1)
    print(f"== generated {corpus} ({CORPUS_ROWS} multiple-choice questions) and {held_out} ({HELD_OUT_ROWS} others)")
    first, again, teacher_held_out = annotate_both(corpus, held_out)
    replayed = json.loads(step("replay offline (the mock is stopped)", "replay", str(corpus), "--task", "cqa",
                               "--out", str(OUT / "replayed"), "--cache", str(OUT / "cache"),
                               "--from", str(OUT / "annotated"), "--json"))  # fmt: skip
    step("verify the store", "cache", "verify", "--cache", str(OUT / "cache"), capture=False)
    trained = json.loads(step("train a tiny student from scratch (the default recipe)", "train",
                              str(OUT / "annotated"), "--out", str(OUT / "student"), "--student", "scratch:tiny",
                              "--json"))  # fmt: skip
    evaluated = json.loads(step("evaluate it on the held-out questions", "evaluate", str(OUT / "student"),
                                str(held_out), "--task", "cqa", "--json"))  # fmt: skip
    identical = all(
        (OUT / "annotated" / "shards" / p.name).read_bytes() == p.read_bytes()
        for p in (OUT / "replayed" / "shards").glob("part-*.jsonl")
    )
    summary = {
        "teacher_accuracy": round(teacher_held_out, 4),
        "teacher_accuracy_on_training_corpus": round(teacher_accuracy(OUT / "annotated"), 4),
        "student_accuracy": round(evaluated["accuracy"], 4),
        "student_rank_accuracy": round(evaluated["rank_accuracy"], 4),
        "chance": 1 / CHOICES,
        "held_out_questions": evaluated["with_gold"],
        "training_seconds": trained["seconds"],
        "seconds": round(time.monotonic() - started, 1),
    }
    (OUT / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print_summary(first, again, replayed, identical, trained, summary)
    if not identical or again["requests"] != 0:
        raise SystemExit("demo check failed")


def print_summary(first: dict[str, Any], again: dict[str, Any], replayed: dict[str, Any], identical: bool,
                  trained: dict[str, Any], summary: dict[str, Any]) -> None:  # fmt: skip
    teacher = summary["teacher_accuracy"]
    print("\n== summary")
    print(f"first run : {first['records']} records, {first['requests']} requests, ${first['dollars']:.5f}, "
          f"rationale rate {first['rationale_rate']:.2f}, {first['seconds']:.2f} s")  # fmt: skip
    print(f"second run: {again['cache_hits']} from the store, {again['requests']} requests, ${again['dollars']:.5f}")
    print(f"replay    : {replayed['records']} records, byte-identical shards: {identical}")
    print(f"student   : {trained['steps']} steps in {trained['seconds']:.0f} s, loss {trained['first_loss']:.2f} -> "
          f"{trained['last_loss']:.2f}")  # fmt: skip
    print(f"held-out  : {summary['held_out_questions']} questions no run has seen")
    for name, key in (("student, generated labels", "student_accuracy"), ("student, rank classification",
                      "student_rank_accuracy")):  # fmt: skip
        value = summary[key]
        versus = f"{value / teacher:.2f} x the teacher's, {value / summary['chance']:.1f} x chance"
        print(f"  {name:<29} {value:6.1%}  = {versus}")
    print(f"  {'teacher (the mock)':<29} {teacher:6.1%}")
    print(f"  {'chance':<29} {summary['chance']:6.1%}")
    print(f"demo took {summary['seconds']:.0f} s; demo-out/summary.json has these numbers")


if __name__ == "__main__":
    main()
