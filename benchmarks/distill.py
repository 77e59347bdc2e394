"""What a rationale buys on a generated task: `labelmill bench distill` with its default sweep.

    .venv/bin/python benchmarks/distill.py [--rows 1600] [extra bench distill options...]

Generates `--rows` multiple-choice questions (`labelmill.testing`), annotates every one with a
rationale through the mock teacher at gpt-4o-mini's list prices, then runs the default sweep
(rates 0, 0.1, 0.33, 1 and label-only, 3 seeds each, 20% held out by id) into
benchmarks/results/distill/. About 25 minutes on the project's 2-core machine.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from labelmill.testing import make_cqa, mock_process, run_labelmill

RESULTS = Path(__file__).resolve().parent / "results" / "distill"


def main() -> None:
    rows = int(sys.argv[sys.argv.index("--rows") + 1]) if "--rows" in sys.argv else 1600
    extra = [a for i, a in enumerate(sys.argv[1:], 1) if a != "--rows" and sys.argv[i - 1] != "--rows"]
    with tempfile.TemporaryDirectory(prefix="labelmill-distill-") as tmp:
        work = Path(tmp)
        corpus = make_cqa(rows, work / "corpus.jsonl")
        with mock_process() as url:
            run_labelmill(["annotate", str(corpus), "--task", "cqa", "--out", str(work / "run"), "--cache",
                           str(work / "cache"), "--base-url", url, "--rationale-rate", "1", "--price-in", "0.15",
                           "--price-out", "0.60"], pin=False)  # fmt: skip
        command = [sys.executable, "-m", "labelmill", "bench", "distill", str(work / "run"), "--out", str(work / "out")]
        subprocess.run([*command, *extra], check=True)
        RESULTS.mkdir(parents=True, exist_ok=True)
        for name in ("report.md", "report.json", "accuracy.png"):
            (RESULTS / name).write_bytes((work / "out" / name).read_bytes())
    print((RESULTS / "report.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
