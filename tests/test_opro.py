"""The prompt optimizer against the mock teacher, which plays the scorer (and, outside the first test,
the optimizer model)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import labelmill
from labelmill.apps import OproConfig, Optimizer, write_outputs
from labelmill.cache import iter_records
from labelmill.engine import AnnotateConfig, RunResult, RunStatus, annotate, load_task
from labelmill.engine.money import Prices
from labelmill.engine.tasks import VARIANT_RATIONALE, placeholders
from labelmill.engine.teacher import OneShot
from labelmill.testing import MockTeacher, make_cqa
from labelmill.testing._mock import HELPFUL_PHRASES

PRICES = Prices(0.15, 0.60)


def opro_config(tmp_path: Path, base_url: str, **overrides: object) -> OproConfig:
    dev = make_cqa(25, tmp_path / "dev.jsonl", seed=5)
    settings: dict[str, object] = {
        "task": load_task("cqa"),
        "dev": str(dev),
        "out": tmp_path / "opro" / "best.toml",
        "cache_dir": tmp_path / "cache",
        "base_url": base_url,
        "rounds": 3,
        "candidates": 3,
        "prices": PRICES,
        **overrides,
    }
    return OproConfig(**settings)  # type: ignore[arg-type]


class Scripted(Optimizer):
    """Proposes the instructions the test gives it (in place of the optimizer model) and keeps
    each meta-prompt it was shown, so the test checks the loop and not the mock's taste."""

    def __init__(self, config: OproConfig, proposals: list[str]) -> None:
        super().__init__(config)
        self.scripted = iter(proposals)
        self.shown: list[str] = []

    async def propose(self, client: OneShot, round_number: int, index: int) -> str | None:
        self.shown.append(self.meta_prompt())
        return next(self.scripted)


async def accuracy_of(instruction: str, config: OproConfig, out: Path) -> float:
    """The dev accuracy of an instruction, measured through the public API, not the optimizer."""
    seed = config.task.prompts[VARIANT_RATIONALE]
    task = replace(config.task, prompts={**config.task.prompts, VARIANT_RATIONALE: replace(seed, template=instruction)})
    await labelmill.annotate_async(config.dev, task=task, out=out, cache=config.cache_dir, base_url=config.base_url,
                                   rationale_rate=1.0, prices=PRICES)  # fmt: skip
    gold = {row["id"]: row["answer"] for row in map(json.loads, Path(config.dev).read_text().splitlines())}
    return float(sum(record["label"] == gold[record["id"]] for record in labelmill.read_records(out)) / len(gold))


async def test_the_loop_scores_candidates_truly_and_keeps_the_best(tmp_path: Path) -> None:
    seed = load_task("cqa").prompts[VARIANT_RATIONALE].template
    proposals = [f"Please answer. {seed}", f"{HELPFUL_PHRASES[0]} {HELPFUL_PHRASES[1]} {seed}",  # round 1
                 f"Respond carefully. {seed}", f"{HELPFUL_PHRASES[2]} {seed}"]  # round 2  # fmt: skip
    async with MockTeacher() as mock:
        config = opro_config(tmp_path, mock.base_url, rounds=2, candidates=2)
        optimizer = Scripted(config, proposals)
        history = await optimizer.run()
        measured = {c.instruction: await accuracy_of(c.instruction, config, tmp_path / f"check{i}")
                    for i, c in enumerate(history)}  # fmt: skip
    assert [c.instruction for c in history] == [seed, *proposals] and {c.status for c in history} == {"scored"}
    assert [c.accuracy for c in history] == [round(measured[c.instruction], 4) for c in history]
    assert len(set(measured.values())) > 1, "the candidates must differ for the choice to mean anything"
    # Round 2's meta-prompt shows every scored instruction so far, lowest score first.
    shown = re.findall(r"<INS>(.*?)</INS>\nscore: (-?[\d.]+)", optimizer.shown[2], re.DOTALL)
    so_far = sorted(history[:3], key=lambda c: c.score or 0.0)
    assert [(text, float(score)) for text, score in shown] == [(c.instruction, round(c.score or 0, 1)) for c in so_far]
    summary = write_outputs(config, history)
    winner = max(history, key=lambda c: c.score or 0.0)
    assert summary["best"]["instruction"] == winner.instruction
    assert load_task(str(config.out)).prompts[VARIANT_RATIONALE].template == winner.instruction
    assert [r["best"] for r in summary["rounds"]] == [
        max(c.score or 0.0 for c in history if c.round <= number) for number in (0, 1, 2)
    ]
    assert {p.name for p in config.out.parent.iterdir()} == {"best.toml", "history.jsonl", "scores.png"}
    assert len((config.out.parent / "history.jsonl").read_text().splitlines()) == len(history)


