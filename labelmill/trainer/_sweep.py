"""`labelmill bench distill`: what a rationale buys, measured on the user's own shards.

Trains students on one shard set at several explanation rates, label-only (alpha = 1), and with
rationales cut to N words, each over several seeds, and scores every student on rows none of them
trained on. With `sizes`, every setting is also trained on the first N training examples (in an
order fixed by a hash of the id, so a smaller size is a subset of a larger one), which answers "for my
budget, more examples or more rationales?".

Each setting is priced as the annotation it implies: `f x c_R + (1 - f) x c_L` per example, where
f is the fraction of examples whose rationale was kept, and c_R / c_L are the mean cost of a
label+rationale / label-only record in the shards. Shards annotated with rationales for
every row have no label-only record; c_L is then estimated from prices fitted to the records'
`usage` and `cost_usd` (stated in the report).

Finished runs are appended to DIR/runs.jsonl; a rerun of the same sweep skips them.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from labelmill._exceptions import UsageError
from labelmill.cache import ShardRecord, ShardWriter
from labelmill.trainer._data import is_test, load_records, unit_hash
from labelmill.trainer._infer import Item, evaluate
from labelmill.trainer._sweep_report import write_report
from labelmill.trainer._train import TrainConfig, train

log = logging.getLogger("labelmill")
DEFAULT_RATES = (0.0, 0.1, 0.33, 1.0)


@dataclass(frozen=True, slots=True)
class Setting:
    explanation_rate: float
    label_only: bool = False
    rationale_words: int | None = None
    consistent_only: bool = False  # leave out rationales that contradict their label

    @property
    def name(self) -> str:
        if self.label_only:
            return "label-only"
        words = f", {self.rationale_words} words" if self.rationale_words is not None else ""
        consistent = ", consistent" if self.consistent_only else ""
        return f"rate {self.explanation_rate:g}{words}{consistent}"


@dataclass(slots=True)
class SweepConfig:
    shards: str
    out_dir: str
    student: str = "scratch:tiny"
    rates: tuple[float, ...] = DEFAULT_RATES
    seeds: int = 3
    rationale_words: tuple[int, ...] = ()
    eval_split: str | None = None
    test_fraction: float = 0.2
    alpha: float = 0.5
    train: dict[str, Any] = field(default_factory=dict)  # other TrainConfig fields (epochs, lr, ...)
    keep_models: bool = False
    sizes: tuple[int, ...] = ()  # train on the first N examples at each size; () = all of them
    consistent: bool = False  # also rate 1 without the rationales that contradict their label

    def settings(self) -> list[Setting]:
        out = [Setting(rate) for rate in self.rates] + [Setting(0.0, label_only=True)]
        out += [Setting(1.0, rationale_words=words) for words in self.rationale_words]
        out += [Setting(1.0, consistent_only=True)] if self.consistent else []
        return out


@dataclass(frozen=True, slots=True)
class Costs:
    label: float | None  # dollars per label-only example
    rationale: float | None  # dollars per label+rationale example
    label_estimated: bool

    def per_1k(self, explained: float) -> float | None:
        if self.label is None or self.rationale is None:
            return None
        return round(1000 * (explained * self.rationale + (1 - explained) * self.label), 6)

    def total(self, explained: float, examples: int) -> float | None:
        """The annotation dollars of `examples` examples with this fraction explained."""
        per_1k = self.per_1k(explained)
        return None if per_1k is None else round(per_1k * examples / 1000, 6)


def run_sweep(config: SweepConfig, progress: Callable[[str], None] = log.info) -> dict[str, Any]:
    """Train and score every (setting, seed); write report.json, report.md and accuracy.png."""
    out = Path(config.out_dir)
    pool, test_records = _split_data(config)
    costs = annotation_costs(pool)
    train_dirs = _train_dirs(pool, config.sizes, out / "data")
    plan = [(s, n, seed) for n in train_dirs for s in config.settings() for seed in range(config.seeds)]
    done = _finished_runs(out / "runs.jsonl")
    started = time.monotonic()
    runs: list[dict[str, Any]] = []
    for number, (setting, examples, seed) in enumerate(plan, start=1):
        key = _run_key(config, setting, examples, seed)
        if key in done:
            runs.append(done[key])
            continue
        eta = _eta(started, runs, done, plan, number)
        progress(f"run {number}/{len(plan)}: {setting.name}, {examples} examples, seed {seed}{eta}")
        run = _train_and_score(config, setting, seed, train_dirs[examples], test_records, out)
        run["examples"], run["key"] = examples, key
        runs.append(run)
        with open(out / "runs.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(run, sort_keys=True) + "\n")
        rank = "" if run.get("rank_accuracy") is None else f", ranked {run['rank_accuracy']:.3f}"
        progress(f"run {number}/{len(plan)}: accuracy {run['accuracy']:.3f}{rank}, {run['seconds']:.0f} s")
    report = _report(config, runs, costs, test_records, list(train_dirs))
    write_report(report, out)
    return report


def annotation_costs(records: list[ShardRecord]) -> Costs:
    """Mean dollars of a label-only and of a label+rationale record (None when unpriced)."""
    explained = [r for r in records if r.rationale is not None and r.cost_usd is not None]
    plain = [r for r in records if r.rationale is None and r.cost_usd is not None]
    rationale = statistics.fmean(r.cost_usd or 0.0 for r in explained) if explained else None
    if plain:
        return Costs(statistics.fmean(r.cost_usd or 0.0 for r in plain), rationale, label_estimated=False)
    fitted = _fit_prices(explained)
    if fitted is None:
        return Costs(None, rationale, label_estimated=True)
    price_in, price_out = fitted
    # A label-only answer is "Answer: <label>": about four characters a token.
    label = statistics.fmean(
        price_in * r.usage.prompt_tokens + price_out * math.ceil(len("Answer: " + r.label) / 4) for r in explained
    )
    return Costs(label, rationale, label_estimated=True)


def _fit_prices(records: list[ShardRecord]) -> tuple[float, float] | None:
    """Least-squares (price per prompt token, per completion token) from the records' usage and cost."""
    rows = [(r.usage.prompt_tokens, r.usage.completion_tokens, r.cost_usd or 0.0) for r in records]
    sxx = sum(p * p for p, _, _ in rows)
    syy = sum(c * c for _, c, _ in rows)
    sxy = sum(p * c for p, c, _ in rows)
    sxz = sum(p * z for p, _, z in rows)
    syz = sum(c * z for _, c, z in rows)
    det = sxx * syy - sxy * sxy
    if not rows or abs(det) < 1e-9 * max(1.0, sxx * syy):
        return None
    return max(0.0, (sxz * syy - syz * sxy) / det), max(0.0, (syz * sxx - sxz * sxy) / det)


