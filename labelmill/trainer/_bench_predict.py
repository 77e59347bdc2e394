"""What a student costs to run: `labelmill bench predict`.

Times the fast path (`Student`: batches sorted by length, no grad, greedy with the KV cache, every
choice of a batch scored in one decoder pass) against the plain way (`model.generate` on one
example at a time; one forward pass per choice), on the same model, machine and process, each
the median of three runs. CPU seconds are the process's (all threads), so dollars per 1M
predictions follow from a CPU-hour price; the teacher's dollars per 1M come from the `cost_usd` its
records paid.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from labelmill.cache import ShardRecord
from labelmill.trainer._data import LABEL_PREFIX
from labelmill.trainer._infer import Item, Student
from labelmill.trainer._student import load_student

# On-demand price of one vCPU-hour of a general-purpose cloud VM (AWS m7i.large: 2 vCPU for
# $0.1008/h in us-east-1), the default for --cpu-hour-usd. A stated assumption, not a quote.
CPU_HOUR_USD = 0.0504
REPEATS = 3


@dataclass(frozen=True, slots=True)
class Timing:
    predictions: int
    seconds: float
    cpu_seconds: float

    def row(self, path: str, mode: str, cpu_hour_usd: float) -> dict[str, Any]:
        per_1k = 1000 * self.cpu_seconds / self.predictions
        return {"mode": mode, "path": path, "predictions": self.predictions,
                "predictions_per_s": round(self.predictions / self.seconds, 2),
                "cpu_seconds_per_1k": round(per_1k, 3),
                "usd_per_1m": round(per_1k * 1000 / 3600 * cpu_hour_usd, 4)}  # fmt: skip


def timed(work: Callable[[], int], repeats: int = REPEATS) -> Timing:
    """The median of `repeats` runs by wall time (a run of a second or two moves by 10-20%)."""
    runs = []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        predictions = work()
        runs.append(Timing(predictions, time.perf_counter() - wall, time.process_time() - cpu))
    return sorted(runs, key=lambda run: run.seconds)[len(runs) // 2]


def bench_predict(
    model_dir: str,
    items: list[Item],
    teacher_records: list[ShardRecord] | None = None,
    cpu_hour_usd: float = CPU_HOUR_USD,
    baseline_items: int = 100,
    batch_size: int = 128,
) -> dict[str, Any]:
    """Throughput, CPU cost and peak memory of the fast path and the plain one, with the teacher's
    price per 1M beside them. The plain path runs on the first `baseline_items` items only (it is
    slow; its rate, not its total, is compared)."""
    student = Student(model_dir, batch_size=batch_size)
    baseline = _Plain.load(model_dir, student.max_new_tokens)
    plain = items[:baseline_items]
    ranked = [item for item in items if item.choices]
    work: list[tuple[str, str, Callable[[], int]]] = [
        ("fast", "generate", lambda: _fast_generate(student, items)),
        ("plain", "generate", lambda: _plain_generate(baseline, plain)),
    ]
    if ranked:
        work += [("fast", "rank", lambda: _fast_rank(student, ranked)),
                 ("plain", "rank", lambda: _plain_rank(baseline, ranked[:baseline_items]))]  # fmt: skip
    rows = [timed(run).row(path, mode, cpu_hour_usd) for path, mode, run in work]
    speedups = {mode: _speedup(rows, mode) for mode in ("generate", "rank") if any(r["mode"] == mode for r in rows)}
    return {
        "model": model_dir,
        "items": len(items),
        "batch_size": batch_size,
        "threads": torch.get_num_threads(),
        "cpu_hour_usd": cpu_hour_usd,
        "rows": rows,
        "speedup": speedups,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "teacher": teacher_cost(teacher_records or []),
    }


def teacher_cost(records: list[ShardRecord]) -> dict[str, Any] | None:
    """Dollars per 1M predictions the teacher charged, by what it was asked (records' cost_usd)."""
    priced = [r for r in records if r.cost_usd is not None]
    if not priced:
        return None
    out: dict[str, Any] = {"model": priced[0].teacher.model, "records": len(priced)}
    for name, group in (("label", [r for r in priced if r.rationale is None]),
                        ("label_rationale", [r for r in priced if r.rationale is not None])):  # fmt: skip
        if group:
            out[f"{name}_usd_per_1m"] = round(1e6 * statistics.fmean(r.cost_usd or 0.0 for r in group), 2)
    return out


def _speedup(rows: list[dict[str, Any]], mode: str) -> float:
    by_path: dict[str, float] = {r["path"]: r["predictions_per_s"] for r in rows if r["mode"] == mode}
    return round(by_path["fast"] / by_path["plain"], 1)


def _fast_generate(student: Student, items: list[Item]) -> int:
    return sum(1 for _ in student.predict([Item(i.id, i.text) for i in items], explain=False))


def _fast_rank(student: Student, items: list[Item]) -> int:
    for start in range(0, len(items), student.batch_size):
        batch = items[start : start + student.batch_size]
        student.rank([i.text for i in batch], [i.choices or [] for i in batch])
    return len(items)


@dataclass(frozen=True, slots=True)
class _Plain:
    """The student as `from_pretrained` gives it (its default attention), for the plain loops."""

    model: Any
    tokenizer: Any
    max_new_tokens: int

    @classmethod
    def load(cls, model_dir: str, max_new_tokens: int) -> _Plain:
        model, tokenizer = load_student(model_dir)
        model.eval()
        model.generation_config.max_length = None  # as Student does: no max_length warning per call
        return cls(model, tokenizer, max_new_tokens)


@torch.no_grad()
def _plain_generate(plain: _Plain, items: list[Item]) -> int:
    for item in items:
        encoded = plain.tokenizer(LABEL_PREFIX + item.text, return_tensors="pt")
        plain.model.generate(**encoded, max_new_tokens=plain.max_new_tokens)
    return len(items)


@torch.no_grad()
def _plain_rank(plain: _Plain, items: list[Item]) -> int:
    for item in items:
        encoded = plain.tokenizer(LABEL_PREFIX + item.text, return_tensors="pt")
        for choice in item.choices or []:
            labels = plain.tokenizer(text_target=choice, return_tensors="pt")["input_ids"]
            plain.model(**encoded, labels=labels)
    return len(items)