async def test_placeholders_survive_the_mock_optimizer_round_trip(tmp_path: Path) -> None:
    async with MockTeacher() as mock:
        config = opro_config(tmp_path, mock.base_url, rounds=1, candidates=2)
        history = await Optimizer(config).run()
    seed_placeholders = placeholders(load_task("cqa").prompts[VARIANT_RATIONALE].template)
    proposed = [c for c in history if c.round == 1]
    assert len(proposed) == 2 and all(c.status == "scored" for c in proposed)  # read from <INS> tags, then scored
    assert all(seed_placeholders <= placeholders(c.instruction) for c in proposed)


async def test_candidates_missing_a_placeholder_are_rejected_and_logged(tmp_path: Path) -> None:
    async with MockTeacher() as mock:
        optimizer = Optimizer(opro_config(tmp_path, mock.base_url, rounds=1))
        optimizer.required = optimizer.required | {"nowhere"}  # no proposal can keep it
        history = await optimizer.run()
    rejected = [c for c in history if c.status == "rejected"]
    assert len(rejected) == 3 and all("nowhere" in c.note for c in rejected)


async def test_a_rerun_with_a_warm_store_sends_nothing(tmp_path: Path) -> None:
    async with MockTeacher() as mock:
        first = await Optimizer(opro_config(tmp_path, mock.base_url)).run()
        sent = mock.stats.requests
        again = await Optimizer(opro_config(tmp_path, mock.base_url)).run()
        assert mock.stats.requests == sent
    assert [c.score for c in again] == [c.score for c in first]


async def test_the_budget_stops_the_loop_cleanly(tmp_path: Path) -> None:
    async with MockTeacher() as mock:
        probe = await Optimizer(opro_config(tmp_path / "probe", mock.base_url, rounds=1, candidates=1)).run()
        assert probe[0].score is not None
        before = (mock.stats.prompt_tokens, mock.stats.completion_tokens)
        small = 0.0015  # the seed's scoring and a little more
        config = opro_config(tmp_path, mock.base_url, budget=small)
        history = await Optimizer(config).run()
        spent = PRICES.cost(mock.stats.prompt_tokens - before[0], mock.stats.completion_tokens - before[1])
    assert history[-1].status == "budget"  # it stopped because of the budget, without an error
    assert history[0].score is not None
    assert 0 < spent <= small  # what the server counted for this loop
    assert write_outputs(config, history)["best"]["score"] is not None


async def test_the_written_task_round_trips_through_annotate(tmp_path: Path) -> None:
    async with MockTeacher() as mock:
        config = opro_config(tmp_path, mock.base_url, rounds=1)
        write_outputs(config, await Optimizer(config).run())
        task = load_task(str(config.out))
        result = await annotate(
            AnnotateConfig(
                source=config.dev,
                task=task,
                out_dir=tmp_path / "annotated",
                cache_dir=tmp_path / "cache",
                base_url=mock.base_url,
                progress=False,
            )
        )
    assert result.status is RunStatus.COMPLETE
    records = list(iter_records(tmp_path / "annotated"))
    assert len(records) == 25 and all(r.rationale for r in records)
    assert task.prompts[VARIANT_RATIONALE].template != load_task("cqa").prompts[VARIANT_RATIONALE].template


async def test_few_shot_prompts_as_an_annotate_variant(tmp_path: Path) -> None:
    from labelmill.testing import cqa_rows, write_jsonl

    rows = [{**row, "abstractive_explanation": f"it is a {row['answer']}"} for row in cqa_rows(20)]
    source = write_jsonl(iter(rows), tmp_path / "in.jsonl")
    async with MockTeacher() as mock:

        async def run(name: str, shots: int) -> RunResult:
            return await annotate(AnnotateConfig(source=str(source), task=load_task("cqa"), out_dir=tmp_path / name,
                                                 cache_dir=tmp_path / "cache", base_url=mock.base_url, progress=False,
                                                 shots=shots))  # fmt: skip

        zero = await run("zero", 0)
        few = await run("few", 3)
    assert zero.status is few.status is RunStatus.COMPLETE and few.summary["requests"] == 20  # new prompts, new keys
    assert few.summary["tokens"]["prompt"] > 2 * zero.summary["tokens"]["prompt"]
    assert all(r.teacher.prompt.endswith("+3shot") for r in iter_records(tmp_path / "few") if r.rationale)
