"""`make demo`: the main job end to end, offline, with the commands a user would type.

1. generate a small multiple-choice corpus (no downloads);
2. start `labelmill mock-teacher` on 127.0.0.1 (a stand-in for any OpenAI-compatible API);
3. `labelmill annotate` it with rationales for half the examples, at made-up prices;
4. run the same command again: everything comes from the store, nothing is paid twice;
5. `labelmill replay` the shards from the store alone and check they are byte-identical;
6. `labelmill cache verify`;
7. `labelmill train` a tiny T5 from scratch on the shards for a few hundred steps (CPU, about a minute)
   and `labelmill evaluate` it on 100 held-out questions: a smoke run of the whole path, not a good model.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from labelmill.corpus import make_cqa

OUT = Path("demo-out")


def step(title: str, *args: str, capture: bool = True) -> str:
    command = ["labelmill", *args]
    print(f"\n== {title}\n$ {shlex.join(command)}", flush=True)
    result = subprocess.run([sys.executable, "-m", "labelmill", *args], capture_output=capture, text=True)
    if result.returncode not in (0, 3):
        print(result.stderr, file=sys.stderr)
        raise SystemExit(f"demo step failed: {title}")
    return result.stdout if capture else ""


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    corpus = make_cqa(300, OUT / "corpus.jsonl")
    print(f"== generated {corpus} (300 multiple-choice questions)")
    mock = subprocess.Popen(
        [sys.executable, "-m", "labelmill", "mock-teacher", "--port", "0", "--latency-ms", "20"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert mock.stdout is not None
        url = mock.stdout.readline().rsplit(" ", 1)[1].strip()
        print(f"== mock teacher at {url}")
        annotate = ["annotate", str(corpus), "--task", "cqa", "--out", str(OUT / "annotated"), "--cache",
                    str(OUT / "cache"), "--base-url", url, "--rationale-rate", "0.5", "--price-in", "0.15",
                    "--price-out", "0.60", "--json"]  # fmt: skip
        first = json.loads(step("annotate (pays the teacher)", *annotate))
        again = json.loads(step("the same command again (all from the store)", *annotate))
    finally:
        mock.terminate()
        mock.communicate(timeout=10)
    replayed = json.loads(step("replay offline (the mock is stopped)", "replay", str(corpus), "--task", "cqa",
                               "--out", str(OUT / "replayed"), "--cache", str(OUT / "cache"),
                               "--from", str(OUT / "annotated"), "--json"))  # fmt: skip
    step("verify the store", "cache", "verify", "--cache", str(OUT / "cache"), capture=False)
    trained = json.loads(step("train a tiny student from scratch", "train", str(OUT / "annotated"), "--out",
                              str(OUT / "student"), "--student", "scratch:tiny", "--max-steps", "300",
                              "--batch-size", "32", "--eval-steps", "100", "--json"))  # fmt: skip
    held_out = make_cqa(100, OUT / "held-out.jsonl", seed=1)
    evaluated = json.loads(step("evaluate it on held-out questions", "evaluate", str(OUT / "student"), str(held_out),
                                "--task", "cqa", "--json"))  # fmt: skip
    identical = all(
        (OUT / "annotated" / "shards" / p.name).read_bytes() == p.read_bytes()
        for p in (OUT / "replayed" / "shards").glob("part-*.jsonl")
    )
    records = [json.loads(line) for line in (OUT / "annotated/shards/part-00000.jsonl").read_text().splitlines()]
    accuracy = sum(r["label"] == r["gold"] for r in records) / len(records)
    print("\n== summary")
    print(f"first run : {first['records']} records, {first['requests']} requests, ${first['dollars']:.5f}, "
          f"rationale rate {first['rationale_rate']:.2f}, {first['seconds']:.2f} s")  # fmt: skip
    print(f"second run: {again['cache_hits']} from the store, {again['requests']} requests, ${again['dollars']:.5f}")
    print(f"replay    : {replayed['records']} records, byte-identical shards: {identical}")
    print(f"teacher label accuracy against gold: {accuracy:.1%}")
    print(f"student   : {trained['steps']} steps, loss {trained['first_loss']:.2f} -> {trained['last_loss']:.2f}, "
          f"held-out accuracy {evaluated['accuracy']:.1%} generated, {evaluated['rank_accuracy']:.1%} ranked "
          f"(chance is 20%: a tiny model trained from scratch for a few hundred steps)")  # fmt: skip
    print(f"example record: {json.dumps(records[0], ensure_ascii=False)[:300]}...")
    if not identical or again["requests"] != 0:
        raise SystemExit("demo check failed")


if __name__ == "__main__":
    main()
