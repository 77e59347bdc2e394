"""What a rationale buys on a generated task: `labelmill bench distill` with its default sweep.

    .venv/bin/python benchmarks/distill.py [--rows 1600] [--world things] [extra bench distill options...]

Generates `--rows` multiple-choice questions of `--world` (`labelmill.testing`), annotates every one with a
rationale through the mock teacher at gpt-4o-mini's list prices, then runs the default sweep
(rates 0, 0.1, 0.33, 1 and label-only, 3 seeds each, 20% held out by id) into
benchmarks/results/distill/ (benchmarks/results/distill-WORLD/ for another world). About 25
minutes on the project's 2-core machine. The knowledge world, by training size:

    .venv/bin/python benchmarks/distill.py --world lore --rates 1 --sizes 200,400,800 --max-steps 1000

The rationale's properties on the knowledge world, a fifth of whose rationales argue for another
choice than their answer (into benchmarks/results/distill-lore-properties/):

    .venv/bin/python benchmarks/distill.py --world lore --contradict-percent 20 --rows 1000 --rates 1 \
        --sizes 400 --consistent --rationale-words 12 --max-steps 1000
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from labelmill.testing import make_cqa, mock_process, run_labelmill

RESULTS = Path(__file__).resolve().parent / "results" / "distill"


def option(name: str, default: str) -> str:
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def main() -> None:
    rows, world = int(option("--rows", "1600")), option("--world", "things")
    contradict = option("--contradict-percent", "0")  # the mock's rationales that argue for another choice
    ours = {"--rows", "--world", "--contradict-percent"}
    extra = [a for i, a in enumerate(sys.argv[1:], 1) if a not in ours and sys.argv[i - 1] not in ours]
    results = RESULTS if world == "things" else RESULTS.with_name(f"distill-{world}")
    if "--consistent" in extra or "--rationale-words" in extra:
        results = results.with_name(results.name + "-properties")
    with tempfile.TemporaryDirectory(prefix="labelmill-distill-") as tmp:
        work = Path(tmp)
        corpus = make_cqa(rows, work / "corpus.jsonl", world=world)
        with mock_process("--contradict-percent", contradict) as url:
            run_labelmill(["annotate", str(corpus), "--task", "cqa", "--out", str(work / "run"), "--cache",
                           str(work / "cache"), "--base-url", url, "--rationale-rate", "1", "--price-in", "0.15",
                           "--price-out", "0.60"], pin=False)  # fmt: skip
        command = [sys.executable, "-m", "labelmill", "bench", "distill", str(work / "run"), "--out", str(work / "out")]
        subprocess.run([*command, *extra], check=True)
        results.mkdir(parents=True, exist_ok=True)
        for name in ("report.md", "report.json", "accuracy.png"):
            (results / name).write_bytes((work / "out" / name).read_bytes())
    print((results / "report.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
