"""`labelmill optimize-prompt`: OPRO for the zero-shot label+rationale prompt, weighing cost.

Each round a meta-prompt shows the optimizer model the best previous instructions (ascending, with
scores 0-100) and a few dev exemplars and asks for new ones; every candidate must keep the task's
placeholders (those that do not are rejected and logged). A candidate is scored by annotating the dev
set with it through the engine (store, limits, retries, budget) at temperature 0:

    score = 100 * accuracy - cost_penalty * mean output tokens - length_penalty * |mean rationale words - target|

Everything is cached, so a rerun costs nothing, and the loop stops cleanly when the budget is spent.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from labelmill._exceptions import UsageError
from labelmill.cache import ResponseStore, iter_records
from labelmill.engine import DEFAULT_MODEL, AnnotateConfig, annotate
from labelmill.engine.money import BudgetExhausted, Prices, Spending
from labelmill.engine.tasks import VARIANT_RATIONALE, Prompt, Task, iter_rows, placeholders
from labelmill.engine.teacher import OneShot

META_TAG = "opro/meta@1"
_INSTRUCTION = re.compile(r"<INS>(.*?)</INS>", re.DOTALL)


@dataclass(slots=True)
class OproConfig:
    task: Task
    dev: str
    out: Path
    cache_dir: Path
    base_url: str
    rounds: int = 3
    candidates: int = 4
    model: str = DEFAULT_MODEL
    api_key: str | None = field(default=None, repr=False)
    optimizer_model: str | None = None  # default: the scorer model
    optimizer_base_url: str | None = None
    budget: float | None = None
    prices: Prices | None = None
    cost_penalty: float = 0.05  # points per output token
    length_target: float = 25.0  # rationale words where the seed work found rationales teach best
    length_penalty: float = 0.5  # points per word away from the target
    shown: int = 20  # best previous instructions in the meta-prompt
    exemplars: int = 3
    concurrency: int = 16


@dataclass(slots=True)
class Candidate:
    round: int
    instruction: str
    status: str  # "scored", "rejected" (a placeholder is missing), "duplicate", "budget"
    accuracy: float | None = None
    mean_output_tokens: float | None = None
    mean_rationale_words: float | None = None
    score: float | None = None
    note: str = ""


class Optimizer:
    def __init__(self, config: OproConfig) -> None:
        self.config = config
        self.seed = config.task.prompts[VARIANT_RATIONALE]
        self.required = placeholders(self.seed.template)
        self.history: list[Candidate] = []
        self.spent = 0.0  # by scoring runs
        self.proposals = Spending(config.prices, config.budget, plan=False)  # the meta-prompts' own ledger
        self.workdir = Path(tempfile.mkdtemp(prefix="labelmill-opro-"))

    def left(self) -> float | None:
        """What the budget has left for the next scoring run, after proposals and earlier scoring."""
        if self.config.budget is None:
            return None
        return max(0.0, self.config.budget - self.spent - self.proposals.paid)

    async def score(self, round_number: int, instruction: str) -> Candidate:
        """Annotate the dev set with this instruction; accuracy against gold, mean lengths."""
        prompts = {**self.config.task.prompts, VARIANT_RATIONALE: replace(self.seed, template=instruction)}
        task = replace(self.config.task, prompts=prompts)
        out = self.workdir / f"r{round_number}-{len(self.history)}"
        run = await annotate(AnnotateConfig(
            source=self.config.dev, task=task, out_dir=out, cache_dir=self.config.cache_dir, model=self.config.model,
            base_url=self.config.base_url, api_key=self.config.api_key, rationale_rate=1.0, temperature=0.0,
            concurrency=self.config.concurrency, prices=self.config.prices, budget=self.left(), progress=False,
        ))  # fmt: skip
        self.spent += float(run.summary["money"]["paid"])
        if self.proposals.ledger is not None and self.config.budget is not None:
            self.proposals.ledger.budget = self.config.budget - self.spent  # proposals get what scoring left
        if run.summary["failure_reasons"].get("budget_exhausted"):
            return Candidate(round_number, instruction, "budget", note="the budget ran out while scoring")
        records = list(iter_records(out))
        total = max(1, run.summary["examples"])
        accuracy = sum(r.gold is not None and r.label == r.gold for r in records) / total
        output_tokens = sum(r.usage.completion_tokens for r in records) / max(1, len(records))
        words = sum(len((r.rationale or "").split()) for r in records) / max(1, len(records))
        score = (100 * accuracy - self.config.cost_penalty * output_tokens
                 - self.config.length_penalty * abs(words - self.config.length_target))  # fmt: skip
        return Candidate(round_number, instruction, "scored", round(accuracy, 4), round(output_tokens, 2),
                         round(words, 2), round(score, 3))  # fmt: skip

    def meta_prompt(self) -> str:
        scored = sorted((c for c in self.history if c.score is not None), key=lambda c: c.score or 0.0)
        shown = scored[-self.config.shown :]
        lines = [
            "Your task is to write the instruction a teacher model follows to answer the problems below, with a "
            "short rationale and an answer. The instruction is a template: keep these placeholders exactly as "
            f"written: {', '.join('{' + p + '}' for p in sorted(self.required))}.",
            "",
            "Below are previous instructions with their scores (0-100, higher is better), in ascending order.",
            "",
        ]
        for candidate in shown:
            lines += [f"<INS>{candidate.instruction}</INS>", f"score: {candidate.score:.1f}", ""]
        lines += ["Here are some of the problems:", ""]
        for row in list(iter_rows(self.config.dev))[: self.config.exemplars]:
            if row.data is not None:
                example = self.config.task.render(row.data, row.index)
                lines += [example.text, f"Answer: {example.gold}", ""]
        lines.append("Write a new instruction, different from the old ones, that scores as high as possible. "
                     "Write it between <INS> and </INS>.")  # fmt: skip
        return "\n".join(lines)

    async def propose(self, client: OneShot, round_number: int, index: int) -> str | None:
        body = {
            "model": self.config.optimizer_model or self.config.model,
            "messages": [{"role": "user", "content": self.meta_prompt()}],
            "temperature": 1.0,
            "max_tokens": 400,
            "seed": round_number * 1000 + index,  # K distinct proposals, each cached on its own
        }
        match = _INSTRUCTION.search(await client.complete(body, META_TAG))
        return match.group(1).strip() if match else None

    async def run(self) -> list[Candidate]:
        self.history.append(await self.score(0, self.seed.template))
        if self.history[0].status == "budget":
            return self.history
        store = ResponseStore(self.config.cache_dir)
        url = self.config.optimizer_base_url or self.config.base_url
        try:
            async with OneShot(store, url, self.config.api_key, self.proposals) as client:
                for round_number in range(1, self.config.rounds + 1):
                    if not await self.round(client, round_number):
                        break
        finally:
            store.close()
        return self.history

    async def round(self, client: OneShot, round_number: int) -> bool:
        """One round of proposals; False when the budget is spent."""
        for index in range(self.config.candidates):
            try:
                instruction = await self.propose(client, round_number, index)
            except BudgetExhausted:
                self.history.append(Candidate(round_number, "", "budget", note="the budget ran out proposing"))
                return False
            if instruction is None or not self.required <= placeholders(instruction):
                missing = sorted(self.required - placeholders(instruction or ""))
                self.history.append(Candidate(round_number, instruction or "", "rejected",
                                              note=f"missing placeholders: {missing}"))  # fmt: skip
                continue
            if any(c.instruction == instruction for c in self.history):
                self.history.append(Candidate(round_number, instruction, "duplicate"))
                continue
            candidate = await self.score(round_number, instruction)
            self.history.append(candidate)
            if candidate.status == "budget":
                return False
        return True


def best(history: list[Candidate]) -> Candidate:
    scored = [c for c in history if c.score is not None]
    if not scored:
        raise UsageError("the budget did not cover scoring the seed prompt on the dev set: raise --budget")
    return max(scored, key=lambda c: c.score or 0.0)


def write_outputs(config: OproConfig, history: list[Candidate]) -> dict[str, Any]:
    winner = best(history)
    task = replace(config.task, prompts={**config.task.prompts,
                                         VARIANT_RATIONALE: replace(config.task.prompts[VARIANT_RATIONALE],
                                                                    template=winner.instruction)})  # fmt: skip
    config.out.parent.mkdir(parents=True, exist_ok=True)
    config.out.write_text(task_to_toml(task), encoding="utf-8")
    history_path = config.out.parent / "history.jsonl"
    history_path.write_text("".join(json.dumps(asdict(c), ensure_ascii=False) + "\n" for c in history), "utf-8")
    per_round = _per_round(history)
    _plot(per_round, config.out.parent / "scores.png")
    return {"best": asdict(winner), "seed_score": history[0].score, "rounds": per_round,
            "task_file": str(config.out), "history": str(history_path)}  # fmt: skip


def _per_round(history: list[Candidate]) -> list[dict[str, Any]]:
    rounds: list[dict[str, Any]] = []
    running_best = float("-inf")
    for number in sorted({c.round for c in history}):
        scores = [c.score for c in history if c.round == number and c.score is not None]
        if scores:
            running_best = max(running_best, *scores)
        rounds.append({"round": number, "best": running_best if scores or rounds else None,
                       "mean": sum(scores) / len(scores) if scores else None})  # fmt: skip
    return rounds


def _plot(rounds: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    xs = [r["round"] for r in rounds]
    axis.plot(xs, [r["best"] for r in rounds], marker="o", label="best so far")
    axis.plot(xs, [r["mean"] for r in rounds], marker="x", linestyle="--", label="mean of the round")
    axis.set_xlabel("round")
    axis.set_ylabel("score")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def task_to_toml(task: Task) -> str:
    """A complete task file that `load_task` (and so `annotate --task FILE`) accepts."""
    lines = [f"name = {_toml_string(task.name)}", f"text = {_toml_string(task.text)}"]
    for key in ("id_field", "choices_field", "gold_field", "rationale_field"):
        value = getattr(task, key)
        if value is not None:
            lines.append(f"{key} = {_toml_string(value)}")
    if task.labels:
        lines.append("labels = [" + ", ".join(_toml_string(label) for label in task.labels) + "]")
    if task.aliases:
        lines += ["", "[aliases]"] + [f"{_toml_string(k)} = {_toml_string(v)}" for k, v in task.aliases.items()]
    for key, variant in (("label_rationale", VARIANT_RATIONALE), ("label", "label")):
        prompt: Prompt = task.prompts[variant]
        lines += ["", f"[prompts.{key}]", f"template = {_toml_string(prompt.template)}",
                  f"max_tokens = {prompt.max_tokens}"]  # fmt: skip
        if prompt.system is not None:
            lines.append(f"system = {_toml_string(prompt.system)}")
    return "\n".join(lines) + "\n"
