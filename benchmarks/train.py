"""Our training step against the reference recipe's, same tiny model and data, as a ratio from one run.

    .venv/bin/python benchmarks/train.py [--records 2000] [--steps 60] [--json]

- ours: one forward pass per batch over the label rows and the rationale rows together, dynamic
  padding, no row at all for examples without a rationale (the loss masks them);
- reference (the "distilling step-by-step" code's way): two forward passes per batch, one per task,
  over inputs padded to a fixed length, examples without a rationale trained on an empty target.

Both train the same scratch:tiny T5 (same initial weights, optimizer, batches of records) for the
same number of steps, each in its own process (so peak RSS is its own); reported: training records
per second, peak RSS, and the label loss on held-out records afterwards. Half the records have a
rationale of about 24 words, as in the seed paper's best setting of a third to a half.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

import torch

from labelmill.cache import ShardRecord, TeacherRef, Usage
from labelmill.engine import load_task
from labelmill.testing import MockTeacher, cqa_rows
from labelmill.trainer import build_student, multitask_loss, to_rows
from labelmill.trainer._data import LABEL_PREFIX, RATIONALE_PREFIX, TASK_LABEL, TASK_RATIONALE

FIXED_LENGTH = 256  # the reference pads every input to a fixed length
BATCH = 32


def records(n: int, seed: int) -> list[ShardRecord]:
    task, mock = load_task("cqa"), MockTeacher()
    out = []
    for i, row in enumerate(cqa_rows(n, seed)):
        example = task.render(row, i)
        rationale = mock._rationale(row["question"], row["answer"]) if i % 2 == 0 else None
        out.append(ShardRecord(example.id, i, example.text, row["answer"], rationale, example.choices, row["answer"],
                               TeacherRef("mock", "cqa/x@0", f"sha256:{i:064x}"), Usage(0, 0), None))  # fmt: skip
    return out


def pad(rows: list[list[int]], value: int, length: int | None = None) -> torch.Tensor:
    width = length or max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : min(len(r), width)] = torch.tensor(r[:width])
    return out


def ours_step(model: Any, tok: Any, batch: list[ShardRecord]) -> torch.Tensor:
    rows = to_rows(batch, "teacher", 1.0)
    enc = tok([r.source for r in rows], text_target=[r.target for r in rows])
    input_ids = pad(enc["input_ids"], tok.pad_token_id)
    labels = pad(enc["labels"], -100)
    out = model(input_ids=input_ids, attention_mask=(input_ids != tok.pad_token_id).long(), labels=labels)
    task = torch.tensor([r.task for r in rows])
    return multitask_loss(out.logits, labels, task, 0.5)


def reference_step(model: Any, tok: Any, batch: list[ShardRecord]) -> torch.Tensor:
    losses = []
    for prefix, targets in (
        (LABEL_PREFIX, [r.label for r in batch]),
        (RATIONALE_PREFIX, [r.rationale or "" for r in batch]),  # unexplained rows: an empty target
    ):
        enc = tok([prefix + r.text for r in batch], text_target=targets)
        input_ids = pad(enc["input_ids"], tok.pad_token_id, FIXED_LENGTH)
        labels = pad(enc["labels"], -100)
        out = model(input_ids=input_ids, attention_mask=(input_ids != tok.pad_token_id).long(), labels=labels)
        losses.append(out.loss)
    total: torch.Tensor = 0.5 * losses[0] + 0.5 * losses[1]
    return total


@torch.no_grad()
def label_loss(model: Any, tok: Any, held_out: list[ShardRecord]) -> float:
    rows = [r for r in to_rows(held_out, "teacher", 0.0)]
    enc = tok([r.source for r in rows], text_target=[r.target for r in rows])
    input_ids = pad(enc["input_ids"], tok.pad_token_id)
    labels = pad(enc["labels"], -100)
    out = model(input_ids=input_ids, attention_mask=(input_ids != tok.pad_token_id).long(), labels=labels)
    return float(multitask_loss(out.logits, labels, torch.full((len(rows),), TASK_LABEL), 1.0))


def run_variant(variant: str, n: int, steps: int) -> dict[str, Any]:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    data, held_out = records(n, 0), records(200, 1)
    texts = [LABEL_PREFIX + r.text for r in data] + [r.label for r in data] + [r.rationale or "" for r in data]
    model, tok = build_student("scratch:tiny", texts)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    step = ours_step if variant == "ours" else reference_step
    model.train()
    seen, started = 0, time.perf_counter()
    for i in range(steps):
        batch = data[(i * BATCH) % n : (i * BATCH) % n + BATCH]
        loss = step(model, tok, batch)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        optimizer.zero_grad()
        seen += len(batch)
    seconds = time.perf_counter() - started
    model.eval()  # type: ignore[no-untyped-call]
    return {
        "variant": variant,
        "records_per_s": round(seen / seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "held_out_label_loss": round(label_loss(model, tok, held_out), 4),
        "rationale_rows_share": sum(r.task == TASK_RATIONALE for r in to_rows(data, "teacher", 1.0)) / len(data),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--variant", choices=["ours", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.records, args.steps)))
        return
    results = {}
    for variant in ("ours", "reference"):
        done = subprocess.run([sys.executable, __file__, "--variant", variant, "--records", str(args.records),
                               "--steps", str(args.steps)], capture_output=True, text=True, check=True)  # fmt: skip
        results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
    ours, ref = results["ours"], results["reference"]
    summary = {**results, "speedup": round(ours["records_per_s"] / ref["records_per_s"], 2)}
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print("| step | records/s | peak RSS MB | held-out label loss |")
    print("|---|---:|---:|---:|")
    for name, row in results.items():
        print(f"| {name} | {row['records_per_s']} | {row['peak_rss_mb']} | {row['held_out_label_loss']} |")
    print(f"\nspeedup: {summary['speedup']}x (goal >= 1.3x at equal or lower loss)")


if __name__ == "__main__":
    main()