def _split_data(config: SweepConfig) -> tuple[list[ShardRecord], list[ShardRecord]]:
    """The training pool and the held-out test records (never trained on)."""
    records = load_records(config.shards)
    if config.eval_split:
        test = load_records(config.eval_split)
        held = {r.id for r in test}
        pool = [r for r in records if r.id not in held]
    else:
        test = [r for r in records if is_test(r.id, config.test_fraction)]
        pool = [r for r in records if not is_test(r.id, config.test_fraction)]
    if len(test) == 0 or len(pool) < 2:
        raise UsageError(f"{len(pool)} training and {len(test)} test records: give more shards or --eval-split")
    return pool, test


def _train_dirs(pool: list[ShardRecord], sizes: tuple[int, ...], data_dir: Path) -> dict[int, Path]:
    """Shards of the first N pool records (by id hash) for each size, under DATA/train-N."""
    too_big = [n for n in sizes if n > len(pool)]
    if too_big or any(n < 2 for n in sizes):
        raise UsageError(f"--sizes {','.join(map(str, sizes))}: each size must be 2 to {len(pool)}, "
                         f"the number of training records")  # fmt: skip
    ordered = sorted(pool, key=lambda r: unit_hash("size\x00" + r.id))
    dirs: dict[int, Path] = {}
    for examples in sorted(set(sizes)) or [len(pool)]:
        dirs[examples] = data_dir / f"train-{examples}"
        shutil.rmtree(dirs[examples], ignore_errors=True)
        with ShardWriter(dirs[examples]) as writer:
            for record in ordered[:examples]:
                writer.write(record)
    return dirs


def _train_and_score(
    config: SweepConfig, setting: Setting, seed: int, train_dir: Path, test: list[ShardRecord], out: Path
) -> dict[str, Any]:
    name = setting.name.replace(" ", "-").replace(",", "")
    model_dir = out / "runs" / f"{name}-{train_dir.name}-seed{seed}"
    shutil.rmtree(model_dir, ignore_errors=True)
    train_config = TrainConfig(
        shards=str(train_dir),
        out_dir=str(model_dir),
        student=config.student,
        alpha=1.0 if setting.label_only else config.alpha,
        explanation_rate=setting.explanation_rate,
        rationale_words=setting.rationale_words,
        rationale_filter="consistent" if setting.consistent_only else "all",
        seed=seed,
    )
    train_config = replace(train_config, **config.train)
    summary = train(train_config)
    scored, _ = evaluate(str(model_dir), [_item(r) for r in test])
    label_rows = summary["train_rows"] - summary["rationale_rows"]
    shutil.rmtree(model_dir / "checkpoints", ignore_errors=True)
    if not config.keep_models:
        shutil.rmtree(model_dir, ignore_errors=True)
    return {
        **asdict(setting),
        "seed": seed,
        "explained": round(summary["rationale_rows"] / max(1, label_rows), 4),
        "accuracy": scored["accuracy"],
        "rank_accuracy": scored.get("rank_accuracy"),
        "steps": summary["steps"],
        "seconds": summary["seconds"],
    }


