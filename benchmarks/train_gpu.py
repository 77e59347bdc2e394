"""The trainer on a GPU, on real data: run by `benchmarks/train_gpu.sh` where a GPU is lent.

    python -m benchmarks.train_gpu [--max-steps 3000] [--out DIR]

1. Replays PaLM 540B's recorded CommonsenseQA outputs through the mock teacher (`--answers`):
   the 9,741 training questions with a rationale each, the 1,221 test questions label-only (for
   the teacher's accuracy on them).
2. Trains `scratch:small` (t5-small's shape, trained from scratch: no weights can be downloaded)
   in bf16 with the default recipe, capped at --max-steps.
3. Evaluates it on the test questions and writes DIR/gpu.json: examples/s, peak GPU memory,
   held-out accuracy (generated and ranked), the teacher's accuracy and the wall time.

Needs ../shared/data/cqa and a CUDA torch; says why and exits 0 when either is missing.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks.cost import DATA, palm_answers
from labelmill.cache import iter_records
from labelmill.testing import mock_process, run_labelmill


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-steps", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=Path("train-gpu-out"))
    args = parser.parse_args()
    import torch

    if not (DATA / "cqa_train.json").is_file() or not torch.cuda.is_available():
        print(f"skipped: needs {DATA} and a CUDA GPU (cuda available: {torch.cuda.is_available()})")
        return
    started = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="labelmill-gpu-") as tmp:
        work = Path(tmp)
        answers = work / "answers.jsonl"
        train_part = palm_answers(10_000, work / "train.jsonl").read_text(encoding="utf-8")
        answers.write_text(train_part + palm_answers(10_000, work / "test.jsonl", "test").read_text(encoding="utf-8"))
        with mock_process("--answers", str(answers)) as url:
            common = ["--task", "cqa", "--cache", str(work / "cache"), "--base-url", url, "--concurrency", "64"]
            run_labelmill(["annotate", str(DATA / "cqa_train.json"), "--out", str(work / "train"),
                           "--rationale-rate", "1", *common], pin=False)  # fmt: skip
            teacher = run_labelmill(["annotate", str(DATA / "cqa_test.json"), "--out", str(work / "test"),
                                     "--rationale-rate", "0", *common], pin=False)  # fmt: skip
        trained = run_labelmill(["train", str(work / "train"), "--out", str(args.out / "student"), "--student",
                                 "scratch:small", "--max-steps", str(args.max_steps)], pin=False)  # fmt: skip
        evaluated = run_labelmill(["evaluate", str(args.out / "student"), str(DATA / "cqa_test.json"), "--task",
                                   "cqa"], pin=False)  # fmt: skip
        records = list(iter_records(work / "test"))
    result = {
        "gpu": torch.cuda.get_device_name(0),
        "steps": trained["steps"],
        "examples_per_s": trained["examples_per_s"],
        "peak_gpu_memory_mb": trained.get("peak_gpu_memory_mb"),
        "training_seconds": trained["seconds"],
        "student_accuracy": evaluated["accuracy"],
        "student_rank_accuracy": evaluated.get("rank_accuracy"),
        "teacher_accuracy": sum(r.label == r.gold for r in records) / max(1, len(records)),
        "teacher_test_records": teacher["records"],
        "seconds": round(time.monotonic() - started, 1),
    }
    (args.out / "gpu.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
