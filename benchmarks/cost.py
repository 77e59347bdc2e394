"""Cost per 1,000 examples on CommonsenseQA with PaLM's real outputs (needs ../shared/data/cqa).

    .venv/bin/python benchmarks/cost.py [--n 1000] [--shots 6]

1. Writes an answers file (in a temporary directory) that makes the mock teacher reply to each
   question with PaLM 540B's recorded chain-of-thought output, as released with "Distilling
   Step-by-Step"; label-only prompts get its final answer alone.
2. Annotates N training questions through the mock twice (every example label-only, then every
   example with a rationale), so the store holds real completion lengths.
3. `labelmill bench cost` prices zero-shot label-only, zero-shot label+rationale and K-shot prompts
   (demonstrations: gold answers with CoS-E's human explanations) and writes
   benchmarks/results/cost/report.md, report.json, cost.png.

Skips cleanly when ../shared/data/cqa is absent.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from labelmill.testing import mock_process, run_labelmill

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cqa"
RESULTS = Path(__file__).resolve().parent / "results" / "cost"


def palm_answers(n: int, path: Path, split: str = "train") -> Path:
    """`{"contains": question, "content": PaLM output}` for the first n questions of `split`."""
    rows = [json.loads(line) for line in (DATA / f"cqa_{split}.json").read_text(encoding="utf-8").splitlines()[:n]]
    outputs: list[str] = []
    for part in range((min(n, len(rows)) + 999) // 1000):
        outputs += json.loads((DATA / "llm" / f"{split}_CoT_{part}.json").read_text(encoding="utf-8"))
    with open(path, "w", encoding="utf-8") as fh:
        for row, output in zip(rows, outputs, strict=False):
            fh.write(json.dumps({"contains": row["question"], "content": output.split("\n\nQ:")[0]}) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--shots", type=int, default=6)
    args = parser.parse_args()
    if not (DATA / "cqa_train.json").is_file():
        print(f"skipped: {DATA} is absent (see ../shared/data/README.md)")
        return
    with tempfile.TemporaryDirectory(prefix="labelmill-cost-") as tmp:
        work = Path(tmp)
        corpus = work / "cqa.jsonl"
        corpus.write_text("".join((DATA / "cqa_train.json").read_text(encoding="utf-8").splitlines(True)[: args.n]))
        cache = work / "cache"
        with mock_process("--answers", str(palm_answers(args.n, work / "answers.jsonl"))) as url:
            for rate in ("0", "1"):
                run_labelmill(["annotate", str(corpus), "--task", "cqa", "--out", str(work / f"out-{rate}"),
                               "--cache", str(cache), "--base-url", url, "--rationale-rate", rate])  # fmt: skip
        report = run_labelmill(["bench", "cost", str(corpus), "--task", "cqa", "--shots", str(args.shots),
                                "--out", str(RESULTS), "--cache", str(cache)])  # fmt: skip
    print((RESULTS / "report.md").read_text(encoding="utf-8"))
    saved = report.get("zero_vs_few_shot_input_tokens_saved")
    print(f"zero-shot saves {saved:.0%} of input tokens against {args.shots}-shot", file=sys.stderr)


if __name__ == "__main__":
    main()