def _item(record: ShardRecord) -> Item:
    """A test row scored against its gold label, or against the teacher's where it has none."""
    return Item(record.id, record.text, record.gold if record.gold is not None else record.label, record.choices)


def _report(
    config: SweepConfig, runs: list[dict[str, Any]], costs: Costs, test: list[ShardRecord], sizes: list[int]
) -> dict[str, Any]:
    rows = []
    for examples in sizes:
        for setting in config.settings():
            mine = [r for r in runs if _setting(r) == setting and r["examples"] == examples]
            rows.append(_row(setting, examples, mine, costs))
    with_gold = [r for r in test if r.gold is not None]
    choices = [len(r.choices) for r in test if r.choices]
    return {
        "rows": rows,
        "runs": runs,
        "cheapest_near_best": cheapest_near_best(rows),
        "student": config.student,
        "train_options": config.train,
        "test_rows": len(test),
        "scored_against": "gold" if len(with_gold) == len(test) else "gold where present, else the teacher's label",
        "teacher_accuracy": sum(r.label == r.gold for r in with_gold) / len(with_gold) if with_gold else None,
        "chance": statistics.fmean(1 / n for n in choices) if choices else None,
        "costs": {"label_usd": costs.label, "rationale_usd": costs.rationale, "label_estimated": costs.label_estimated},
    }


def _setting(run: dict[str, Any]) -> Setting:
    return Setting(
        run["explanation_rate"], run["label_only"], run["rationale_words"], run.get("consistent_only", False)
    )


def cheapest_near_best(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The cheapest row whose mean accuracy is within one std of the best row's mean (None when no
    row is scored or priced)."""
    scored = [r for r in rows if r["accuracy_mean"] is not None and r["dollars"] is not None]
    if not scored:
        return None
    best = max(scored, key=lambda r: r["accuracy_mean"])
    near = [r for r in scored if r["accuracy_mean"] >= best["accuracy_mean"] - (best["accuracy_std"] or 0.0)]
    cheapest = min(near, key=lambda r: (r["dollars"], -r["accuracy_mean"]))
    return {"name": cheapest["name"], "examples": cheapest["examples"], "dollars": cheapest["dollars"],
            "accuracy_mean": cheapest["accuracy_mean"], "best": best["name"], "best_examples": best["examples"],
            "best_accuracy_mean": best["accuracy_mean"], "best_accuracy_std": best["accuracy_std"]}  # fmt: skip


def _row(setting: Setting, examples: int, runs: list[dict[str, Any]], costs: Costs) -> dict[str, Any]:
    def mean_std(values: list[float]) -> tuple[float | None, float | None]:
        if not values:
            return None, None
        return round(statistics.fmean(values), 4), round(statistics.stdev(values), 4) if len(values) > 1 else 0.0

    accuracy = mean_std([r["accuracy"] for r in runs])
    rank = mean_std([r["rank_accuracy"] for r in runs if r.get("rank_accuracy") is not None])
    explained = statistics.fmean(r["explained"] for r in runs) if runs else 0.0
    # A filtered-out rationale was bought all the same: the setting costs what its rate bought.
    bought = setting.explanation_rate if setting.consistent_only else explained
    return {
        **asdict(setting),
        "name": setting.name,
        "examples": examples,
        "seeds": len(runs),
        "explained": round(explained, 4),
        "accuracy_mean": accuracy[0],
        "accuracy_std": accuracy[1],
        "rank_accuracy_mean": rank[0],
        "rank_accuracy_std": rank[1],
        "dollars_per_1k": costs.per_1k(bought),
        "dollars": costs.total(bought, examples),
    }


def _finished_runs(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    runs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {run["key"]: run for run in runs if "key" in run}


def _run_key(config: SweepConfig, setting: Setting, examples: int, seed: int) -> str:
    """What a finished run depends on: a changed sweep (other shards, student or options) reruns."""
    return json.dumps(
        [config.shards, config.eval_split, config.test_fraction, config.student, config.alpha, config.train,
         asdict(setting), examples, seed],
        sort_keys=True,
    )  # fmt: skip


def _eta(started: float, runs: list[dict[str, Any]], done: dict[str, Any], plan: list[Any], number: int) -> str:
    fresh = [r for r in runs if r["key"] not in done]
    if not fresh:
        return ""
    per_run = (time.monotonic() - started) / len(fresh)
    return f" (about {per_run * (len(plan) - number + 1) / 60:.0f} min left)"
